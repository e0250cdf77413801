"""Tests for the search strategies: controllers, oracles, resume, a stock keras_tuner.Tuner."""

from __future__ import annotations

import json
import shutil
import zlib

import keras_tuner as kt
import numpy as np
import pytest

from kerasnas.multitrial.controller import Controller, MutationController
from kerasnas.multitrial.oracles import (
    RandomSearchOracle,
    RegularizedEvolutionOracle,
    ReinforceOracle,
    RENASOracle,
)
from kerasnas.multitrial.qlearning import QLearningOracle
from kerasnas.testing.synthetic import SyntheticReward, trials_to_best
from kerasnas.trainers.archspace import ArchSpace


def _chain_hp() -> kt.HyperParameters:
    """A chain space with a depth and an anchor skip: 6 + 36 = 42 architectures."""
    hp = kt.HyperParameters()
    hp.Choice("num_layers", [1, 2])
    hp.Choice("L0/kernel", [1, 3, 5])
    hp.Choice("L1/kernel", [1, 3, 5])
    hp.Choice("L1/skip0", [0, 1])
    hp.Choice("activation", ["relu", "tanh"])
    return hp


def _table_reward(values: dict) -> float:
    """A fixed pseudo-random reward in [0, 1) per architecture."""
    return zlib.crc32(json.dumps(values, sort_keys=True).encode()) % 1000 / 1000


class TableTuner(kt.Tuner):
    """A stock Tuner whose trial returns the table reward, no training; with `snapshot`,
    it copies its project directory once `snapshot_after` trials have ended."""

    snapshot = None
    snapshot_after = 0

    def run_trial(self, trial, *args, **kwargs):
        return {"val_accuracy": _table_reward(trial.hyperparameters.values)}

    def on_trial_end(self, trial):
        super().on_trial_end(trial)
        if self.snapshot and len(self.oracle.end_order) == self.snapshot_after:
            shutil.copytree(self.project_dir, self.snapshot)


ORACLES = {
    "random": lambda **kw: RandomSearchOracle(**kw),
    "evolution": lambda **kw: RegularizedEvolutionOracle(population_size=4, sample_size=2, **kw),
    "reinforce": lambda **kw: ReinforceOracle(
        batch_size=3, start_depth=1, depth_step=1, depth_every=6, learning_rate=0.05, **kw
    ),
    "renas": lambda **kw: RENASOracle(
        population_size=3, sample_size=2, batch_size=2, learning_rate=0.05, **kw
    ),
    "qlearning": lambda **kw: QLearningOracle(
        epsilon_schedule=[(1.0, 4), (0.5, 100)], replay_size=5, **kw
    ),
}


def _search(kind: str, directory, max_trials: int, overwrite: bool, snapshot=None) -> kt.Oracle:
    oracle = ORACLES[kind](hyperparameters=_chain_hp(), max_trials=max_trials, seed=3)
    tuner = TableTuner(
        oracle=oracle, directory=str(directory), project_name="p", overwrite=overwrite
    )
    if snapshot:
        tuner.snapshot, tuner.snapshot_after = str(snapshot / "p"), 5
    tuner.search(verbose=0)
    return tuner.oracle


def _archs(oracle: kt.Oracle) -> list[dict]:
    return [oracle.trials[t].hyperparameters.values for t in oracle.start_order]


@pytest.mark.parametrize("kind", sorted(ORACLES))
def test_stock_tuner_valid_max_trials_and_exact_resume(kind, tmp_path):
    whole = _search(kind, tmp_path / "whole", 9, overwrite=True, snapshot=tmp_path / "split")
    archs = _archs(whole)
    assert len(archs) == len(whole.trials) == 9
    space = ArchSpace(_chain_hp())
    for values in archs:
        assert values == space.canonical(values)  # every value valid, ignored ones canonical
    assert len({space.key(v) for v in archs}) == 9  # no repeats in a 42-architecture space
    assert all(t.status == "COMPLETED" for t in whole.trials.values())

    resumed = _search(kind, tmp_path / "split", 9, overwrite=False)
    assert _archs(resumed) == archs
    assert (
        json.loads(json.dumps(resumed.get_state()))["kerasnas"]
        == json.loads(json.dumps(whole.get_state()))["kerasnas"]
    )
    if kind == "reinforce":  # depth 1 for the first 6 samples, then 2
        depths = [v["num_layers"] for v in archs]
        assert depths == sorted(depths) and depths[0] == 1 and depths[-1] == 2


