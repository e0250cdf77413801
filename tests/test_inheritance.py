"""Weight inheritance through network morphisms (kerasnas.estimation.inheritance): the runner
keeps every trial's model when the estimator asks, the lineage round-trips, and a child
starts computing what its trained parent computes."""

from __future__ import annotations

import os

import pytest

from kerasnas import data as data_lib
from kerasnas.estimation import Estimate, Estimator, inheritance, morphism
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
