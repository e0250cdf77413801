"""The morphism strategies (kerasnas.multitrial.morphing): NASH's hill climbing and
LEMONADE's Pareto-front evolution propose only morphism children of completed trials,
carry the lineage in the trial's values, and resume exactly."""

from __future__ import annotations

import json
import shutil
import zlib

import keras_tuner as kt
import numpy as np
import pytest

from kerasnas.errors import SettingError
from kerasnas.estimation import inheritance, morphism
from kerasnas.multitrial.morphing import LemonadeOracle, NASHOracle, kde
from kerasnas.multitrial.settings import LemonadeSettings, NASHSettings, OracleSettings
from kerasnas.pareto import front_indices
from kerasnas.search_spaces.nasrl import NASRLSpace

SHAPE = (8, 8, 1)


def _space():
    return NASRLSpace(
        max_layers=5, min_layers=1, filter_heights=(1, 3), filter_widths=(1, 3), filters=(4, 8, 16)
    )


def _reward(values: dict) -> float:
    """A fixed pseudo-random reward per trial (its values, lineage included)."""
    return zlib.crc32(json.dumps(values, sort_keys=True).encode()) % 1000 / 1000


class TableTuner(kt.Tuner):
    """A stock Tuner: no training, the table reward; copies its project directory once
    `snapshot_after` trials have ended."""

    snapshot = None
    snapshot_after = 0

    def run_trial(self, trial, *args, **kwargs):
        return {"reward": _reward(trial.hyperparameters.values)}

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.snapshot and len(self.oracle.end_order) == self.snapshot_after:
            shutil.copytree(self.project_dir, self.snapshot)


ORACLES = {
    "nash": lambda **kw: NASHOracle(n_neigh=3, n_nm=2, **kw),
    "lemonade": lambda **kw: LemonadeOracle(n_init=2, n_children=6, n_accept=3, n_nm=2, **kw),
}


def _search(kind, directory, max_trials, overwrite=True, snapshot=None):
    space = _space()
    oracle = ORACLES[kind](
        input_shape=SHAPE,
        num_classes=10,
        initial_samples=6,
        **OracleSettings.common(space, max_trials, 5),
    )
    tuner = TableTuner(
        oracle=oracle, directory=str(directory), project_name="p", overwrite=overwrite
    )
    if snapshot:
        tuner.snapshot, tuner.snapshot_after = str(snapshot / "p"), 4
    tuner.search(verbose=0)
    return tuner.oracle, space


def _values(oracle):
    return [dict(oracle.trials[t].hyperparameters.values) for t in oracle.start_order]


def _check_children(oracle, space):
    """Every trial with a lineage: a completed earlier parent, each morphism applicable in
    turn, the result the trial's architecture. Returns the parents by trial."""
    parents = {}
    for n, trial_id in enumerate(oracle.start_order):
        values = oracle.trials[trial_id].hyperparameters.values
        arch = space.from_hyperparameters(values)
        assert space.is_valid(arch)
        parent, ops = inheritance.lineage(values)
        assert (parent, ops) == oracle.lineage(trial_id)
        if parent is None:
            continue
        assert parent in oracle.start_order[:n]
        assert oracle.trials[parent].status == "COMPLETED"
        current = space.from_hyperparameters(oracle.trials[parent].hyperparameters)
        for m in ops:
            assert m in morphism.morphisms(space, current, SHAPE[:2])
            current = morphism.apply(space, current, m)
        assert space.key(current) == space.key(arch)
        parents[trial_id] = (parent, ops)
    return parents