def test_random_search_exhausts_the_space_without_repeats(tmp_path):
    hp = kt.HyperParameters()
    hp.Choice("a", [1, 2])
    hp.Choice("b", ["x", "y", "z"])
    oracle = RandomSearchOracle(hyperparameters=hp, max_trials=50, seed=0)
    TableTuner(oracle=oracle, directory=str(tmp_path), project_name="p").search(verbose=0)
    archs = _archs(oracle)
    assert len(archs) == 6 and len({json.dumps(a, sort_keys=True) for a in archs}) == 6


def test_controller_distribution_sums_to_one_with_depth_and_skips():
    space = ArchSpace(_chain_hp())
    controller = Controller(space, units=8, seed=0)
    archs = list(space.enumerate())
    assert len(archs) == space.size() == 42
    logp, _ = controller.log_prob([space.to_indices(a) for a in archs])
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-5)
    tokens, counted = controller.sample(64, np.random.default_rng(0))
    for row in tokens:  # samples are canonical: layer 1 ignored at depth 1
        assert space.to_indices(space.from_indices(row)) == row.tolist()

    state = json.loads(json.dumps(controller.get_state()))
    other = Controller(space, units=8, seed=1)
    other.set_state(state)
    np.testing.assert_array_equal(other.log_prob(tokens)[0], controller.log_prob(tokens)[0])

    mutator = MutationController(space, units=8, seed=0)
    parent = space.from_indices([1, 2, 0, 1, 1])
    mutable = [i in space.mutable(parent) for i in range(len(space))]
    moves = [(i, k) for i in space.mutable(parent) for k in range(len(space.decisions[i].values))]
    moves = [(i, k) for i, k in moves if k != space.to_indices(parent)[i]]
    n = len(moves)
    logp = mutator.log_prob(
        [space.to_indices(parent)] * n, [mutable] * n, [m[0] for m in moves], [m[1] for m in moves]
    )
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-5)


def test_controller_probability_of_best_rises_under_reinforce():
    problem = SyntheticReward(seed=0)
    space = ArchSpace(problem.hyperparameters())
    controller = Controller(space, learning_rate=0.01, seed=0)
    best = [space.to_indices(problem.best)]
    before = float(np.exp(controller.log_prob(best)[0][0]))
    rng = np.random.default_rng(0)
    for _ in range(40):
        tokens, counted = controller.sample(10, rng)
        rewards = [problem(space.from_indices(row)) for row in tokens]
        controller.train(tokens, counted, rewards)
    after = float(np.exp(controller.log_prob(best)[0][0]))
    assert before == pytest.approx(1 / len(problem), rel=0.2)
    assert after > 5 * before


def test_reinforce_waits_for_the_batch():
    oracle = ReinforceOracle(hyperparameters=_chain_hp(), batch_size=2, seed=0, learning_rate=0.05)
    first = oracle.populate_space("0")
    second = oracle.populate_space("1")
    assert first["status"] == second["status"] == "RUNNING"
    assert oracle.populate_space("2")["status"] == "IDLE"
    oracle.record_result("0", 0.5)
    assert oracle.populate_space("2")["status"] == "IDLE"
    assert oracle.controller.baseline is None  # no step yet
    oracle.record_result("1", None)  # a failed trial: the step uses the one reward
    assert oracle.controller.baseline == pytest.approx(0.5)
    assert oracle.populate_space("2")["status"] == "RUNNING"


