"""The strategy registry is the one list of strategies: every command reads it, names mean
the same everywhere, flag defaults are the settings' defaults, and a new strategy is one
registration plus its own module."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

from kerasnas import strategies
from kerasnas.cli import compare, search, train
from kerasnas.cli.command import set_path
from kerasnas.jobs.compare import CompareSettings
from kerasnas.jobs.one_shot import OneShotSettings
from kerasnas.jobs.retrain import RetrainSettings
from kerasnas.jobs.trial_based import TrialSettings
from kerasnas.layers import RELAXATIONS
from kerasnas.search_spaces.cell import DERIVATION_RULES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_registered_strategy_resolves():
    names = strategies.names()
    assert len(names) == len(set(names)) == 14
    for entry in strategies.REGISTRY.values():
        assert dataclasses.is_dataclass(entry.settings_class())
        assert entry.label and entry.color and entry.summary
        if entry.kind == strategies.ONE_SHOT:
            assert set(entry.relaxations) <= set(RELAXATIONS)
            assert set(entry.derivations) <= {*DERIVATION_RULES, "best_sampled"}
            assert callable(strategies._load(entry.factory))
        else:
            assert callable(strategies._load(entry.factory))


def test_commands_list_exactly_the_registry():
    assert search.FLAGS["strategy"].parser.enum_values == list(strategies.names())
    one_shot = strategies.names(strategies.ONE_SHOT)
    assert set(CompareSettings(output_dir="x").strategies) <= set(one_shot)
    for name in one_shot:
        assert name in search.FLAGS["strategy"].help
        assert name in compare.FLAGS["strategies"].help


def test_random_means_one_strategy_everywhere(tmp_path, capsys):
    """'random' is trial-based random search; the comparison refuses it and names random_ws."""
    assert strategies.get("random").kind == strategies.TRIAL_BASED
    out = tmp_path / "never"
    code = compare.main(["kerasnas-compare", f"--output_dir={out}", "--strategies=snas,random"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--strategies" in err[0] and "'random_ws'" in err[0]
    assert not out.exists()


def _defaults(settings, command, context) -> None:
    for spec in command.specs.values():
        path = spec.paths.get(context)
        if path is None or spec.mixed_default:
            continue
        value = settings
        for part in path.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        value = list(value) if isinstance(value, tuple) else value
        if spec.name in command.required:
            continue
        assert command.flags[spec.name].default == value, (context, spec.name)


def test_every_flag_default_is_its_settings_default():
    for name in strategies.names(strategies.ONE_SHOT):
        _defaults(OneShotSettings(output_dir="", strategy=name), search.COMMAND, name)
    for name in strategies.names(strategies.TRIAL_BASED):
        _defaults(TrialSettings(output_dir="", strategy=name), search.COMMAND, name)
    _defaults(RetrainSettings(output_dir="", genotype=""), train.COMMAND, "default")
    _defaults(CompareSettings(output_dir=""), compare.COMMAND, "default")
    # a flag whose default differs between strategies shows none and says so
    assert search.FLAGS["relaxation"].default is None
    assert "the strategy's own" in search.FLAGS["relaxation"].help


def _table(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header`, as cells."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_readme_tables_list_exactly_the_registered_strategies():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    one_shot = _table(text, "| `--strategy` | trainer")
    assert [row[0].strip("`") for row in one_shot] == list(strategies.names(strategies.ONE_SHOT))
    for row in one_shot:
        relaxations = strategies.get(row[0].strip("`")).relaxations
        assert [r.strip("` ") for r in row[2].split("/")] == list(relaxations), row
    trial = _table(text, "| `--strategy` | what proposes")
    listed = [name.replace(" (default)", "") for row in trial for name in row[0].split(", ")]
    listed = [name.strip("`") for name in listed]
    assert sorted(listed) == sorted(strategies.names())


def test_set_path_writes_nested_settings():
    settings = TrialSettings(output_dir="x", strategy="evolution")
    set_path(settings, "config.sample_size", 2)
    set_path(settings, "space_args.max_layers", 3)
    assert settings.config.sample_size == 2 and settings.space_args == {"max_layers": 3}


TOY = '''
import dataclasses

from kerasnas.multitrial.settings import OracleSettings
from kerasnas.options import option


@dataclasses.dataclass
class ToySettings(OracleSettings):
    """A new trial-based strategy: random search that records its one setting."""

    toy_weight: float = option(1.0, "toy: a weight the oracle keeps.", above=0)

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.oracles import RandomSearchOracle

        oracle = RandomSearchOracle(**self.common(space, max_trials, seed))
        oracle.toy_weight = self.toy_weight
        return oracle
'''

SCRIPT = """
import json, sys
from kerasnas import strategies
strategies.register(strategies.Strategy(
    "toy", strategies.TRIAL_BASED, "toy", "tab:brown", "a strategy added by one registration",
    "toy_strategy:ToySettings", "toy_strategy:ToySettings.make_oracle"))
from kerasnas.cli import search
out = sys.argv[1]
bad = search.main(
    ["kerasnas-search", "--strategy=random", "--toy_weight=2", f"--output_dir={out}x"])
code = search.main(["kerasnas-search", "--strategy=toy", "--toy_weight=2.5", "--search_space=nasrl",
    "--max_layers=2", "--num_filters=4", "--filter_sizes=1,3", "--max_trials=2",
    "--trial_epochs=1", "--batch_size=128", "--verbose=0", f"--output_dir={out}"])
settings = search.settings_from_flags()
print(json.dumps([bad, code, type(settings.config).__name__, settings.config.toy_weight]))
"""


@pytest.mark.slow
def test_a_new_strategy_is_one_registration_plus_its_module(tmp_path):
    (tmp_path / "toy_strategy.py").write_text(textwrap.dedent(TOY))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, str(tmp_path)])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bad, code, settings_class, weight = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bad == 2 and "--toy_weight applies to --strategy=toy only" in proc.stderr
    assert code == 0 and settings_class == "ToySettings" and weight == 2.5
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["strategy"] == "toy" and metrics["trials_completed"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--strategy=snas", "--population_size=3"],
            "--population_size applies to --strategy=evolution,renas,nsga2 only",
        ),
        (["--strategy=reinforce", "--a_lr=0.1"], "--a_lr applies to --strategy=snas,darts only"),
        (
            ["--strategy=hyperband", "--relaxation=softmax"],
            "--relaxation applies to one-shot strategies",
        ),
        (
            ["--strategy=darts", "--trial_epochs=2"],
            "--trial_epochs applies to trial-based strategies",
        ),
    ],
)
def test_flag_owners_come_from_the_settings_classes(argv, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert search.main(["kerasnas-search", f"--output_dir={out}", *argv]) == 2
    assert message in capsys.readouterr().err
