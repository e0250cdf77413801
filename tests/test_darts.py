"""DARTS trainer: the second-order gradient against brute force, a short search, restored
variables, determinism, resume, bad input."""

import dataclasses
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas.layers import arch_variables
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers import DARTSConfig, DARTSTrainer

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=256)


def _supernet(bundle, relaxation="softmax"):
    keras.utils.set_random_seed(0)
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, init_channels=4, layers=3, nodes=2, ops=OPS
    )
    return space.build_supernet(relaxation, bundle.normalization_layer(), seed=0)


def _config(**kw):
    base = dict(epochs=2, batch_size=64, a_lr=3e-2, seed=0)
    base.update(kw)
    return DARTSConfig(**base)


def _arch(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in arch_variables(model)]


def _values(variables):
    return [keras.ops.convert_to_numpy(v).copy() for v in variables]


def _batches(bundle, n=32):
    xt, yt = bundle.numpy("train", 2 * n)
    return xt[0::2], yt[0::2], xt[1::2], yt[1::2]


@pytest.mark.slow
def test_second_order_gradient_matches_brute_force(digits):
    """f(alpha) = L_val(w - xi (m buf + dL_train(w, alpha)/dw + wd w), alpha), differentiated
    by central differences in float64, equals the trainer's unrolled gradient.

    The steps are small because the loss is only piecewise smooth: ReLUs, and max-pooling
    over the digits' constant background, whose near-equal values swap places. Steps of
    1e-4 (in alpha, or in w for the trainer's Hessian-vector product) cross such kinks and
    are off by 100%, and w-steps of 1e-7 still by 1e-4; alpha-steps of 1e-6 and w-steps of
    1e-9 agree to ~1e-7."""
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        net = _supernet(digits)
        cfg = _config(order=2, unrolled_eps=1e-9)
        trainer = DARTSTrainer(net, cfg, verbose=0)
        xt, yt, xv, yv = _batches(digits, 16)
        trainer.train_step(xt, yt, xv, yv)  # a real step: the momentum buffer is not zero
        xi, m, wd = 0.1, cfg.w_momentum, cfg.w_weight_decay
        trainer.w_opt.learning_rate = xi
        weights, arch = trainer.weight_vars, trainer.arch_vars
        w0 = _values(weights)
        buf = [trainer.w_opt.momentum_buffer(v).numpy() for v in weights]
        assert max(np.abs(b).max() for b in buf) > 0

        def loss(x, y):
            logits = net(x, training=True)
            return keras.ops.mean(
                keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
            )

        @tf.function
        def f():
            with tf.GradientTape() as tape:
                train_loss = loss(xt, yt)
            g = tape.gradient(train_loss, weights, unconnected_gradients="zero")
            for v, w, b, gi in zip(weights, w0, buf, g, strict=True):
                v.assign(w - xi * (m * b + gi + wd * w))
            valid_loss = loss(xv, yv)
            for v, w in zip(weights, w0, strict=True):
                v.assign(w)
            return valid_loss

        frozen = _values(net.non_trainable_variables)
        second = [g.numpy() for g in trainer.arch_gradients(xt, yt, xv, yv)]
        for v, value in zip(weights, w0, strict=True):
            np.testing.assert_array_equal(v.numpy(), value, err_msg=v.path)
        # three edges of each cell type (normal: logits 0-4, reduce: 5-9), every op
        coords = [(i, j % len(OPS)) for j, i in enumerate((0, 2, 4, 5, 7, 9))]
        h, brute, mine = 1e-6, [], []
        for i, k in coords:
            start = arch[i].numpy()
            values = []
            for sign in (1.0, -1.0):
                step = start.copy()
                step[k] += sign * h
                arch[i].assign(step)
                values.append(float(f()))
            arch[i].assign(start)
            brute.append((values[0] - values[1]) / (2 * h))
            mine.append(second[i][k])
        brute, mine = np.array(brute), np.array(mine)
        error = np.linalg.norm(mine - brute) / np.linalg.norm(brute)
        assert error < 1e-5, (error, mine, brute)
        for v, value in zip(net.non_trainable_variables, frozen, strict=True):
            v.assign(value)

        # first order: exactly dL_val/dalpha at w; and it differs from the second order
        trainer.config = dataclasses.replace(cfg, order=1)  # read at call time
        first = trainer.arch_gradients(xt, yt, xv, yv)
        with tf.GradientTape() as tape:
            valid_loss = loss(xv, yv)
        direct = tape.gradient(valid_loss, arch)
        for a, b in zip(first, direct, strict=True):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)
        first = np.concatenate([g.numpy() for g in first])
        gap = np.linalg.norm(np.concatenate(second) - first) / np.linalg.norm(first)
        assert gap > 100 * error, (gap, error)
    finally:
        keras.config.set_floatx("float32")
        keras.config.set_dtype_policy("float32")


