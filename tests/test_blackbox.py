"""kerasnas-search with black-box strategies: every strategy end to end on a tiny digits
budget, the output contract, exact resume, and one-line errors for bad flag combinations."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import keras
import pytest

import kerasnas  # noqa: F401 (registers the layers best.keras needs)
from kerasnas import data as data_lib
from kerasnas.cli import search
from kerasnas.evaluate import accuracy
from kerasnas.jobs.trial_based import TrialSettings, run_trial_search
from kerasnas.multitrial.runner import TrialConfig, resource_aware_reward, trial_seed
from kerasnas.multitrial.settings import EvolutionSettings

ENV = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
TINY = {
    "nasrl": ["--max_layers=2", "--num_filters=4,8", "--filter_sizes=1,3"],
    "metaqnn": ["--max_layers=3", "--num_filters=4,8", "--filter_sizes=1,3"],
    "cell": ["--init_channels=4", "--layers=3", "--nodes=2", "--ops=skip_connect,max_pool_3x3"],
}
BUDGET = ["--max_trials=3", "--trial_epochs=1", "--batch_size=128", "--verbose=0"]
RUNS = {  # strategy -> (space, extra flags); every strategy, every space at least once
    "random": ("cell", ["--max_trials=2"]),  # cell children take ~5 s to build and trace
    "evolution": ("nasrl", ["--population_size=2", "--sample_size=2"]),
    "reinforce": ("nasrl", ["--controller_batch_size=3", "--controller_learning_rate=0.05"]),
    "renas": ("metaqnn", ["--population_size=2", "--sample_size=1", "--controller_batch_size=1"]),
    "metaqnn": ("metaqnn", ["--epsilon_explore=1"]),
    "bayesian": ("nasrl", ["--reward_target=300"]),  # MnasNet reward on params
    "hyperband": ("metaqnn", ["--trial_epochs=2"]),
    "nash": ("nasrl", ["--estimator=morphism", "--n_neigh=2", "--n_nm=1"]),
    "lemonade": ("nasrl", ["--estimator=morphism", "--n_init=1", "--n_accept=2"]),
    # the front's outputs: tests/test_nsga.py
    "nsga2": ("metaqnn", ["--population_size=2", "--sample_size=1", "--front_export=0"]),
}


def _argv(out, strategy, space, *extra):
    return [
        "kerasnas-search",
        f"--output_dir={out}",
        f"--strategy={strategy}",
        f"--search_space={space}",
        *TINY[space],
        *BUDGET,
        *extra,
    ]


def _history(out) -> list[dict]:
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def bundle():
    return data_lib.load("digits", seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", sorted(RUNS))
def test_strategy_end_to_end_writes_the_output_contract(strategy, tmp_path, bundle):
    space, extra = RUNS[strategy]
    out = tmp_path / "run"
    assert search.main(_argv(out, strategy, space, *extra)) == 0
    names = set(os.listdir(out))
    arch_file = "genotype.json" if space == "cell" else "architecture.json"
    expected = {arch_file, "metrics.json", "best.keras", "history.csv", "search_curve.png"}
    assert expected | {"tuner", "search_settings.json"} == names  # no temporary files left

    rows = _history(out)
    trials = 2 if space == "cell" else 3
    assert [r["trial_id"] for r in rows] == [str(i) for i in range(trials)]
    assert all(r["status"] == "COMPLETED" for r in rows)
    for r in rows:
        assert 0 <= float(r["reward"]) <= 1 and int(r["params"]) > 0 and int(r["flops"]) > 0
        assert float(r["seconds"]) > 0 and json.loads(r["architecture"])
    if strategy == "bayesian":
        for r in rows:
            expected = resource_aware_reward(float(r["val_accuracy"]), int(r["params"]), 300)
            assert float(r["reward"]) == pytest.approx(expected)
        assert any(float(r["reward"]) < float(r["val_accuracy"]) for r in rows)
    if strategy == "hyperband":
        assert {int(r["epochs"]) for r in rows} <= {1, 2}

    metrics = json.loads((out / "metrics.json").read_text())
    best = max(rows, key=lambda r: float(r["reward"]))
    assert metrics["best_reward"] == pytest.approx(float(best["reward"]))
    assert metrics["trials_completed"] == trials and metrics["strategy"] == strategy
    assert json.loads((out / arch_file).read_text()) == json.loads(
        next(r for r in rows if r["trial_id"] == metrics["best_trial_id"])["architecture"]
    )
    # the saved child is the trial's trained model: same validation accuracy
    model = keras.models.load_model(out / "best.keras")
    assert accuracy(model, bundle.valid(128)) == pytest.approx(metrics["best_valid_accuracy"])
    assert metrics["best_valid_accuracy"] == pytest.approx(float(best["val_accuracy"]))
    assert 0 <= metrics["best_test_accuracy"] <= 1


@pytest.mark.slow
def test_command_line_subprocess_and_resume_of_a_finished_run(tmp_path):
    out = tmp_path / "run"
    argv = _argv(out, "random", "nasrl")[1:]
    proc = subprocess.run(
        [sys.executable, "-m", "kerasnas.cli.search", *argv, "--verbose=1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(lines) == 3 and "reward" in lines[0] and "best" in lines[0]
    first = (out / "metrics.json").read_text()
    # resuming a finished search runs no trial and gives the same result
    assert search.main(_argv(out, "random", "nasrl", "--resume")) == 0
    assert json.loads((out / "metrics.json").read_text())["best_reward"] == pytest.approx(
        json.loads(first)["best_reward"]
    )
    assert len(_history(out)) == 3
    # resuming with another strategy is refused
    assert search.main(_argv(out, "evolution", "nasrl", "--resume")) == 2


def _settings(out, max_trials, resume=False) -> TrialSettings:
    return TrialSettings(
        output_dir=str(out),
        strategy="evolution",
        search_space="nasrl",
        max_trials=max_trials,
        trial=TrialConfig(epochs=1, batch_size=128, seed=5),
        space_args={"max_layers": 2, "min_layers": 1, "filters": (4, 8), "filter_heights": (1, 3)},
        # trial 1 random, then mutations of the best
        config=EvolutionSettings(population_size=1, sample_size=1),
        resume=resume,
        verbose=0,
    )


@pytest.mark.slow
def test_stopped_and_resumed_search_has_the_uninterrupted_history(tmp_path):
    whole = run_trial_search(_settings(tmp_path / "whole", 3))
    run_trial_search(_settings(tmp_path / "split", 1))  # stopped after 1 trial
    resumed = run_trial_search(_settings(tmp_path / "split", 3, resume=True))
    drop = ("seconds", "end_seconds")  # wall-clock only
    a = [{k: v for k, v in r.items() if k not in drop} for r in _history(tmp_path / "whole")]
    b = [{k: v for k, v in r.items() if k not in drop} for r in _history(tmp_path / "split")]
    assert len(a) == 3 and a == b
    assert whole["best_reward"] == resumed["best_reward"]
    assert whole["best_test_accuracy"] == resumed["best_test_accuracy"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--strategy=snas", "--search_space=nasrl"], "--strategy=snas"),
        (["--strategy=snas", "--max_trials=3"], "--max_trials"),
        (["--strategy=random", "--search_space=nasrl", "--relaxation=gumbel_hard"], "--relaxation"),
        (["--strategy=random", "--search_space=nasrl", "--layers=4"], "--layers"),
        (["--strategy=random", "--search_space=cell", "--max_layers=3"], "--max_layers"),
        (["--strategy=random", "--search_space=metaqnn", "--skip_connections=false"], "skip"),
        (["--strategy=evolution", "--population_size=2", "--sample_size=3"], "--sample_size"),
        (["--strategy=random", "--search_space=nasrl", "--num_filters=4,x"], "--num_filters"),
        (["--strategy=bayesian", "--reward_target=-1"], "--reward_target"),
        (["--strategy=genetic"], "--strategy"),
        (["--strategy=enas", "--a_lr=0.1"], "--a_lr"),
        (["--strategy=snas", "--darts_order=2"], "--darts_order"),
        (["--strategy=darts", "--resource_estimator=score"], "--resource_estimator"),
        (["--strategy=darts", "--search_space=nasrl"], "--strategy=darts"),
        (["--strategy=random", "--search_space=nasrl", "--epochs=3"], "--epochs"),
        (["--strategy=enas", "--ops=skip_connect,sep_conv_3x3"], "'none'"),
    ],
)
def test_bad_flag_combinations_fail_with_one_line_and_write_nothing(
    flags, expected, tmp_path, capsys
):
    out = tmp_path / "never"
    assert search.main(["kerasnas-search", f"--output_dir={out}", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and err[0].startswith("kerasnas-search: error:")
    assert not out.exists()


def test_distributed_environment_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    out = tmp_path / "never"
    assert search.main(_argv(out, "random", "nasrl")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "KERASTUNER_ORACLE_PORT" in err[0]
    assert not out.exists()


def test_resource_aware_reward_and_trial_seed():
    assert resource_aware_reward(0.9, 50, 100, alpha=0.0, beta=-0.07) == pytest.approx(0.9)
    over = resource_aware_reward(0.9, 200, 100, alpha=0.0, beta=-0.07)
    assert over == pytest.approx(0.9 * 2**-0.07) and over < 0.9
    assert resource_aware_reward(0.9, 50, 100, alpha=-0.07) > 0.9  # soft: smaller is better
    assert resource_aware_reward(0.9, 200, 100, alpha=0.0, beta=-1.0) == pytest.approx(0.45)
    assert trial_seed(0, "01") == trial_seed(0, "01") != trial_seed(1, "01")
    with pytest.raises(ValueError):
        TrialConfig(reward_target=0.0).validate()


def test_command_line_lists_every_strategy():
    from kerasnas import strategies

    assert search.STRATEGIES == strategies.names()
    assert search.FLAGS["strategy"].parser.enum_values == list(strategies.names())
    assert set(RUNS) == set(strategies.names(strategies.TRIAL_BASED))


@pytest.mark.slow
def test_export_of_the_best_child_is_verified(tmp_path):
    """--export works for black-box searches too: the best child, checked, in export/."""
    out = tmp_path / "exp"
    assert search.main(_argv(out, "random", "nasrl", "--export=tflite")) == 0
    report = json.loads((out / "export" / "export_report.json").read_text())
    assert report["passed"] is True and report["formats"]["tflite"]["max_abs_diff"] < 1e-4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["export"]["tflite"]["passed"] is True
    assert report["keras_accuracy"] == pytest.approx(metrics["best_test_accuracy"], abs=1e-9)
