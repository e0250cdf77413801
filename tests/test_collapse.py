"""The collapse guard: the Hessian eigenvalue against finite differences, the guard's rule
on synthetic sequences, a search that really collapses and is stopped, the flags."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas import ops as ops_lib
from kerasnas.layers import MixedOp
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.collapse import (
    CollapseGuard,
    HessianProbe,
    dominant_eigenvalue,
    parameter_free_share,
)
from kerasnas.trainers.snas import SNASConfig, SNASTrainer


@pytest.fixture(scope="module")
def digits():
    tf.config.experimental.enable_op_determinism()
    return data_lib.load("digits", seed=0, max_examples=256)


# -- the eigenvalue -------------------------------------------------------------------------
def _smooth_supernet(bundle):
    """Two MixedOps of smooth candidates (tanh convolutions, average pooling, identity),
    each followed by the supernet's training-mode batch norm (the fused op, whose second
    derivative is TensorFlow's): the loss is twice differentiable in the logits, so central
    differences of gradients converge to the Hessian. A cell supernet's ReLUs and max
    pools make the gradient jump where a unit switches: differences across such a kink
    measure the jump, not the Hessian."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input(bundle.input_shape)
    x = keras.layers.Conv2D(3, 3, padding="same", activation="tanh")(x / 16.0)
    for i in range(2):
        x = MixedOp(
            [
                keras.layers.Conv2D(3, 3, padding="same", activation="tanh", name=f"c{i}"),
                keras.layers.AveragePooling2D(3, 1, padding="same", name=f"a{i}"),
                keras.layers.Identity(name=f"i{i}"),
            ],
            relaxation="gumbel",  # the probe mixes by softmax all the same
            logit_init=(0.0, 0.5),
            seed=i,
        )(x)
        x = ops_lib.BatchNorm(affine=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(bundle.num_classes)(x))


def _set_flat(probe, flat):
    i = 0
    for v, shape, n in zip(probe.arch_vars, probe.shapes, probe.sizes, strict=True):
        v.assign(flat[i : i + n].reshape(shape))
        i += n


@pytest.mark.slow
def test_hessian_vector_products_and_eigenvalue_match_finite_differences(digits):
    model = _smooth_supernet(digits)
    batches = list(digits.valid(32).take(2))
    probe = HessianProbe(model)
    assert probe.size == 6
    flat0 = np.concatenate([v.numpy().ravel() for v in probe.arch_vars])
    moving = [v.numpy().copy() for v in model.non_trainable_variables]
    # the Hessian by central differences of exact gradients (float32: a step of 1e-2
    # balances the O(h^2) error against rounding)
    h, fd = 1e-2, np.zeros((probe.size, probe.size))
    for j in range(probe.size):
        step = np.eye(probe.size)[j] * h
        _set_flat(probe, flat0 + step)
        plus = probe.gradient(batches)[1]
        _set_flat(probe, flat0 - step)
        minus = probe.gradient(batches)[1]
        fd[:, j] = (plus - minus) / (2 * h)
    _set_flat(probe, flat0)
    scale = np.abs(fd).max()
    assert scale > 1e-3  # a Hessian worth checking
    assert np.abs(fd - fd.T).max() < 1e-2 * scale
    exact = np.stack([probe.hvp(batches, e) for e in np.eye(probe.size)], axis=1)
    np.testing.assert_allclose(exact, fd, atol=1e-2 * scale)
    v = np.random.default_rng(1).standard_normal(probe.size)
    np.testing.assert_allclose(probe.hvp(batches, v), fd @ v, atol=1e-2 * scale * np.abs(v).sum())
    # power iteration against numpy's spectrum of the finite-difference Hessian
    spectrum = np.linalg.eigvalsh((fd + fd.T) / 2)
    dominant = spectrum[np.argmax(np.abs(spectrum))]
    value, change = dominant_eigenvalue(model, batches, iterations=200, probe=probe)
    assert abs(value - dominant) < 1e-2 * abs(dominant) and change < 1e-4
    # training-mode batch norm ran, and its moving averages are as they were
    for v, before in zip(model.non_trainable_variables, moving, strict=True):
        np.testing.assert_array_equal(v.numpy(), before)


@pytest.mark.slow
def test_power_iteration_finds_the_cell_supernets_dominant_eigenvalue(digits):
    """On a cell supernet (shared logits of normal and reduction cells, Gumbel relaxation
    measured as the softmax mixture): the estimate equals numpy's dominant eigenvalue of
    the exact Hessian assembled column by column from products."""
    keras.utils.set_random_seed(0)
    space = CellSpace(
        digits.input_shape,
        digits.num_classes,
        init_channels=4,
        layers=3,
        nodes=2,
        ops=("none", "skip_connect", "avg_pool_3x3", "sep_conv_3x3"),
    )
    net = space.build_supernet("gumbel", digits.normalization_layer(), seed=0)
    batches = list(digits.valid(32).take(1))
    probe = HessianProbe(net)
    assert probe.size == 2 * 5 * 4  # 5 edges of 4 ops per cell kind
    hessian = np.stack([probe.hvp(batches, e) for e in np.eye(probe.size)], axis=1)
    assert np.abs(hessian - hessian.T).max() < 1e-4 * np.abs(hessian).max()
    spectrum = np.linalg.eigvalsh((hessian + hessian.T) / 2)
    dominant = spectrum[np.argmax(np.abs(spectrum))]
    value, change = probe.dominant_eigenvalue(batches, iterations=100)
    assert abs(value - dominant) < 2e-2 * abs(dominant), (value, spectrum[[0, -1]])
    assert net.get_layer("cell0_edge0_2").relaxation == "gumbel"  # put back