@pytest.mark.slow
def test_search_moves_logits_and_weights_and_virtual_passes_leave_no_trace(digits):
    net = _supernet(digits)
    trainer = DARTSTrainer(net, _config(epochs=1, order=2), verbose=0)
    assert trainer.steps_per_epoch(digits) == math.ceil(digits.part_size((0, 2)) / 64) == 2
    batches = list(trainer.train_batches(digits, 0))
    assert len(batches) == 2 and all(len(b) == 4 for b in batches)
    arch_before = _arch(net)
    w_before = _values(trainer.weight_vars)
    history = trainer.fit(digits)
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(_arch(net), arch_before, strict=True))
    moved = [
        np.abs(a - b).max() for a, b in zip(_values(trainer.weight_vars), w_before, strict=True)
    ]
    assert np.mean(np.array(moved) > 0) > 0.9
    record = history[-1]
    for key in ("train_loss", "train_acc", "valid_loss", "softmax_supernet_valid_acc", "entropy"):
        assert np.isfinite(record[key]), key
    assert 0 < record["entropy"] < math.log(len(OPS))

    state = trainer._state_variables()  # model and optimizer variables
    before = _values(state)
    batch = _batches(digits)
    grads = trainer.arch_gradients(*batch)
    assert all(np.isfinite(g.numpy()).all() for g in grads)
    for v, a, b in zip(state, before, _values(state), strict=True):
        np.testing.assert_array_equal(a, b, err_msg=v.path)

    # the compiled step (its variable assignments ordered by the graph) does what the same
    # step does eagerly, statement after statement
    trainer._step_fn(*batch)
    compiled = _values(state)
    for v, value in zip(state, before, strict=True):
        v.assign(value)
    trainer.train_step(*batch)
    for v, a, b in zip(state, compiled, _values(state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=v.path)
    assert max(np.abs(a - b).max() for a, b in zip(compiled, before, strict=True)) > 0


@pytest.mark.slow
def test_same_seed_same_result_and_resume_equals_uninterrupted(digits, tmp_path):
    class Stop(Exception):
        pass

    class Recording(DARTSTrainer):
        def checkpoint(self, epochs_done):
            super().checkpoint(epochs_done)
            self.snapshots = {**getattr(self, "snapshots", {}), epochs_done: _arch(self.model)}

    class Interrupted(Recording):
        def checkpoint(self, epochs_done):
            super().checkpoint(epochs_done)
            if epochs_done == 1:
                raise Stop  # as if the process were killed after epoch 1's checkpoint

    cfg = _config(order=1)  # the loop and checkpoints are those of order 2 (cheaper to trace)
    net_a = _supernet(digits)
    run_a = Recording(net_a, cfg, str(tmp_path / "a"), verbose=0)
    run_a.fit(digits)
    net_b = _supernet(digits)
    run_b = Interrupted(net_b, cfg, str(tmp_path / "b"), verbose=0)
    with pytest.raises(Stop):
        run_b.fit(digits)
    for a, b in zip(run_a.snapshots[1], run_b.snapshots[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.abs(run_a.snapshots[2][0] - run_a.snapshots[1][0]).max() > 0

    net_c = _supernet(digits)
    history = DARTSTrainer(net_c, cfg, str(tmp_path / "b"), verbose=0).fit(digits, resume=True)
    assert [r["epoch"] for r in history] == [1, 2]
    for va, vc in zip(net_a.weights, net_c.weights, strict=True):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(va), keras.ops.convert_to_numpy(vc), err_msg=va.path
        )

    with pytest.raises(ValueError, match="other settings.*order"):
        DARTSTrainer(_supernet(digits), _config(order=2), str(tmp_path / "b"), verbose=0).fit(
            digits, resume=True
        )


def test_bad_input(digits):
    with pytest.raises(ValueError, match="relaxation 'softmax'.*uses relaxation 'gumbel'"):
        DARTSTrainer(_supernet(digits, "gumbel"), _config(), verbose=0)
    net = _supernet(digits)
    with pytest.raises(ValueError, match="order"):
        DARTSTrainer(net, _config(order=3), verbose=0)
    for field, value in (("order", True), ("unrolled_eps", 0.0), ("a_lr", 0.0)):
        with pytest.raises(ValueError, match=field):
            DARTSConfig(**{field: value}).validate()
