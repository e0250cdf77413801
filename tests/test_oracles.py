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
from kerasnas.search_spaces import (
    DiscreteCellSpace,
    HyperParameterSpace,
    MetaQNNSpace,
    NASRLSpace,
)
from kerasnas.testing.synthetic import SyntheticReward, trials_to_best


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
SLOW_KINDS = ("reinforce", "renas")  # over about 3 s on their own (tests/conftest.py)


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


@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=pytest.mark.slow) if k in SLOW_KINDS else k for k in sorted(ORACLES)],
)
def test_stock_tuner_valid_max_trials_and_exact_resume(kind, tmp_path):
    whole = _search(kind, tmp_path / "whole", 9, overwrite=True, snapshot=tmp_path / "split")
    archs = _archs(whole)
    assert len(archs) == len(whole.trials) == 9
    space = HyperParameterSpace(_chain_hp())
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
    space = HyperParameterSpace(_chain_hp())
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
    moves = [(i, k) for i in space.mutable(parent) for k in range(len(space.decision(i).values))]
    moves = [(i, k) for i, k in moves if k != space.to_indices(parent)[i]]
    n = len(moves)
    logp = mutator.log_prob(
        [space.to_indices(parent)] * n, [mutable] * n, [m[0] for m in moves], [m[1] for m in moves]
    )
    assert np.exp(logp).sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_controller_probability_of_best_rises_under_reinforce():
    problem = SyntheticReward(seed=0)
    space = HyperParameterSpace(problem.hyperparameters())
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


@pytest.mark.slow
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


class TinySpace(HyperParameterSpace):
    """Two decisions with their own MDP: s0 --a|b--> s1 --x|y--> end."""

    def __init__(self):
        hp = kt.HyperParameters()
        hp.Choice("first", ["a", "b"])
        hp.Choice("second", ["x", "y"])
        super().__init__(hp)

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