# -- the guard's rule -----------------------------------------------------------------------
def _feed(guard, eigenvalues, shares=None):
    shares = shares or [0.0] * len(eigenvalues)
    for epoch, (lam, share) in enumerate(zip(eigenvalues, shares, strict=True), start=1):
        reason = guard.update(epoch, lam, share, [np.full(3, float(epoch))])
        if reason is not None:
            return epoch, reason
    return None, None


def test_guard_fires_when_the_windowed_eigenvalue_grows_past_the_ratio():
    flat = [1.0, 1.1, 0.9, 1.0, 1.05, 1.0, 0.95, 1.1, 1.0, 1.0, 1.02, 0.98]
    assert _feed(CollapseGuard(ratio=1.3, window=3, warmup=0), flat) == (None, None)
    growing = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.5, 2.0, 3.0]
    guard = CollapseGuard(ratio=1.3, window=3, warmup=0)
    epoch, reason = _feed(guard, growing)
    # windows (3, 6] vs (6, 9]: mean 1.567 / 1.0 > 1.3 first at epoch 9 ((2,5] vs (5,8]: 1.23)
    assert epoch == 9 and "eigenvalue grew" in reason
    assert guard.fired == {"epoch": 9, "reason": reason, "kept_epoch": 6}
    assert guard.kept_logits() == [[6.0, 6.0, 6.0]]
    # magnitudes: a negative dominant eigenvalue growing counts the same
    assert _feed(CollapseGuard(ratio=1.3, window=3, warmup=0), [-x for x in growing])[0] == 9
    # nothing before the warm-up ends, nor without a measurement in each window (here the
    # first is at epoch 7: at epoch 9 the window (3, 6] is empty)
    assert _feed(CollapseGuard(ratio=1.3, window=3, warmup=9), growing)[0] == 10
    late = CollapseGuard(ratio=1.3, window=3, warmup=0)
    assert _feed(late, [None] * 6 + growing[6:])[0] == 10 and late.fired["kept_epoch"] == 7


def test_guard_fires_on_the_parameter_free_share_and_keeps_the_last_good_epoch():
    shares = [0.5, 0.7, 0.4, 0.5, 0.6, 0.75, 0.8]
    guard = CollapseGuard(share=0.6, warmup=3)
    epoch, reason = _feed(guard, [None] * len(shares), shares)
    # 0.7 at epoch 2 is inside the warm-up; 0.6 is not past 0.6; 0.75 is
    assert epoch == 6 and "parameter-free share is 0.75" in reason
    assert guard.fired["kept_epoch"] == 5
    # the state survives JSON (checkpoints) and a redone epoch replaces its record
    restored = CollapseGuard(share=0.6, warmup=3)
    restored.set_state(json.loads(json.dumps(guard.state())))
    assert restored.fired == guard.fired and restored.kept_logits() == [[5.0] * 3]
    fresh = CollapseGuard(share=0.6, warmup=3)
    _feed(fresh, [None] * 3, shares[:3])
    fresh.update(3, None, 0.1, [np.zeros(3)])
    assert [e["epoch"] for e in fresh.epochs] == [1, 2, 3] and fresh.epochs[-1]["share"] == 0.1


# -- a search that collapses -------------------------------------------------------------------
OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3")
# two parameter-free ops of five: a random start is 40% parameter-free
COLLAPSE_OPS = ("skip_connect", "max_pool_3x3", "sep_conv_3x3", "conv_1x1", "conv_3x3")


def _cell_supernet(bundle, ops=OPS):
    keras.utils.set_random_seed(0)
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, init_channels=4, layers=3, nodes=2, ops=ops
    )
    return space, space.build_supernet("gumbel", bundle.normalization_layer(), seed=0)


def test_parameter_free_share_counts_deleted_edges_and_strided_skips(digits):
    space, net = _cell_supernet(digits)
    for kind, logits in (("normal", [0.0, 0.0, 0.0, 5.0]), ("reduce", [0.0, 5.0, 0.0, 0.0])):
        for src, dst in space.edges():
            space.mixed_op(net, kind, src, dst).arch_logits.assign(logits)
    share = parameter_free_share(space, net, "argmax")
    # normal: every edge a separable convolution; reduce: every edge a skip, parameter-free
    # only from the intermediate node (src 2), a FactorizedReduce (params) from the inputs
    assert share["param_free_share/normal"] == 0.0
    assert share["param_free_share/reduce"] == pytest.approx(1 / 5)
    space.mixed_op(net, "normal", 0, 2).arch_logits.assign([9.0, 0.0, 0.0, 0.0])  # 'none'
    share = parameter_free_share(space, net, "argmax")
    assert share["param_free_share/normal"] == pytest.approx(1 / 5)
    assert share["param_free_share"] == pytest.approx(2 / 10)
    # top2 never keeps 'none': node 2 has only its two input edges, so it keeps edge 0
    # with its best other op, a three-way tie won by the first, skip_connect: 1 of 4 edges
    assert parameter_free_share(space, net, "top2")["param_free_share/normal"] == 0.25


