"""Weight inheritance through network morphisms (kerasnas.estimation.inheritance): the runner
keeps every trial's model when the estimator asks, the lineage round-trips, and a child
starts computing what its trained parent computes."""

from __future__ import annotations

import os

import numpy as np
import pytest

from kerasnas import data as data_lib
from kerasnas.estimation import Estimate, Estimator, TrialContext, inheritance, morphism
from kerasnas.estimation.inheritance import MorphismInheritance
from kerasnas.multitrial.oracles import RandomSearchOracle
from kerasnas.multitrial.runner import MODEL_FILE, ArchTuner, TrialConfig
from kerasnas.multitrial.settings import OracleSettings
from kerasnas.search_spaces.nasrl import NASRLSpace


def _space(**kwargs):
    return NASRLSpace(
        **{
            "max_layers": 4,
            "min_layers": 1,
            "filter_heights": (1, 3),
            "filter_widths": (1, 3),
            "filters": (4, 8),
            **kwargs,
        }
    )


@pytest.fixture(scope="module")
def bundle():
    return data_lib.load("digits", seed=0)


class _Untrained(Estimator):
    """Builds the trial's model, no training; accuracies fall trial after trial."""

    name = "untrained"

    def __init__(self, keeps):
        self.keeps = keeps
        self.accuracies = iter([0.9, 0.5, 0.4])

    @property
    def keeps_models(self):  # an instance's choice, for the test
        return self.keeps

    def estimate(self, trial):
        return Estimate(next(self.accuracies), trial.build(trial.arch), 0)


def _oracle(space, trials, seed=0):
    return RandomSearchOracle(**OracleSettings.common(space, trials, seed))


@pytest.mark.parametrize("keeps", [False, True])
def test_the_runner_keeps_every_model_only_when_asked(keeps, bundle, tmp_path):
    space = _space()
    tuner = ArchTuner(
        _oracle(space, 3),
        space,
        bundle,
        TrialConfig(epochs=1, batch_size=128),
        str(tmp_path),
        verbose=0,
        estimator=_Untrained(keeps),
    )
    tuner.search()
    kept = [t for t in ("0", "1", "2") if tuner.load_model(t) is not None]
    assert kept == (["0", "1", "2"] if keeps else ["0"])  # the best so far: trial 0 only
    for t in ("0", "1", "2"):
        path = os.path.join(tuner.project_dir, f"trial_{t}", MODEL_FILE)
        assert os.path.exists(path) == (t in kept)
    assert tuner.load_model(kept[-1]).output_shape == (None, bundle.num_classes)
    assert tuner.load_model("7") is None


def test_lineage_round_trips_through_json():
    ops = [
        morphism.Morphism("widen", 0, 8),
        morphism.Morphism("kernel", 1, (3, 3)),
        morphism.Morphism("deepen", 0),
        morphism.Morphism("skip", 2, 0),
    ]
    values = inheritance.lineage_values("03", ops)
    assert all(isinstance(v, str) for v in values.values())  # keras-tuner protos: strings
    assert inheritance.lineage({"num_layers": 2, **values}) == ("03", ops)
    assert inheritance.lineage({"num_layers": 2}) == (None, [])
    assert inheritance.lineage(inheritance.lineage_values("1", [])) == ("1", [])


def test_bad_epochs_are_named():
    with pytest.raises(ValueError, match="epochs"):
        MorphismInheritance(epochs=0)


SHAPE = (8, 8, 1)


def _randomise(model, rng):
    """Random weights, batch-norm variances > 0 (as tests/test_morphism.py)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            new = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights]
            if layer.name.endswith("_bn"):
                new[3] = rng.uniform(0.5, 2.0, weights[3].shape).astype(np.float32)
            layer.set_weights(new)


def _context(space, arch, values, parent_arch, parent_model, epochs=3):
    """A TrialContext whose parent is trial "0"; build clears Keras' session as the
    runner's does; records the epochs trained."""
    import keras

    seen = []

    def build(a):
        keras.backend.clear_session()
        return space.build(a, SHAPE, 10)

    ctx = TrialContext(
        trial_id="5",
        arch=arch,
        space=space,
        bundle=None,
        epochs=epochs,
        batch_size=16,
        best_accuracy=0.5,
        completed=[{"trial_id": "0", "architecture": space.describe(parent_arch)}],
        build=build,
        train_epoch=lambda model, epoch, dataset=None: seen.append(epoch),
        evaluate=lambda model: 0.25,
        values=values,
        load_model=lambda t: parent_model if t == "0" else None,
    )
    return ctx, seen