def test_qlearning_update_matches_hand_computation():
    oracle = QLearningOracle(
        space=TinySpace(),
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
    oracle = QLearningOracle(space=TinySpace(), epsilon_schedule=[(0.0, 1)], seed=0)
    oracle._q = {'"s0"': {"b": 0.9}, '"s1"': {"x": 0.1}}
    assert oracle.populate_space("0")["values"] == {"first": "b", "second": "y"}


def test_synthetic_problem_and_driver():
    problem = SyntheticReward(seed=2)
    assert (
        len(problem) == 4**5
        and max(problem(a) for a in HyperParameterSpace(problem.hyperparameters()).enumerate())
        == problem.best_reward
    )
    oracle = RandomSearchOracle(hyperparameters=problem.hyperparameters(), seed=0)
    found = trials_to_best(oracle, problem, len(problem))
    assert found is not None and 1 <= found <= len(problem)


# -- oracles over the discrete spaces: one model, one architecture ----------------------------

SPACES = {
    "nasrl": lambda: NASRLSpace(
        max_layers=3, min_layers=1, filter_heights=(1, 3), filter_widths=(1,), filters=(2, 4)
    ),
    "metaqnn": lambda: MetaQNNSpace(
        max_layers=3, conv_filters=(2,), conv_kernels=(1, 3), pools=((2, 2),), fc_units=(4,)
    ),
    "cell": lambda: DiscreteCellSpace(
        init_channels=2, layers=4, nodes=1, ops=("skip_connect", "max_pool_3x3", "avg_pool_3x3")
    ),
}
SPACE_ORACLES = {**ORACLES, "reinforce": lambda **kw: ReinforceOracle(batch_size=3, **kw)}
# (space, oracle) pairs over about 3 s on their own (tests/conftest.py)
SLOW_PAIRS = {("nasrl", "reinforce"), ("cell", "reinforce"), ("nasrl", "renas")}


def _twins(space, arch: dict) -> list[dict]:
    """Other assignments that build the model of the canonical `arch`: another value in a
    layer past num_layers (nasrl) or after softmax (metaqnn); for the cell, node 0's pairs
    swapped (reduce cell) and a repeated input (normal cell; repair gives `arch`'s back)."""
    out = []
    inactive = [n for n, _ in space.decisions() if n not in space.active_decisions(arch)]
    if inactive:
        name = inactive[-1]
        out.append({**arch, name: next(v for v in space.values(name) if v != arch[name])})
    if isinstance(space, DiscreteCellSpace):
        swapped = dict(arch)
        for k in ("input", "op"):
            a, b = f"reduce/node0/{k}0", f"reduce/node0/{k}1"
            swapped[a], swapped[b] = arch[b], arch[a]
        out += [swapped, {**arch, "normal/node0/input1": arch["normal/node0/input0"]}]
    return out


@pytest.mark.parametrize(
    "name, kind",
    [
        pytest.param(n, k, id=f"{n}-{k}", marks=[pytest.mark.slow] if (n, k) in SLOW_PAIRS else [])
        for n in sorted(SPACES)
        for k in sorted(SPACE_ORACLES)
    ],
)
def test_assignments_of_one_model_are_one_architecture_in_every_oracle(name, kind):
    space = SPACES[name]()
    oracle = SPACE_ORACLES[kind](space=space, max_trials=20, seed=1)
    assert oracle.space is space
    found = 0
    for t in range(6 if kind in ("reinforce", "renas") else 12):
        values = oracle.populate_space(str(t))["values"]
        assert values == space.canonical(values)  # issued values: canonical architectures
        known = oracle.known_reward(values)  # a repeat only when evolution gives up
        for twin in _twins(space, values):
            assert twin != values and space.key(twin) == space.key(values)
            assert oracle.was_issued(twin) and oracle.known_reward(twin) == known
        reward = _table_reward({"key": space.key(values)})
        oracle.record_result(str(t), reward)
        for twin in _twins(space, values):  # evaluated: the same reward, whatever assignment
            assert oracle.known_reward(twin) == reward
            found += 1
    assert found >= 1


@pytest.mark.parametrize("name", ["cell", "metaqnn"])
def test_random_search_exhausts_a_space_in_its_distinct_models(name, tmp_path):
    if name == "cell":  # 2 x 2 ordered pairs of two ops: 3 normal x 4 reduce architectures
        space = DiscreteCellSpace(
            init_channels=2, layers=3, nodes=1, ops=("skip_connect", "max_pool_3x3")
        )
    else:
        space = MetaQNNSpace(max_layers=2, conv_filters=(2,), conv_kernels=(1, 3), fc_units=(4,))
    size = space.size()
    assert size == (12 if name == "cell" else len(list(space.enumerate())))
    oracle = RandomSearchOracle(space=space, max_trials=size + 10, seed=0)
    TableTuner(oracle=oracle, directory=str(tmp_path), project_name="p").search(verbose=0)
    archs = [space.from_hyperparameters(a) for a in _archs(oracle)]
    assert len(archs) == size == len({space.key(a) for a in archs})


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "nasrl" else n for n in sorted(SPACES)]
)
def test_evolution_and_renas_mutate_active_decisions_only(name):
    space = SPACES[name]()
    for oracle in (
        RegularizedEvolutionOracle(population_size=3, sample_size=2, space=space, seed=2),
        RENASOracle(population_size=3, sample_size=2, batch_size=2, space=space, seed=2),
    ):
        members = []
        for t in range(15):
            values = oracle.populate_space(str(t))["values"]
            if t >= 3:  # a child: a member with one decision active in both changed
                assert space.is_valid(values)
                if isinstance(oracle, RegularizedEvolutionOracle):
                    assert any(_one_mutation(space, m, values) for m, _ in oracle.population)
                assert any(space.key(m) != space.key(values) for m in members)
            members.append(values)
            oracle.record_result(str(t), _table_reward({"key": space.key(values)}))