@pytest.mark.slow
def test_guard_stops_a_collapsing_search_and_keeps_an_earlier_architecture(digits, tmp_path):
    """A heavy parameter penalty (lambda 3 on log params): the search turns the normal
    cell's edges into skips and pools (normal-cell share by epoch, measured on an AMD
    EPYC: 0.6, then 0.8; with 10 epochs, 0.6 0.6 0.6 0.8 1.0 1.0 ...; the collapse the
    README's latency search showed); the guard stops it at the first share past 0.7 and
    the supernet's logits, hence the derived child, are those of the last epoch below."""
    space, net = _cell_supernet(digits, COLLAPSE_OPS)
    config = SNASConfig(
        epochs=8,
        batch_size=64,
        a_lr=0.05,
        a_weight_decay=0.0,
        resource_lambda=3.0,
        seed=0,
        collapse_guard=True,
        collapse_share=0.7,
        collapse_warmup=1,
        collapse_ratio=0,  # the share rule only: no eigenvalue is measured
    )
    trainer = SNASTrainer(net, config, output_dir=str(tmp_path), verbose=0)
    trainer.watch_collapse(space, "argmax")
    history = trainer.fit(digits)
    fired = trainer.collapse.guard.fired
    assert fired is not None and len(history) == fired["epoch"] < config.epochs
    assert all("hessian_eigenvalue" not in r and "param_free_share" in r for r in history)
    summary = trainer.budget_summary()
    assert summary["stopped_by"] == "collapse_guard" and "share" in summary["stop_reason"]
    kept = fired["kept_epoch"]
    stopped_share = history[-1]["param_free_share/normal"]
    assert history[kept - 1]["param_free_share/normal"] <= 0.7 < stopped_share
    # the child derived now is the kept epoch's (its logits were recorded and put back)
    derived = space.derive(net, "argmax")
    assert parameter_free_share(space, net)["param_free_share/normal"] == pytest.approx(
        history[kept - 1]["param_free_share/normal"]
    )
    kept_logits = trainer.collapse.guard.kept_logits()
    for v, values in zip(trainer.arch_vars, kept_logits, strict=True):
        np.testing.assert_allclose(v.numpy().ravel(), values, rtol=1e-6)
    collapsed = trainer.collapse.guard.epochs[-1]["logits"]
    for v, values in zip(trainer.arch_vars, collapsed, strict=True):
        v.assign(np.asarray(values, np.float32))
    at_stop = space.derive(net, "argmax")
    assert derived != at_stop
    assert parameter_free_share(space, net)["param_free_share/normal"] == stopped_share
    for v, values in zip(trainer.arch_vars, kept_logits, strict=True):
        v.assign(np.asarray(values, np.float32))
    # resume: the stopped run stays stopped, with the same guard state and architecture
    again = SNASTrainer(
        _cell_supernet(digits, COLLAPSE_OPS)[1], config, output_dir=str(tmp_path), verbose=0
    )
    again.watch_collapse(space, "argmax")
    assert len(again.fit(digits, resume=True)) == len(history)
    assert again.collapse.guard.fired == fired
    assert again.budget_summary()["stopped_by"] == "collapse_guard"
    assert space.derive(again.model, "argmax") == derived


def test_collapse_flags_reach_the_trainer(digits):
    from kerasnas import strategies
    from kerasnas.cli import search

    search.FLAGS.unparse_flags()
    search.FLAGS(
        [
            "kerasnas-search",
            "--output_dir=x",
            "--strategy=darts",
            "--collapse_guard",
            "--collapse_share=0.7",
            "--collapse_window=4",
            "--hessian_every=3",
        ],
        known_only=True,
    )
    try:
        settings = search.settings_from_flags()
    finally:
        search.FLAGS.unparse_flags()
    c = settings.config
    assert (c.collapse_guard, c.collapse_share, c.collapse_window, c.hessian_every) == (
        True,
        0.7,
        4,
        3,
    )
    keras.utils.set_random_seed(0)
    space = CellSpace(digits.input_shape, digits.num_classes, 4, 3, 2, OPS)
    net = space.build_supernet("softmax", digits.normalization_layer(), seed=0)
    trainer = strategies.get("darts").make(net, space, c, None, 0, None)
    guard = trainer.collapse.guard
    assert (guard.share, guard.window, guard.ratio, trainer.collapse.every) == (0.7, 4, 1.3, 3)
    assert trainer.collapse.measures_eigenvalue(2, False)
    assert not trainer.collapse.measures_eigenvalue(3, False)
