"""kerasnas-compare: the comparison experiment end to end on a tiny budget, resume, errors;
and every one-shot strategy through kerasnas-search's pipeline."""

import csv
import json
import os

import pytest

from kerasnas.cli import compare
from kerasnas.errors import RunError, SettingError
from kerasnas.genotype import Genotype
from kerasnas.jobs.compare import COLUMNS, CompareSettings, summarize
from kerasnas.jobs.one_shot import OneShotSettings, default_config, run_search

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")
TINY = {"init_channels": 4, "layers": 3, "nodes": 2, "ops": OPS}


def _tiny_compare(out, **kw):
    kw.setdefault("budget", "epochs")
    return CompareSettings(
        output_dir=str(out),
        seeds=1,
        epochs=2,
        retrain_epochs=1,
        retrain_init_channels=4,
        retrain_layers=3,
        verbose=0,
        **TINY,
        **kw,
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from kerasnas.jobs.compare import run_comparison

    out = tmp_path_factory.mktemp("cmp") / "cmp"
    settings = _tiny_compare(out, jobs=2, darts_order=2)
    rows = run_comparison(settings)
    return out, settings, rows


@pytest.mark.slow
def test_comparison_writes_table_summary_and_three_plots(finished):
    out, settings, rows = finished
    with open(out / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["strategy"] for r in table] == list(settings.strategies)
    assert list(table[0]) == list(COLUMNS)
    for r in table:
        for col in ("supernet_valid_accuracy", "child_valid_accuracy", "retrained_test_accuracy"):
            assert 0.0 <= float(r[col]) <= 1.0
        assert int(r["params"]) > 0 and float(r["search_seconds"]) > 0
        assert float(r["final_entropy"]) > 0
    for name in ("accuracy_vs_epoch.png", "supernet_vs_child.png", "entropy_vs_epoch.png"):
        assert (out / name).stat().st_size > 5000
    summary = json.loads((out / "summary.json").read_text())["strategies"]
    assert set(summary) == set(settings.strategies)
    assert summary["snas"]["accuracy_drop"]["n"] == 1
    # each run is a normal search + retrain output directory
    for s in settings.strategies:
        run = out / "runs" / f"{s}_seed0"
        assert (run / "search" / "metrics.json").exists()
        assert (run / "retrain" / "model.keras").exists()
        history = json.loads((run / "search" / "history.json").read_text())
        supernet = "softmax" if s == "darts" else "sampled"
        assert len(history) == 2 and "entropy" in history[0]
        assert f"{supernet}_supernet_valid_acc" in history[0]
    # DARTS keeps two inputs per node; random sampling with weight sharing too
    for s in ("darts", "random_ws"):
        g = Genotype.load(out / "runs" / f"{s}_seed0" / "search" / "genotype.json")
        assert all(len(node) == 2 for node in g.normal + g.reduce)
    metrics = json.loads((out / "runs" / "darts_seed0" / "search" / "metrics.json").read_text())
    assert metrics["settings"]["config"]["order"] == 2


@pytest.mark.slow
def test_resumed_comparison_reuses_finished_runs(finished):
    out, settings, rows = finished
    stamp = os.stat(out / "runs" / "snas_seed0" / "search" / "metrics.json").st_mtime_ns
    again = compare.main(
        ["kerasnas-compare", f"--output_dir={out}", "--resume", "--verbose=0"] + _flags(settings)
    )
    assert again == 0
    assert os.stat(out / "runs" / "snas_seed0" / "search" / "metrics.json").st_mtime_ns == stamp
    with open(out / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [float(r["child_test_accuracy"]) for r in table] == pytest.approx(
        [r["child_test_accuracy"] for r in rows], abs=1e-5
    )


def _flags(settings):
    return [
        "--seeds=1",
        f"--budget={settings.budget}",
        f"--darts_order={settings.darts_order}",
        f"--epochs={settings.epochs}",
        f"--retrain_epochs={settings.retrain_epochs}",
        f"--retrain_init_channels={settings.retrain_init_channels}",
        f"--retrain_layers={settings.retrain_layers}",
        f"--init_channels={settings.init_channels}",
        f"--layers={settings.layers}",
        f"--nodes={settings.nodes}",
        f"--ops={','.join(settings.ops)}",
    ]


@pytest.mark.slow
def test_resume_with_other_settings_is_refused(finished, capsys):
    out, settings, _ = finished
    flags = [f for f in _flags(settings) if not f.startswith("--epochs")] + ["--epochs=3"]
    code = compare.main(["kerasnas-compare", f"--output_dir={out}", "--resume", *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert "--epochs: 2 -> 3" in err


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--strategies=snas,genetic"], "--strategies"),
        (["--strategies=snas,snas"], "twice"),
        (["--strategies=enas", "--ops=skip_connect,sep_conv_3x3"], "'none'"),
        (["--a_lr=0"], "--a_lr"),
        (["--darts_order=3"], "--darts_order"),
        (["--ops=conv_9x9"], "--ops"),
        (["--budget=epochs", "--search_seconds=60"], "--search_seconds applies to --budget=time"),
        (["--budget=time", "--search_seconds=0"], "--search_seconds must be > 0"),
        (["--budget=time", "--search_seconds=-30"], "--search_seconds must be > 0"),
        (["--budget=hours"], "--budget"),
        (["--budget=time", "--epochs=0"], "--epochs"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(flags, expected, tmp_path, capsys):
    out = tmp_path / "never"
    assert compare.main(["kerasnas-compare", f"--output_dir={out}", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and err[0].startswith("kerasnas-compare: error:")
    assert not out.exists()


@pytest.mark.slow
def test_a_failing_run_names_the_run_and_its_log(tmp_path):
    from kerasnas.jobs.compare import run_comparison

    settings = _tiny_compare(tmp_path / "bad", strategies=("snas",), jobs=1)
    settings.dataset = f"npz:{tmp_path}/missing.npz"
    with pytest.raises(RunError, match=r"snas_seed0.*missing\.npz|missing\.npz.*search\.log"):
        run_comparison(settings)


def test_summary_statistics():
    rows = [
        {"strategy": "snas", "seed": s, "supernet_valid_accuracy": a, "child_valid_accuracy": c}
        for s, (a, c) in enumerate([(0.9, 0.95), (0.8, 0.9)])
    ]
    stats = summarize(rows)["snas"]
    assert stats["supernet_valid_accuracy"]["mean"] == pytest.approx(0.85)
    assert stats["supernet_valid_accuracy"]["std"] == pytest.approx(0.0707107, rel=1e-5)
    assert stats["accuracy_drop"]["mean"] == pytest.approx(-0.075)


# -- the one-shot strategies through the search pipeline -----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["darts", "enas", "random_ws"])
def test_one_shot_strategies_keep_the_search_output_contract(strategy, tmp_path):
    out = tmp_path / strategy
    settings = OneShotSettings(
        output_dir=str(out),
        strategy=strategy,
        verbose=0,
        export=(),
        config=default_config(strategy, epochs=1),
        **TINY,
    )
    metrics = run_search(settings)
    for name in ("genotype.json", "child.keras", "cells.png", "history.json", "metrics.json"):
        assert (out / name).exists()
    assert metrics["strategy"] == strategy
    assert metrics["derive"] == ("top2" if strategy == "darts" else "best_sampled")
    assert 0 <= metrics["child_test_accuracy"] <= 1 and metrics["final_entropy"] > 0


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({"strategy": "darts", "relaxation": "gumbel"}, "relaxation"),
        ({"strategy": "snas", "derive": "best_sampled"}, "derive"),
        ({"strategy": "enas", "ops": ("skip_connect", "sep_conv_3x3")}, "'none'"),
        ({"strategy": "darts", "config": default_config("snas")}, "DARTSConfig"),
        ({"strategy": "bogus"}, "strategy"),
    ],
)
def test_bad_one_shot_settings_raise_search_error(kwargs, expected, tmp_path):
    with pytest.raises(SettingError, match=expected):
        run_search(OneShotSettings(output_dir=str(tmp_path / "x"), **kwargs))
    assert not (tmp_path / "x").exists()


# -- the search budget: equal epochs (default) or equal seconds ------------------------------


def test_epoch_budget_passes_the_same_search_flags_as_before():
    from kerasnas.jobs.compare import search_argv

    settings = CompareSettings(output_dir="cmp", budget="epochs")
    argv = search_argv(settings, "snas", 1, "out")
    assert "--epochs=10" in argv and not [a for a in argv if a.startswith("--time_budget")]
    assert argv == [
        "--strategy=snas",
        "--output_dir=out",
        "--dataset=digits",
        "--valid_fraction=0.2",
        "--test_fraction=0.2",
        "--seed=1",
        "--batch_size=64",
        "--verbose=0",
        "--epochs=10",
        "--init_channels=8",
        "--layers=5",
        "--nodes=4",
        f"--ops={','.join(settings.ops)}",
        "--export=",
        "--a_lr=0.3",
    ]
    four = CompareSettings(output_dir="c", budget="epochs", epochs=4)
    assert "--epochs=4" in search_argv(four, "enas", 0, "o")


def test_time_budget_passes_seconds_and_an_epoch_cap():
    from kerasnas.jobs.compare import DEFAULT_SEARCH_SECONDS, TIME_EPOCH_CAP, search_argv

    timed = CompareSettings(output_dir="c", budget="time", search_seconds=90)
    argv = search_argv(timed, "enas", 0, "o")
    assert "--time_budget=90.0" in argv and f"--epochs={TIME_EPOCH_CAP}" in argv
    default = search_argv(CompareSettings(output_dir="c", budget="time"), "darts", 0, "o")
    assert f"--time_budget={DEFAULT_SEARCH_SECONDS}" in default
    capped = CompareSettings(output_dir="c", budget="time", epochs=7)
    assert "--epochs=7" in search_argv(capped, "snas", 0, "o")


def test_comparisons_started_before_the_budget_setting_resume(tmp_path):
    from kerasnas.jobs.compare import Comparison

    out = tmp_path / "old"
    out.mkdir()
    saved = _tiny_compare(out).to_json()
    saved["epochs"] = 2
    for key in ("budget", "search_seconds"):
        del saved[key]  # what settings.json held before budget=time
    (out / "settings.json").write_text(json.dumps(saved))
    Comparison(_tiny_compare(out, resume=True)).open_output_dir()  # no error
    with pytest.raises(SettingError, match="budget"):
        Comparison(_tiny_compare(out, resume=True, budget="time")).open_output_dir()


@pytest.mark.slow
def test_time_budget_comparison_end_to_end(tmp_path):
    """Equal seconds for SNAS and random sampling: each stops when its seconds are spent;
    the table, summary and plots say how many epochs and steps each got."""
    from kerasnas.jobs.compare import TIME_EPOCH_CAP, run_comparison

    seconds = 6.0
    settings = CompareSettings(
        output_dir=str(tmp_path / "cmp"),
        strategies=("snas", "random_ws"),
        budget="time",
        search_seconds=seconds,
        seeds=1,
        retrain_epochs=1,
        retrain_init_channels=4,
        retrain_layers=3,
        jobs=2,
        verbose=0,
        **TINY,
    )
    rows = run_comparison(settings)
    out = tmp_path / "cmp"
    with open(out / "comparison.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["strategy"] for r in table] == ["snas", "random_ws"]
    for r, row in zip(table, rows, strict=True):
        assert r["budget"] == "time"
        assert int(r["epochs_done"]) == len(row["history"]) >= 1 and int(r["steps"]) >= 1
        # stopped by its seconds (not by the cap), overshooting by one step and epoch-end work
        assert seconds <= float(r["budget_seconds"]) < seconds + 60
        assert float(r["search_seconds"]) >= float(r["budget_seconds"])
        metrics = json.loads(
            (out / "runs" / f"{r['strategy']}_seed0" / "search" / "metrics.json").read_text()
        )
        assert metrics["stopped_by"] == "time_budget" and metrics["time_budget"] == seconds
        assert metrics["epochs"] == TIME_EPOCH_CAP and metrics["epochs_done"] < TIME_EPOCH_CAP
        last = row["history"][-1]
        assert last["budget_fraction"] == 1.0 and last["budget_seconds"] == pytest.approx(
            metrics["budget_seconds"], abs=0.01
        )
        if int(r["steps"]) > 1:  # the first step (tracing) may take the whole budget
            # set before every step from the seconds spent: annealed as the budget ran out
            assert last["w_lr"] < 0.025 and last.get("temperature", 0.0) < 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["kind"] == "time" and summary["budget"]["deterministic"] is False
    assert summary["budget"]["search_seconds"] == seconds
    assert summary["strategies"]["random_ws"]["epochs_done"]["n"] == 1
    for name in ("accuracy_vs_epoch.png", "supernet_vs_child.png", "entropy_vs_epoch.png"):
        assert (out / name).stat().st_size > 5000
