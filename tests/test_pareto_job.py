"""Tests for the front command (kerasnas.jobs.pareto, kerasnas-pareto): settings, the
automatic targets, and a tiny front end to end."""

from __future__ import annotations

import json
import os

import pytest

from kerasnas import pareto
from kerasnas.errors import SettingError
from kerasnas.jobs.pareto import ParetoSettings, auto_targets, run_pareto
from kerasnas.target import Target

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_5x5")
TINY = dict(init_channels=4, layers=3, nodes=2, ops=OPS)


def test_lambdas_from_the_command_line_are_numbers():
    s = ParetoSettings(output_dir="x", lambdas=("0.05", "1.5"))
    s.validate()
    assert s.plan() == [0.05, 1.5]
    with pytest.raises(SettingError, match="lambdas"):
        ParetoSettings(output_dir="x", lambdas=("a",)).validate()
    with pytest.raises(SettingError, match="lambdas"):
        ParetoSettings(output_dir="x", lambdas=("-1",)).validate()


def test_each_retraining_gets_its_own_seed_and_directory():
    from kerasnas.jobs.pareto import retrain_argv, retrain_name

    s = ParetoSettings(output_dir="x", seed=3, retrain_seeds=3)
    assert [retrain_name(k) for k in range(3)] == ["retrain", "retrain_2", "retrain_3"]
    assert "--seed=3" in retrain_argv(s, "g.json", "r")
    assert "--seed=5" in retrain_argv(s, "g.json", "r", seed=5)
    with pytest.raises(SettingError, match="retrain_seeds"):
        ParetoSettings(output_dir="x", retrain_seeds=0).validate()


def test_targets_are_parsed_with_the_first_ones_resource():
    s = ParetoSettings(output_dir="x", targets=("params:20k", "30k", "45000"))
    assert [t.value for t in s.parsed_targets()] == [20e3, 30e3, 45e3]
    assert {t.resource for t in s.parsed_targets()} == {"params"}


@pytest.mark.parametrize(
    "targets, words",
    [
        (("20k",), "needs its resource"),
        (("params:20k", "latency:0.05ms"), "one resource"),
        (("params:20k", "20k"), "twice"),
        (("params:x",), "<resource>:<cost>"),
    ],
)
def test_bad_targets_name_the_flag(targets, words):
    with pytest.raises(SettingError) as e:
        ParetoSettings(output_dir="x", targets=targets).validate()
    assert "targets" in str(e.value) and words in str(e.value)


@pytest.mark.slow
def test_auto_targets_rise_evenly_in_log_scale_inside_the_space():
    targets = auto_targets(ParetoSettings(output_dir="x", points=4, **TINY))
    assert [t.resource for t in targets] == ["params"] * 4
    values = [t.value for t in targets]
    ratios = [b / a for a, b in zip(values, values[1:], strict=False)]
    assert all(r > 1 for r in ratios) and max(ratios) == pytest.approx(min(ratios))


