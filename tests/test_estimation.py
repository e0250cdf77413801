"""Performance estimators of trial-based search (kerasnas.estimation): what each does with a
trial, their settings and flags, and a search that uses them."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from kerasnas.cli import search
from kerasnas.errors import SettingError
from kerasnas.estimation import Estimate, FullTraining, TrialContext
from kerasnas.estimation.lc import LearningCurveStopping
from kerasnas.estimation.proxy import LowFidelity
from kerasnas.estimation.settings import EstimationSettings


class _Bundle:
    """Records the training parts asked for."""

    def __init__(self):
        self.parts = []

    def train(self, epoch, batch_size, part=(0, 1)):
        self.parts.append(part)
        return ("data", epoch, part)


def _trial(curve, best=float("-inf"), epochs=None, bundle=None):
    """A TrialContext whose evaluations return `curve` in order; counts the epochs."""
    values = iter(curve)
    seen = {"epochs": [], "datasets": []}

    def train_epoch(model, epoch, dataset=None):
        seen["epochs"].append(epoch)
        seen["datasets"].append(dataset)

    ctx = TrialContext(
        trial_id="7",
        arch={"a": 1},
        space=None,
        bundle=bundle,
        epochs=len(curve) if epochs is None else epochs,
        batch_size=16,
        best_accuracy=best,
        completed=[],
        build=lambda arch: {"model of": arch},
        train_epoch=train_epoch,
        evaluate=lambda model: next(values),
    )
    return ctx, seen


def _pow3(epochs, c=0.97, a=0.6, alpha=0.8, noise=0.004, seed=0):
    x = np.arange(1, epochs + 1)
    y = c - a * x**-alpha + np.random.default_rng(seed).normal(0, noise, epochs)
    return [float(v) for v in np.clip(y, 0, 1)]


def test_full_training_trains_the_budget_then_evaluates_once():
    ctx, seen = _trial([0.8], epochs=4)
    estimate = FullTraining().estimate(ctx)
    assert seen["epochs"] == [0, 1, 2, 3]
    assert estimate.val_accuracy == 0.8 and estimate.epochs == 4
    assert estimate.model == {"model of": {"a": 1}}
    assert not estimate.stopped_early


def test_lc_stops_a_plateau_far_below_the_best_at_its_first_check():
    curve = [0.5 + 0.002 * ((-1) ** i) for i in range(20)]
    ctx, seen = _trial(curve, best=0.95)
    lc = LearningCurveStopping(min_fraction=0.3, threshold=0.05)
    estimate = lc.estimate(ctx)
    assert lc.first_check(20) == 6
    assert estimate.stopped_early and estimate.epochs == 6 and len(seen["epochs"]) == 6
    assert estimate.curve == curve[:6]
    assert abs(estimate.predicted_accuracy - 0.5) < 0.05
    assert estimate.val_accuracy == estimate.predicted_accuracy  # the paper's reported value


@pytest.mark.slow  # a curve fit at each of 15 checks
def test_lc_lets_a_curve_that_will_beat_the_best_run_to_the_end():
    curve = _pow3(20)
    ctx, seen = _trial(curve, best=curve[-1] - 0.1)
    estimate = LearningCurveStopping().estimate(ctx)
    assert not estimate.stopped_early and len(seen["epochs"]) == 20
    assert estimate.val_accuracy == curve[-1]
    assert abs(estimate.predicted_accuracy - curve[-1]) < 0.05  # from the last check


def test_lc_never_stops_the_first_trial():
    curve = [0.3] * 10
    ctx, seen = _trial(curve)  # no best yet
    estimate = LearningCurveStopping(every=3).estimate(ctx)
    assert not estimate.stopped_early and len(seen["epochs"]) == 10


def test_lc_is_deterministic_for_a_trial():
    curve = [0.5 + 0.01 * i for i in range(10)]
    a = LearningCurveStopping().estimate(_trial(curve, best=0.99)[0])
    b = LearningCurveStopping().estimate(_trial(curve, best=0.99)[0])
    assert a.record() == b.record()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"min_fraction": 1.0}, "min_fraction"),
        ({"every": 0}, "every"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_lc_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LearningCurveStopping(**kwargs)


def test_proxy_trains_fewer_epochs_on_part_of_the_data():
    bundle = _Bundle()
    ctx, seen = _trial([0.7], epochs=10, bundle=bundle)
    estimate = LowFidelity(epochs=2, data_fraction=0.5).estimate(ctx)
    assert seen["epochs"] == [0, 1]
    assert bundle.parts == [(0, 2), (0, 2)]
    assert seen["datasets"] == [("data", 0, (0, 2)), ("data", 1, (0, 2))]
    assert estimate.val_accuracy == 0.7 and estimate.epochs == 1.0


def test_proxy_with_all_the_data_uses_the_trial_pipeline():
    ctx, seen = _trial([0.7], epochs=3)
    estimate = LowFidelity(epochs=None, data_fraction=1.0).estimate(ctx)
    assert seen["datasets"] == [None, None, None] and estimate.epochs == 3


@pytest.mark.parametrize(
    "kwargs, name", [({"epochs": 0}, "epochs"), ({"data_fraction": 1.5}, "data_fraction")]
)
def test_proxy_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LowFidelity(**kwargs)


def test_settings_make_each_estimator():
    assert isinstance(EstimationSettings().make(), FullTraining)
    proxy = EstimationSettings(estimator="proxy", proxy_epochs=2, proxy_data_fraction=0.25)
    made = proxy.make()
    assert isinstance(made, LowFidelity) and made.epochs == 2 and made.data_fraction == 0.25
    lc = EstimationSettings(estimator="lc", lc_threshold=0.1, lc_every=2).make(seed=3)
    assert isinstance(lc, LearningCurveStopping) and lc.threshold == 0.1 and lc.seed == 3
    with pytest.raises(SettingError, match="proxy_data_fraction"):
        EstimationSettings(proxy_data_fraction=2.0).validate()


def test_a_bad_estimator_flag_is_one_line(capsys):
    code = search.main(["kerasnas-search", "--output_dir=x", "--strategy=random", "--estimator=x"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--estimator" in err[0]


def test_estimate_record_lists_the_history_fields():
    record = Estimate(0.5, None, 2, [0.4, 0.5], True, 0.52, 0.01, "3").record()
    assert record == {
        "epochs_trained": 2,
        "stopped_early": True,
        "predicted_accuracy": 0.52,
        "predicted_std": 0.01,
        "inherited_from": "3",
        "val_curve": [0.4, 0.5],
    }


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["proxy", "lc"])
def test_a_search_with_an_estimator_writes_what_it_did(estimator, tmp_path):
    out = tmp_path / "run"
    argv = [
        "kerasnas-search",
        f"--output_dir={out}",
        "--strategy=random",
        "--search_space=nasrl",
        "--max_layers=2",
        "--num_filters=4,8",
        "--filter_sizes=1,3",
        "--max_trials=3",
        "--trial_epochs=4",
        "--batch_size=128",
        "--verbose=0",
        f"--estimator={estimator}",
        "--proxy_epochs=1",
        "--lc_threshold=0.5",  # stops a trial that is not clearly better
    ]
    assert search.main(argv) == 0
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["estimator"] == estimator for r in rows)
    if estimator == "proxy":
        assert all(float(r["epochs_trained"]) == 0.5 for r in rows)  # 1 epoch on half
    else:
        assert rows[0]["stopped_early"] == "False"  # no best yet
        for r in rows:
            stopped = r["stopped_early"] == "True"
            assert float(r["epochs_trained"]) in ((2.0, 3.0) if stopped else (4.0,))
            if stopped:
                assert float(r["val_accuracy"]) == float(r["predicted_accuracy"])


def _budget_argv(out, *extra):
    return [
        "kerasnas-search",
        f"--output_dir={out}",
        "--strategy=random",
        "--search_space=nasrl",
        "--max_layers=2",
        "--num_filters=4,8",
        "--filter_sizes=1,3",
        "--max_trials=50",
        "--trial_epochs=1",
        "--batch_size=128",
        "--verbose=0",
        *extra,
    ]


@pytest.mark.slow
def test_a_time_budget_ends_the_search_and_resumes_with_a_bigger_one(tmp_path):
    import json

    out = tmp_path / "run"
    assert search.main(_budget_argv(out, "--time_budget=0.01")) == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    # the first trial starts (nothing spent yet), then the budget is gone
    assert metrics["trials"] == 1 and metrics["budget_spent"] is True
    first = metrics["trial_seconds"]
    budget = 2.5 * first  # room for one or two more trials of about the same length
    assert search.main(_budget_argv(out, f"--time_budget={budget}", "--resume")) == 0
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    assert 2 <= metrics["trials"] < 50 and metrics["budget_spent"] is True
    with open(os.path.join(out, "history.csv"), encoding="utf-8") as f:
        seconds = [float(r["seconds"]) for r in csv.DictReader(f)]
    assert sum(seconds[:-1]) < budget <= sum(seconds)  # the last trial began under it


def test_a_time_budget_is_refused_in_distributed_mode(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")
    code = search.main(_budget_argv(tmp_path / "run", "--time_budget=10"))
    assert code != 0
    assert "--time_budget" in capsys.readouterr().err
