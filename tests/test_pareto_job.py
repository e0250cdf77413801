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
        jobs=1,
        verbose=0,
        **TINY,
    )
    rows = run_pareto(settings)
    assert len(rows) == 1
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
    # a second call resumes: nothing is searched again
    before = os.path.getmtime(out / table[0]["dir"] / "metrics.json")
    run_pareto(ParetoSettings(**{**settings.__dict__, "resume": True}))
    assert os.path.getmtime(out / table[0]["dir"] / "metrics.json") == before


@pytest.mark.slow
def test_targets_no_child_reaches_are_refused_before_any_search(tmp_path):
    settings = ParetoSettings(
        output_dir=str(tmp_path / "f"), targets=("params:5k", "1M", "500"), **TINY
    )
    with pytest.raises(SettingError, match="outside") as e:
        run_pareto(settings)
    assert "params:1M, params:500 outside" in str(e.value) and "params:5k" not in str(e.value)
    assert not (tmp_path / "f").exists()  # nothing written