def test_nash_climbs_from_the_best_of_each_step(tmp_path):
    oracle, space = _search("nash", tmp_path, 10)
    parents = _check_children(oracle, space)
    order = oracle.start_order
    assert order[0] not in parents and set(order[1:]) == set(parents)
    rewards = {t: oracle.trials[t].score for t in order}
    best = order[0]
    for step in (order[1:4], order[4:7], order[7:10]):  # n_neigh = 3 trials per step
        assert {parents[t][0] for t in step} == {best}
        kinds = [len(parents[t][1]) for t in step]
        assert kinds == [2, 2, 0]  # two children by 2 morphisms, the best trained further
        best = max(step, key=lambda t: (rewards[t], -int(t)))
    if len(order) == 10:
        assert oracle.best[0] == best
    # morphisms only grow: every trial is larger than the initial network, except the
    # best trained further (the same network)
    sizes = [
        oracle.params(space.from_hyperparameters(oracle.trials[t].hyperparameters)) for t in order
    ]
    assert all(s > sizes[0] for t, s in zip(order[1:], sizes[1:], strict=True) if parents[t][1])


def test_lemonade_children_come_from_the_pareto_front(tmp_path):
    oracle, space = _search("lemonade", tmp_path, 11)
    parents = _check_children(oracle, space)
    order = oracle.start_order
    assert set(order[:2]).isdisjoint(parents) and set(order[2:]) == set(parents)
    completed = [(t, oracle.trials[t].score) for t in order]
    for n, trial_id in enumerate(order[2:], start=2):
        # the generation of trial n began when every earlier generation had ended
        first = 2 + 3 * ((n - 2) // 3)
        before = completed[:first]
        params = [
            oracle.params(space.from_hyperparameters(oracle.trials[t].hyperparameters))
            for t, _ in before
        ]
        front = {before[i][0] for i in front_indices(params, [r for _, r in before])}
        assert parents[trial_id][0] in front
        assert 1 <= len(parents[trial_id][1]) <= 2
    keys = [space.key(space.from_hyperparameters(v)) for v in _values(oracle)]
    assert len(set(keys)) == len(keys)  # no architecture twice


@pytest.mark.parametrize("kind", sorted(ORACLES))
def test_morphism_oracles_resume_exactly(kind, tmp_path):
    whole, _ = _search(kind, tmp_path / "whole", 9, snapshot=tmp_path / "split")
    resumed, _ = _search(kind, tmp_path / "split", 9, overwrite=False)
    assert _values(resumed) == _values(whole)  # the lineage entries survive trial.json
    assert any(inheritance.PARENT in v for v in _values(resumed))
    assert (
        json.loads(json.dumps(resumed.get_state()))["kerasnas"]
        == json.loads(json.dumps(whole.get_state()))["kerasnas"]
    )


def test_front_and_kde():
    points = [(0.9, 100), (0.8, 50), (0.85, 200), (0.9, 100), (0.7, 10), (0.6, 20)]
    costs, rewards = [c for _, c in points], [r for r, _ in points]
    assert front_indices(costs, rewards) == [4, 1, 0, 3]  # by cost; equal points both kept
    density = kde([0.0, 0.1, 0.2, 5.0], [0.1, 5.0])
    assert density[0] > density[1] > 0  # the crowded region is denser
    grid = np.linspace(-10, 15, 5001)
    assert np.trapezoid(kde([0.0, 0.1, 5.0], grid), grid) == pytest.approx(1.0, abs=1e-3)


def test_settings_make_the_oracles_and_name_bad_values():
    space = _space()
    args = {"max_trials": 5, "seed": 0, "max_epochs": 1, "input_shape": SHAPE, "num_classes": 10}
    nash = NASHSettings(n_neigh=3, n_nm=1).make_oracle(space, **args)
    assert isinstance(nash, NASHOracle) and (nash.n_neigh, nash.n_nm) == (3, 1)
    lemonade = LemonadeSettings(n_accept=2, max_morphisms=2).make_oracle(space, **args)
    assert isinstance(lemonade, LemonadeOracle) and (lemonade.n_accept, lemonade.n_nm) == (2, 2)
    with pytest.raises(SettingError, match="n_accept"):
        LemonadeSettings(n_children=2, n_accept=3).make_oracle(space, **args)
    with pytest.raises(SettingError, match="input_shape"):
        NASHOracle(**OracleSettings.common(space, 5, 0))
