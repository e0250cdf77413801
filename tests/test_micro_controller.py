"""ENAS' micro controller: valid samples, legal inputs, determinism, log-probabilities that
match teacher forcing and sum to one, the initial entropy and op prior, REINFORCE learning,
and the ENAS trainer that uses it."""

import itertools
import math

import keras
import numpy as np
import pytest

from kerasnas import data as data_lib
from kerasnas.multitrial.micro_controller import MicroController, MicroControllerConfig
from kerasnas.search_spaces.cell import CELL_KINDS, CellSpace
from kerasnas.search_spaces.cell_discrete import DiscreteCellSpace
from kerasnas.search_spaces.nasrl import NASRLSpace
from kerasnas.trainers import ENASConfig, ENASTrainer

ENAS_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
# the shaping off: the initial policy is close to uniform over the valid children
FLAT = dict(tanh_constant=None, temperature=None, op_bias=False)


def _uniform_entropy(space):
    """Per decision: the entropy of the uniform distribution over the space's children."""
    per_kind = sum(math.log((i + 2) * (i + 1)) for i in range(space.nodes))
    per_kind += 2 * space.nodes * math.log(len(space.ops))
    return len(CELL_KINDS) * per_kind / len(space)


def _reward_terms(space, arch, op="skip_connect"):
    """[op == `op`] for every normal-cell op, [input is a cell input] for every input."""
    terms = []
    for i in range(space.nodes):
        for k in (0, 1):
            terms.append(arch[f"normal/node{i}/op{k}"] == op)
            terms.append(arch[f"normal/node{i}/input{k}"] in (0, 1))
    return terms