def _one_mutation(space, parent: dict, child: dict) -> bool:
    both = set(space.active_decisions(parent)) & set(space.active_decisions(child))
    changed = [k for k in both if parent[k] != child[k]]
    return len(changed) == 1 and space.key(child) != space.key(parent)


def test_controller_counts_only_decisions_before_the_terminal():
    space = SPACES["metaqnn"]()
    controller = Controller(space, units=8, seed=0)
    tokens, counted = controller.sample(32, np.random.default_rng(0))
    for row, mask in zip(tokens, counted, strict=True):
        arch = space.from_indices(row)
        assert mask.tolist() == space.active_mask(arch)
    short = space.to_indices(space.arch_from_actions(["conv_2_1", "softmax"]))
    other = list(short)
    other[2] = (other[2] + 1) % len(space.values("layer2"))  # a layer after softmax
    logp, ent = controller.log_prob([short, other])
    assert logp[0] == logp[1] and ent[0] == ent[1]
    all_steps, _ = controller.log_prob([short, other], np.ones((2, 3), bool))
    assert all_steps[0] != all_steps[1] and all_steps[0] < logp[0]


def test_chain_mdp_skips_layers_past_the_chosen_depth():
    space = HyperParameterSpace(_chain_hp())
    state = space.next_state(space.initial_state(), "1")  # num_layers = 1
    state = space.next_state(state, "3")  # L0/kernel; L1/... are skipped
    assert space.actions(state) == ["relu", "tanh"]
    assert space.arch_from_actions(["1", "3", "tanh"]) == {
        "num_layers": 1,
        "L0/kernel": 3,
        "L1/kernel": 1,
        "L1/skip0": 0,
        "activation": "tanh",
    }
    deep = ["2", "5", "3", "1", "relu"]
    assert space.arch_from_actions(deep)["L1/skip0"] == 1
    oracle = QLearningOracle(space=space, epsilon_schedule=[(1.0, 50)], seed=0)
    for t in range(20):
        values = oracle.populate_space(str(t))["values"]
        assert len(oracle._walks[str(t)]) == len(space.active_decisions(values))
        oracle.record_result(str(t), 0.5)


def test_hyperparameter_space_checks_the_entries():
    def hp_with(*entries):
        hp = kt.HyperParameters()
        for name, values in entries:
            hp.Choice(name, values)
        return hp

    with pytest.raises(ValueError, match="only hp.Choice.*'lr' is Float"):
        hp = kt.HyperParameters()
        hp.Float("lr", 0.1, 1.0)
        HyperParameterSpace(hp)
    with pytest.raises(ValueError, match="'L1/skip0' must have the values \\[0, 1\\]"):
        HyperParameterSpace(hp_with(("L1/skip0", [0, 2])))
    with pytest.raises(ValueError, match="'L1/skip1': a skip must come from an earlier layer"):
        HyperParameterSpace(hp_with(("L1/skip1", [0, 1])))
    with pytest.raises(ValueError, match="num_layers values must be non-negative ints"):
        HyperParameterSpace(hp_with(("num_layers", ["a", "b"])))
    with pytest.raises(ValueError, match="no hp.Choice entries"):
        HyperParameterSpace(kt.HyperParameters())
    hp = kt.HyperParameters()
    hp.Choice("a", [1, 2])
    with hp.conditional_scope("a", [1]):
        hp.Choice("b", [3, 4])
    with pytest.raises(ValueError, match="conditional hyperparameters are not supported: 'b'"):
        HyperParameterSpace(hp)
    space = HyperParameterSpace(_chain_hp())
    assert space.depth_decision == "num_layers" and space.decision("L1/skip0").skip_from == 0
    assert space.decision("L1/kernel").layer == 1 and space.decision("activation").layer is None
    with pytest.raises(ValueError, match="start_depth needs a depth decision"):
        ReinforceOracle(space=SPACES["cell"](), start_depth=1).populate_space("0")