@pytest.mark.slow
def test_a_tiny_front_is_searched_exported_retrained_and_written(tmp_path):
    out = tmp_path / "front"
    settings = ParetoSettings(
        output_dir=str(out),
        targets=("params:5k",),
        epochs=1,
        retrain_epochs=1,
        retrain_seeds=2,
        jobs=1,
        verbose=0,
        **TINY,
    )
    rows = run_pareto(settings)
    assert len(rows) == 1
    # two retrainings, seeds 0 and 1: the row holds their mean and sample std
    base = out / rows[0]["dir"] / ".."
    seeds, accuracies = [], []
    for name in ("retrain", "retrain_2"):
        metrics = json.loads((base / name / "metrics.json").read_text())
        seeds.append(metrics["seed"])
        accuracies.append(metrics["test_accuracy"])
    assert seeds == [0, 1]
    assert rows[0]["retrained_accuracy"] == pytest.approx(sum(accuracies) / 2)
    assert rows[0]["retrained_std"] == pytest.approx(abs(accuracies[0] - accuracies[1]) / 2**0.5)
    table = pareto.read_csv(out / "pareto.csv")
    assert [r["target"] for r in table] == [str(Target.parse(t)) for t in settings.targets]
    for r in table:
        point = out / r["dir"]
        assert (point / "genotype.json").exists() and (point / "child.keras").exists()
        assert (point / "export" / "model.tflite").exists()
        assert r["latency_ms"] > 0 and r["retrained_accuracy"] is not None
        assert r["child_cost"] == r["child_params"]
    assert [r["on_front"] for r in table] == [1]
    assert (out / "pareto.png").stat().st_size > 0
    summary = json.loads((out / "pareto.json").read_text())
    assert all(p["tflite_verified"] for p in summary["points"])
    # a second call resumes: nothing is searched again; one more seed is one more retraining
    before = os.path.getmtime(out / table[0]["dir"] / "metrics.json")
    retrained = os.path.getmtime(base / "retrain" / "metrics.json")
    again = run_pareto(ParetoSettings(**{**settings.__dict__, "resume": True, "retrain_seeds": 3}))
    assert os.path.getmtime(out / table[0]["dir"] / "metrics.json") == before
    assert os.path.getmtime(base / "retrain" / "metrics.json") == retrained
    assert (base / "retrain_3" / "metrics.json").exists() and len(
        again[0]["retrained_accuracies"]
    ) == 3
    # other settings are still refused
    with pytest.raises(SettingError, match="epochs"):
        run_pareto(ParetoSettings(**{**settings.__dict__, "resume": True, "epochs": 2}))


@pytest.mark.slow
def test_targets_no_child_reaches_are_refused_before_any_search(tmp_path):
    settings = ParetoSettings(
        output_dir=str(tmp_path / "f"), targets=("params:5k", "1M", "500"), **TINY
    )
    with pytest.raises(SettingError, match="outside") as e:
        run_pareto(settings)
    assert "params:1M, params:500 outside" in str(e.value) and "params:5k" not in str(e.value)
    assert not (tmp_path / "f").exists()  # nothing written


def test_a_resumed_front_redoes_only_retrainings_of_another_budget(tmp_path, monkeypatch):
    """run_point with the commands faked: each retraining's accuracy is 0.9 + seed / 100."""
    from kerasnas.jobs import pareto as job

    calls = []

    def fake_tool(module, argv, output_dir, log_path, threads):
        calls.append((module, output_dir))
        flags = dict(a[2:].split("=", 1) for a in argv if "=" in a)
        os.makedirs(output_dir, exist_ok=True)
        if module.endswith("search"):
            metrics = {"child_cost": 5000, "child_params": 5000, "child_flops": 9000}
            metrics |= {"child_test_accuracy": 0.8, "search_seconds": 1.0, "target_ratio": 1.0}
        else:
            seed, epochs = int(flags["seed"]), int(flags["epochs"])
            metrics = {"test_accuracy": 0.9 + seed / 100, "epochs": epochs, "seed": seed}
        with open(os.path.join(output_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f)

    monkeypatch.setattr(job, "run_tool", fake_tool)
    s = ParetoSettings(output_dir=str(tmp_path), retrain_epochs=2, retrain_seeds=3, seed=1)
    row = job.run_point(s, 0, Target.parse("params:5k"))
    assert row["retrained_accuracies"] == pytest.approx([0.91, 0.92, 0.93])
    assert row["retrained_accuracy"] == pytest.approx(0.92)
    assert row["retrained_std"] == pytest.approx(0.01)
    assert len(calls) == 4
    calls.clear()  # the same budget again: nothing runs
    job.run_point(s, 0, Target.parse("params:5k"))
    assert calls == []
    # another retraining budget: the three retrainings again, not the search
    longer = ParetoSettings(**{**s.__dict__, "retrain_epochs": 5, "retrain_seeds": 1})
    row = job.run_point(longer, 0, Target.parse("params:5k"))
    assert [m for m, _ in calls] == ["kerasnas.cli.train"]
    assert row["retrained_std"] is None and row["retrained_accuracy"] == pytest.approx(0.91)