def test_evolution_removes_the_oldest():
    problem = SyntheticReward(num_decisions=3, num_values=3, seed=1)
    oracle = RegularizedEvolutionOracle(
        population_size=3, sample_size=2, hyperparameters=problem.hyperparameters(), seed=0
    )
    archs = []
    for t in range(6):
        values = oracle.populate_space(str(t))["values"]
        archs.append(values)
        oracle.record_result(str(t), problem(values))
        assert [a for a, _ in oracle.population] == archs[-3:]
    for child in archs[3:]:  # children differ from some member in exactly one decision
        assert any(sum(child[n] != a[n] for n in problem.names) == 1 for a in archs)


class TinyMDP:
    """s0 --a|b--> s1 --x|y--> end."""

    def initial_state(self):
        return "s0"

    def actions(self, state):
        return ["a", "b"] if state == "s0" else ["x", "y"]

    def next_state(self, state, action):
        return "s1" if state == "s0" else "end"

    def is_terminal(self, state):
        return state == "end"

    def arch_from_actions(self, actions):
        return {"first": actions[0], "second": actions[1]}


def _tiny_hp() -> kt.HyperParameters:
    hp = kt.HyperParameters()
    hp.Choice("first", ["a", "b"])
    hp.Choice("second", ["x", "y"])
    return hp


def test_qlearning_update_matches_hand_computation():
    oracle = QLearningOracle(
        mdp=TinyMDP(),
        hyperparameters=_tiny_hp(),
        epsilon_schedule=[(1.0, 2), (0.5, 1), (0.0, 1)],
        replay_size=10,
        seed=0,
    )
    assert [oracle.epsilon()] == [1.0]
    values = oracle.populate_space("0")["values"]
    actions = [values["first"], values["second"]]
    oracle.record_result("0", 0.8)
    lr, q0 = 0.01, 0.5
    q_second = (1 - lr) * q0 + lr * 0.8
    q_first = (1 - lr) * q0 + lr * max(q_second, q0)
    assert oracle.q_value("s1", actions[1]) == pytest.approx(q_second)
    assert oracle.q_value("s0", actions[0]) == pytest.approx(q_first)
    assert oracle.q_value("s0", "ab".replace(actions[0], "")) == q0

    # the next result replays every memory (in a random order), each from its last step
    values = oracle.populate_space("1")["values"]
    replay = [list(m) for m in oracle._replay] + [[[values["first"], values["second"]], 0.2]]
    q = {(s, a): oracle.q_value(s, a) for s, acts in (("s0", "ab"), ("s1", "xy")) for a in acts}
    mirror = np.random.default_rng(0)  # the oracle's generator from here on
    mirror.bit_generator.state = oracle._rng.bit_generator.state
    picks = mirror.choice(len(replay), size=len(replay), replace=False)
    oracle.record_result("1", 0.2)
    for i in picks:
        acts, reward = replay[int(i)]
        q["s1", acts[1]] = (1 - lr) * q["s1", acts[1]] + lr * reward
        q["s0", acts[0]] = (1 - lr) * q["s0", acts[0]] + lr * max(q["s1", "x"], q["s1", "y"])
    for (s, a), v in q.items():
        assert oracle.q_value(s, a) == pytest.approx(v, abs=1e-12)
    assert [oracle.epsilon()] == [0.5]


def test_qlearning_greedy_walk_follows_q():
    oracle = QLearningOracle(
        mdp=TinyMDP(), hyperparameters=_tiny_hp(), epsilon_schedule=[(0.0, 1)], seed=0
    )
    oracle._q = {'"s0"': {"b": 0.9}, '"s1"': {"x": 0.1}}
    assert oracle.populate_space("0")["values"] == {"first": "b", "second": "y"}


def test_synthetic_problem_and_driver():
    problem = SyntheticReward(seed=2)
    assert (
        len(problem) == 4**5
        and max(problem(a) for a in ArchSpace(problem.hyperparameters()).enumerate())
        == problem.best_reward
    )
    oracle = RandomSearchOracle(hyperparameters=problem.hyperparameters(), seed=0)
    found = trials_to_best(oracle, problem, len(problem))
    assert found is not None and 1 <= found <= len(problem)
