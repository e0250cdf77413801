"""ENAS and random search with weight sharing: the child encoding, the masked weight step,
the controller's learning, determinism, resume and bad input."""

import json
import math
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas.layers import arch_variables, mixed_ops, set_inference
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers import ENASConfig, ENASTrainer, RandomWSTrainer
from kerasnas.trainers.enas import ChildEncoder, WeightSharingConfig

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")
# per decision, the entropy of the uniform distribution over the children: per cell kind,
# node 0 / node 1 take an ordered pair of different inputs among 2 / 3 (2 / 6 pairs) and
# two ops of 3
UNIFORM_ENTROPY = (math.log(2) + math.log(6) + 4 * math.log(3)) / 8


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=256)


def _supernet(bundle, relaxation="controlled", ops=OPS):
    keras.utils.set_random_seed(0)
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, init_channels=4, layers=3, nodes=2, ops=ops
    )
    return space, space.build_supernet(relaxation, bundle.normalization_layer(), seed=0)


def _enas_config(**kw):
    base = dict(epochs=2, batch_size=64, seed=0, controller_steps=2, controller_batch=3)
    base.update(kw)
    return ENASConfig(**base)


def _numpy(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def test_choices_run_the_child_with_inherited_weights(digits):
    space, net = _supernet(digits)
    encoder = ChildEncoder(space, net)
    assert encoder.num_owners == 2 * len(space.edges())
    x = digits.numpy("valid", limit=32)[0]
    rng = np.random.default_rng(3)
    for _ in range(2):
        arch = encoder.discrete.sample(rng)
        choices, genotype = encoder.encode(arch)
        assert choices.dtype == np.int32 and choices.shape == (encoder.num_owners,)
        for kind in ("normal", "reduce"):
            for i, node in enumerate(genotype.cell(kind)):
                inputs = {src: op for op, src in node}
                for src in range(i + 2):
                    owner = space.mixed_op(net, kind, src, i + 2)
                    chosen = space.ops[choices[encoder.owners.index(owner)]]
                    assert chosen == inputs.get(src, "none")
        encoder.assign(choices)
        net(x, training=True)  # moves the chosen ops' batch-norm statistics off their init
        set_inference(net, "sample")
        try:
            supernet_logits = keras.ops.convert_to_numpy(net(x, training=False))
        finally:
            set_inference(net, "argmax")
        child = space.build_child(genotype, net)
        child_logits = keras.ops.convert_to_numpy(child(x, training=False))
        np.testing.assert_allclose(supernet_logits, child_logits, atol=1e-5)


@pytest.mark.slow
def test_controller_learns_a_rewarded_op(digits):
    class Synthetic(ENASTrainer):
        def reward(self, arch, batch):
            ops = [v for k, v in arch.items() if "/op" in k]
            return ops.count("skip_connect") / len(ops)

    space, net = _supernet(digits)
    config = _enas_config(controller_steps=10, controller_batch=5, controller_op_bias=False)
    trainer = Synthetic(net, space, config, verbose=0)

    def share():
        archs = trainer.sample_archs(200, np.random.default_rng(123))
        ops = [v for a in archs for k, v in a.items() if "/op" in k]
        return ops.count("skip_connect") / len(ops)

    start_share, start_entropy = share(), trainer.policy_entropy(np.random.default_rng(1))
    assert start_entropy == pytest.approx(UNIFORM_ENTROPY, abs=0.01)
    start_weights = _numpy(trainer.controller.weights)
    for epoch in range(3):
        logs = trainer.on_epoch_end(digits, epoch)
    assert set(logs) >= {"reward", "controller_loss", "baseline"}
    assert any(
        np.abs(a - b).max() > 0
        for a, b in zip(start_weights, _numpy(trainer.controller.weights), strict=True)
    )
    assert share() > start_share + 0.07, (start_share, share())
    assert trainer.policy_entropy(np.random.default_rng(1)) < start_entropy - 0.01


@pytest.mark.slow
def test_enas_is_deterministic_and_resumes_exactly(digits, tmp_path):
    config = _enas_config(controller_units=8, controller_layers=1, final_samples=2)
    resume_dir = tmp_path / "b" / "checkpoints"

    class Snapshot(ENASTrainer):
        def checkpoint(self, epochs_done):
            super().checkpoint(epochs_done)
            if epochs_done == 1:  # what a run killed after epoch 1's checkpoint leaves
                shutil.copytree(self.checkpoint_dir, resume_dir)

    space, net_a = _supernet(digits)
    trainer_a = Snapshot(net_a, space, config, str(tmp_path / "a"), verbose=0)
    history_a = trainer_a.fit(digits)
    assert {"train_loss", "reward", "entropy", "sampled_supernet_valid_acc", "w_lr"} <= set(
        history_a[-1]
    )
    state = json.loads((resume_dir / "state.json").read_text())
    assert state["epochs_done"] == 1 and state["extra"]["controller_baseline"] is not None

    _, net_c = _supernet(digits)
    trainer_c = ENASTrainer(net_c, space, config, str(tmp_path / "b"), verbose=0)
    history_c = trainer_c.fit(digits, resume=True)
    assert [r["epoch"] for r in history_c] == [1, 2]
    for ra, rc in zip(history_a, history_c, strict=True):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {
            k: v for k, v in rc.items() if k != "seconds"
        }
    for a, c in zip(_numpy(net_a.weights), _numpy(net_c.weights), strict=True):
        np.testing.assert_array_equal(a, c)
    for a, c in zip(
        _numpy(trainer_a.extra_variables()), _numpy(trainer_c.extra_variables()), strict=True
    ):
        np.testing.assert_array_equal(a, c)
    assert trainer_a.controller.baseline == trainer_c.controller.baseline
    genotype, accuracy = trainer_c.best_genotype(digits)
    assert (genotype, accuracy) == trainer_a.best_genotype(digits)
    assert 0.0 <= accuracy <= 1.0 and len(genotype.normal) == space.nodes


@pytest.mark.slow
def test_random_ws_runs_and_a_weight_step_trains_only_the_child(digits):
    space, net = _supernet(digits)
    trainer = RandomWSTrainer(
        net, space, WeightSharingConfig(epochs=1, seed=0, final_samples=2), verbose=0
    )
    logits_before = _numpy(arch_variables(net))
    history = trainer.fit(digits)
    assert history[-1]["entropy"] == pytest.approx(UNIFORM_ENTROPY)
    assert (
        np.isfinite(history[-1]["train_loss"])
        and 0.0 <= history[-1]["sampled_supernet_valid_acc"] <= 1.0
    )
    assert "reward" not in history[-1]
    genotype, accuracy = trainer.best_genotype(digits)
    assert len(genotype.reduce) == space.nodes and 0.0 <= accuracy <= 1.0

    # one more step (the epoch left momentum on most ops): only the child's ops move
    step = trainer._step_fn  # the loop's compiled train_step
    x, y = digits.numpy("train", limit=32)
    rng = np.random.default_rng(0)
    first, second = (trainer.encoder.choices(trainer.discrete.sample(rng)) for _ in range(2))
    assert (first != second).any()
    step(x, y, first)
    owner = {id(m): i for i, m in enumerate(trainer.encoder.owners)}
    layers = mixed_ops(net)
    before = [[_numpy(c.weights) for c in m.candidates] for m in layers]
    step(x, y, second)
    moved = kept = 0
    for m, weights in zip(layers, before, strict=True):
        chosen = second[owner[id(m.owner())]]
        for k, (candidate, old) in enumerate(zip(m.candidates, weights, strict=True)):
            new = _numpy(candidate.weights)
            if k == chosen:
                if candidate.trainable_weights:
                    assert any(np.abs(a - b).max() > 0 for a, b in zip(old, new, strict=True))
                    moved += 1
            else:  # trainable weights and batch-norm statistics alike
                for a, b in zip(old, new, strict=True):
                    np.testing.assert_array_equal(a, b)
                kept += len(old)
    assert moved > 0 and kept > 0
    for a, b in zip(logits_before, _numpy(arch_variables(net)), strict=True):
        np.testing.assert_array_equal(a, b)  # the architecture logits are never trained


def test_bad_input_is_rejected(digits):
    space, net = _supernet(digits, ops=("skip_connect", "max_pool_3x3"))
    with pytest.raises(ValueError, match="'none'"):
        ENASTrainer(net, space, _enas_config(), verbose=0)
    space, net = _supernet(digits, relaxation="gumbel")
    with pytest.raises(ValueError, match="controlled.*gumbel"):
        RandomWSTrainer(net, space, verbose=0)
    with pytest.raises(ValueError, match="controller_batch"):
        ENASConfig(controller_batch=0).validate()
    with pytest.raises(ValueError, match="final_samples"):
        WeightSharingConfig(final_samples=0).validate()