@pytest.mark.parametrize(
    "nodes, ops",
    [
        (2, ("skip_connect", "max_pool_3x3")),
        (3, ENAS_OPS),
        (4, ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_5x5")),
        (5, ("sep_conv_3x3", "skip_connect", "conv_1x1")),
    ],
)
def test_samples_are_valid_architectures_with_legal_inputs(nodes, ops):
    space = DiscreteCellSpace(nodes=nodes, ops=ops)
    controller = MicroController(space, seed=nodes)
    tokens, counted = controller.sample(150, np.random.default_rng(0))
    assert tokens.shape == (150, len(space)) and counted.all()
    seen = {}
    for row in tokens:
        arch = space.from_indices(row)
        assert space.validate(arch, repair=False) == arch
        assert space.to_indices(arch) == list(row)
        for kind in CELL_KINDS:
            for i in range(nodes):
                a, b = (row[space.index(f"{kind}/node{i}/input{k}")] for k in (0, 1))
                assert 0 <= a < i + 2 and 0 <= b < i + 2 and a != b  # earlier nodes only
                seen.setdefault((kind, i), set()).update((int(a), int(b)))
                for k in (0, 1):
                    assert 0 <= row[space.index(f"{kind}/node{i}/op{k}")] < len(ops)
    # every legal input of every node is chosen at some point (no input is starved)
    assert all(values == set(range(i + 2)) for (_, i), values in seen.items())


def test_sampling_is_deterministic_given_the_seeds():
    space = DiscreteCellSpace(nodes=3, ops=ENAS_OPS)
    a, b = MicroController(space, seed=1), MicroController(space, seed=1)
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    first = a.sample(20, np.random.default_rng(5))[0]
    np.testing.assert_array_equal(first, b.sample(20, np.random.default_rng(5))[0])
    assert (first != a.sample(20, np.random.default_rng(6))[0]).any()
    other = MicroController(space, seed=2)
    assert any(
        (wa != wo).any() for wa, wo in zip(a.get_weights(), other.get_weights(), strict=True)
    )


def test_log_prob_is_the_sum_of_the_decisions_and_teacher_forcing_agrees():
    space = DiscreteCellSpace(nodes=4, ops=ENAS_OPS)
    controller = MicroController(space, seed=0, temperature=2.0)  # every shaping on
    tokens, logp, ent = controller.sample_with_log_prob(30, np.random.default_rng(0))
    assert logp.shape == ent.shape == tokens.shape and (logp <= 0).all() and (ent >= 0).all()
    forced_logp, forced_ent = controller.decision_log_probs(tokens)
    np.testing.assert_allclose(forced_logp, logp, atol=1e-5)
    np.testing.assert_allclose(forced_ent, ent, atol=1e-5)
    total, entropy = controller.log_prob(tokens)
    np.testing.assert_allclose(total, logp.sum(1), rtol=1e-5)
    np.testing.assert_allclose(entropy, ent.sum(1), rtol=1e-5)
    # the second input of node 0 has one legal value left: it is certain
    second = [space.index(f"{kind}/node0/input1") for kind in CELL_KINDS]
    np.testing.assert_allclose(logp[:, second], 0.0, atol=1e-6)
    np.testing.assert_allclose(ent[:, second], 0.0, atol=1e-6)


@pytest.mark.parametrize("settings", [{}, FLAT])
def test_the_probabilities_of_all_children_sum_to_one(settings):
    space = DiscreteCellSpace(nodes=1, ops=("sep_conv_3x3", "max_pool_3x3"))
    controller = MicroController(space, seed=3, **settings)
    rows = np.array(list(itertools.product(*[range(len(v)) for _, v in space.decisions()])))
    logp, _ = controller.log_prob(rows)
    equal = np.array(
        [
            any(
                r[space.index(f"{k}/node0/input0")] == r[space.index(f"{k}/node0/input1")]
                for k in CELL_KINDS
            )
            for r in rows
        ]
    )
    # 2^8 rows; 2 x 2 x 2 x 2 children per cell kind (input pair, op pair): 64
    assert (~equal).sum() == 64 and (logp[equal] < -1e6).all()  # never sampled
    assert np.exp(logp[~equal]).sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_initial_entropy_is_uniform_without_shaping_and_the_op_prior_favours_convolutions():
    space = DiscreteCellSpace(nodes=3, ops=ENAS_OPS)
    rng = np.random.default_rng(0)
    flat = MicroController(space, seed=0, **FLAT)
    _, ent = flat.log_prob(flat.sample(100, rng)[0])
    assert float(ent.mean()) / len(space) == pytest.approx(_uniform_entropy(space), abs=0.01)

    # the authors' defaults: op logits squashed to 1.1 / 2.5 tanh(.), b_soft 10 on the
    # convolutions, and +-0.25 in the normal cell: p(conv) ~ 0.63 (normal), 0.51 (reduce)
    prior = MicroController(space, seed=0)
    archs = [space.from_indices(row) for row in prior.sample(200, rng)[0]]

    def conv_share(kind):
        ops = [a[f"{kind}/node{i}/op{k}"] for a in archs for i in range(3) for k in (0, 1)]
        return sum("conv" in op for op in ops) / len(ops)

    assert conv_share("normal") == pytest.approx(0.63, abs=0.05)
    assert conv_share("reduce") == pytest.approx(0.51, abs=0.05)
    _, ent = prior.log_prob(prior.sample(100, rng)[0])
    assert float(ent.mean()) / len(space) < _uniform_entropy(space) - 0.02


@pytest.mark.slow
def test_reinforce_raises_the_reward_and_lowers_the_entropy():
    space = DiscreteCellSpace(nodes=3, ops=("skip_connect", "max_pool_3x3", "sep_conv_3x3"))
    controller = MicroController(space, seed=0, learning_rate=0.02, **FLAT)
    rng = np.random.default_rng(0)

    def reward(row):
        return float(np.mean(_reward_terms(space, space.from_indices(row))))

    def evaluate():
        tokens = controller.sample(200, np.random.default_rng(99))[0]
        _, ent = controller.log_prob(tokens)
        return np.mean([reward(r) for r in tokens]), float(ent.mean()) / len(space)

    start_reward, start_entropy = evaluate()
    for _ in range(80):
        tokens, counted = controller.sample(10, rng)
        controller.train(tokens, counted, [reward(r) for r in tokens])
    end_reward, end_entropy = evaluate()
    assert start_reward < 0.6 and end_reward > 0.9, (start_reward, end_reward)
    assert end_entropy < start_entropy - 0.1, (start_entropy, end_entropy)
    assert controller.baseline > 0.8


@pytest.mark.slow
def test_state_round_trip_and_bad_input():
    space = DiscreteCellSpace(nodes=2, ops=ENAS_OPS)
    a = MicroController(space, seed=0)
    tokens, counted = a.sample(10, np.random.default_rng(0))
    a.train(tokens, counted, np.linspace(0, 1, 10))
    b = MicroController(space, seed=1)
    b.set_state(a.get_state())
    assert b.baseline == a.baseline
    np.testing.assert_array_equal(
        a.sample(10, np.random.default_rng(1))[0], b.sample(10, np.random.default_rng(1))[0]
    )
    with pytest.raises(TypeError, match="DiscreteCellSpace"):
        MicroController(NASRLSpace())
    with pytest.raises(ValueError, match="op_tanh_reduce"):
        MicroControllerConfig(op_tanh_reduce=0.0)
    with pytest.raises(TypeError, match="bogus"):
        MicroController(space, bogus=1)
    with pytest.raises(ValueError, match="controller_op_tanh_reduce"):
        ENASConfig(controller_op_tanh_reduce=-1.0).validate()


@pytest.mark.slow
def test_enas_trainer_samples_with_the_micro_controller_and_reports_its_entropy():
    bundle = data_lib.load("digits", seed=0, max_examples=128)
    keras.utils.set_random_seed(0)
    space = CellSpace(
        bundle.input_shape,
        bundle.num_classes,
        init_channels=4,
        layers=3,
        nodes=2,
        ops=("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3"),
    )
    net = space.build_supernet("controlled", bundle.normalization_layer(), seed=0)
    config = ENASConfig(epochs=1, batch_size=64, seed=0, controller_steps=2, controller_batch=3)
    assert config.controller_temperature is None and config.controller_op_tanh_reduce == 2.5
    trainer = ENASTrainer(net, space, config, verbose=0)
    assert isinstance(trainer.controller, MicroController)
    assert trainer.controller.units == 64 and len(trainer.controller.cells) == 1
    before = [w.copy() for w in trainer.controller.get_weights()]
    history = trainer.fit(bundle)
    record = history[-1]
    assert {"entropy", "reward", "controller_loss", "baseline"} <= set(record)
    assert 0 < record["entropy"] < _uniform_entropy(trainer.discrete)  # the op prior
    assert any(
        (a != b).any() for a, b in zip(before, trainer.controller.get_weights(), strict=True)
    )
    for arch in trainer.sample_archs(5, np.random.default_rng(0)):
        assert trainer.discrete.validate(arch, repair=False) == arch