@pytest.mark.slow
def test_a_chain_of_morphisms_keeps_the_parents_outputs():
    space = _space(strides=(1, 2), filter_heights=(1, 3, 5), filters=(4, 8, 12))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, *SHAPE)).astype(np.float32)
    kinds = set()
    for seed in range(4):
        parent_arch = space.from_description(
            {
                "layers": [
                    {"filter_height": 1, "filter_width": 3, "filters": 4, "inputs": []},
                    {"filter_height": 3, "filter_width": 1, "filters": 4, "inputs": [0]},
                    {"filter_height": 1, "filter_width": 1, "filters": 8, "inputs": [1]},
                ]
            }
        )
        parent = space.build(parent_arch, SHAPE, 10)
        _randomise(parent, rng)
        want = parent(x, training=False).numpy()
        arch, ops = inheritance.random_child(
            space, parent_arch, 4, SHAPE[:2], np.random.default_rng(seed)
        )
        assert len(ops) == 4 and space.key(arch) != space.key(parent_arch)
        kinds |= {m.kind for m in ops}
        values = {**arch, **inheritance.lineage_values("0", ops)}
        ctx, _ = _context(space, space.canonical(arch), values, parent_arch, parent)
        child, parent_id = MorphismInheritance().inherited(ctx)
        assert parent_id == "0"
        got = child(x, training=False).numpy()
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=str(ops))
    assert kinds == set(morphism.KINDS)


def test_estimate_trains_a_child_briefly_and_an_orphan_in_full():
    space = _space()
    parent_arch = space.sample(np.random.default_rng(1))
    parent = space.build(parent_arch, SHAPE, 10)
    arch, ops = inheritance.random_child(space, parent_arch, 2, SHAPE[:2], np.random.default_rng(0))
    values = {**arch, **inheritance.lineage_values("0", ops)}
    ctx, seen = _context(space, arch, values, parent_arch, parent)
    estimate = MorphismInheritance(epochs=2).estimate(ctx)
    assert seen == [0, 1] and estimate.epochs == 2 and estimate.inherited_from == "0"
    # no lineage: from scratch, the trial's epochs
    ctx, seen = _context(space, arch, dict(arch), parent_arch, parent, epochs=3)
    estimate = MorphismInheritance(epochs=2).estimate(ctx)
    assert seen == [0, 1, 2] and estimate.epochs == 3 and estimate.inherited_from is None
    # the parent's model was not kept: from scratch, with a warning
    ctx, seen = _context(space, arch, values, parent_arch, None, epochs=3)
    with pytest.warns(UserWarning, match="not available"):
        estimate = MorphismInheritance().estimate(ctx)
    assert seen == [0, 1, 2] and estimate.inherited_from is None


def test_parent_trained_further_and_a_wrong_lineage():
    space = _space()
    parent_arch = space.sample(np.random.default_rng(2))
    parent = space.build(parent_arch, SHAPE, 10)
    _randomise(parent, np.random.default_rng(3))
    values = {**parent_arch, **inheritance.lineage_values("0", [])}
    ctx, _ = _context(space, parent_arch, values, parent_arch, parent)
    child, _ = MorphismInheritance().inherited(ctx)
    for a, b in zip(child.get_weights(), parent.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = space.sample(np.random.default_rng(9))
    assert space.key(other) != space.key(parent_arch)
    ctx, _ = _context(
        space, other, {**other, **inheritance.lineage_values("0", [])}, parent_arch, parent
    )
    with pytest.raises(ValueError, match="not the trial's architecture"):
        MorphismInheritance().inherited(ctx)


def test_settings_make_the_morphism_estimator():
    from kerasnas.estimation.settings import EstimationSettings

    made = EstimationSettings(estimator="morphism", morphism_epochs=2).make(seed=4)
    assert isinstance(made, MorphismInheritance) and made.epochs == 2 and made.seed == 4
    assert made.keeps_models


@pytest.mark.slow
def test_a_nash_search_writes_who_inherited_from_whom(tmp_path):
    import csv

    from kerasnas.cli import search

    out = tmp_path / "nash"
    argv = [
        "kerasnas-search",
        f"--output_dir={out}",
        "--strategy=nash",
        "--search_space=nasrl",
        "--max_layers=3",
        "--min_layers=1",
        "--num_filters=4,8",
        "--filter_sizes=1,3",
        "--estimator=morphism",
        "--n_neigh=2",
        "--n_nm=1",
        "--max_trials=5",
        "--trial_epochs=2",
        "--morphism_epochs=1",
        "--batch_size=128",
        "--verbose=0",
    ]
    assert search.main(argv) == 0
    with open(out / "history.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    assert all(r["estimator"] == "morphism" and r["status"] == "COMPLETED" for r in rows)
    assert rows[0]["inherited_from"] == "" and float(rows[0]["epochs_trained"]) == 2
    for r in rows[1:]:  # steps of 2: a child of the best, the best trained further
        assert r["inherited_from"] in [x["trial_id"] for x in rows if x["trial_id"] < r["trial_id"]]
        assert float(r["epochs_trained"]) == 1
    assert rows[1]["inherited_from"] == rows[2]["inherited_from"] == "0"
    assert rows[2]["architecture"] == rows[0]["architecture"]  # the parent trained further
    for t in range(5):  # every trial's model kept
        assert (out / "tuner" / f"trial_{t}" / "model.keras").exists()
