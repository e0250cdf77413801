"""Tests for kerasnas.resource: costs, network_cost, the SNAS penalty and its gradients."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import ops, resource
from kerasnas.genotype import DARTS_V2, Genotype
from kerasnas.layers import MixedOp, arch_variables, mixed_ops
from kerasnas.search_spaces.cell import CellSpace, build_network

C = 4
NAMES = list(ops.PRIMITIVES)
CHEAP_EXPENSIVE = ["skip_connect", "sep_conv_5x5"]


def _x(batch=2, size=6, channels=C, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, size, size, channels)).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _num_params(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def _mixed(names, strides=1, seed=0, x=None, **kwargs):
    layer = MixedOp(names, channels=C, strides=strides, seed=seed, **kwargs)
    layer(_x() if x is None else x, training=True)  # builds and draws a sample
    return layer


@pytest.fixture(scope="module")
def layers():
    """Two MixedOps at different input shapes and strides, with a drawn sample."""
    a = _mixed(NAMES, strides=1, seed=1)
    b = _mixed(NAMES, strides=2, seed=2, x=_x(size=8))
    a.arch_logits.assign(np.linspace(-1.0, 1.0, len(NAMES)).astype("float32"))
    b.arch_logits.assign(np.linspace(0.5, -0.5, len(NAMES)).astype("float32"))
    return [a, b]


@pytest.fixture(scope="module")
def supernet():
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2)
    net = space.build_supernet(seed=0)
    net(np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32"), training=True)
    return net


# -- cost tables -------------------------------------------------------------------------------


def test_cost_table_rows_are_candidate_costs(layers):
    a, b = layers
    for layer, shape in ((a, (6, 6, C)), (b, (8, 8, C))):
        assert layer.cost_table.shape == (len(NAMES), 3)
        for row, op in zip(layer.cost_table, layer.candidates, strict=True):
            cost = op.cost(shape)
            np.testing.assert_array_equal(row, [cost.params, cost.flops, cost.mac])
    assert b.cost_table[NAMES.index("none")].tolist() == [0, 0, 0]


def test_cost_addition_and_get():
    total = resource.Cost(1, 2, 3) + resource.Cost(10, 20, 30)
    assert (total.get("params"), total.get("flops"), total.get("mac")) == (11, 22, 33)
    with pytest.raises(ValueError, match="resource"):
        total.get("energy")


def test_layer_cost_of_standard_layers_hand_computed():
    conv = keras.layers.Conv2D(5, 3, strides=2, padding="same", use_bias=True)
    cost = resource.layer_cost(conv, (8, 8, 3))
    assert cost.params == 3 * 3 * 3 * 5 + 5
    assert cost.flops == 4 * 4 * 3 * 3 * 3 * 5
    dense = keras.layers.Dense(7)
    cost = resource.layer_cost(dense, (12,))
    assert (cost.params, cost.flops) == (12 * 7 + 7, 12 * 7)


# -- penalty -----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", resource.FORMS)
@pytest.mark.parametrize("estimator", resource.ESTIMATORS)
@pytest.mark.parametrize("res", resource.ANALYTIC)
def test_penalty_is_finite_scalar_on_supernet(supernet, res, estimator, form):
    surrogate, value = resource.penalty(mixed_ops(supernet), res, form, estimator)
    for t in (surrogate, value):
        t = _np(t)
        assert t.shape == ()
        assert np.isfinite(t)
    if form == "linear":
        assert _np(value) > 0


@pytest.mark.parametrize("form", resource.FORMS)
@pytest.mark.parametrize("res", resource.ANALYTIC)
def test_expected_penalty_equals_hand_computation(layers, res, form):
    col = resource.RESOURCES.index(res)
    probs = [_softmax(layer.arch_logits.numpy()) for layer in layers]
    tables = [layer.cost_table[:, col] * 1e-6 for layer in layers]
    expected = sum(float(p @ t) for p, t in zip(probs, tables, strict=True))
    if form == "log":
        eps = 0.01 * sum(t.max() for t in tables)
        expected = np.log(expected + eps)
    surrogate, value = resource.penalty(layers, res, form, "expected")
    assert float(_np(value)) == pytest.approx(expected, rel=1e-5)
    assert float(_np(surrogate)) == pytest.approx(expected, rel=1e-5)
    # expected_cost: the same expectation, in units rather than millions
    hand_units = sum(
        float(p @ layer.cost_table[:, col]) for p, layer in zip(probs, layers, strict=True)
    )
    assert resource.expected_cost(layers, res) == pytest.approx(hand_units, rel=1e-5)


@pytest.mark.parametrize("form", resource.FORMS)
def test_reparam_penalty_uses_relaxed_sample(layers, form):
    z = [_np(layer.relaxed_sample()) for layer in layers]
    tables = [layer.cost_table[:, 0] * 1e-6 for layer in layers]
    sampled = sum(float(zk @ t) for zk, t in zip(z, tables, strict=True))
    if form == "log":
        sampled = np.log(sampled + 0.01 * sum(t.max() for t in tables))
    _, value = resource.penalty(layers, "params", form, "reparam")
    assert float(_np(value)) == pytest.approx(sampled, rel=1e-5)


def test_score_penalty_value_is_cost_of_discrete_sample(layers):
    tables = [layer.cost_table[:, 1] * 1e-6 for layer in layers]
    sampled = sum(
        float(t[int(layer.sampled_index())]) for layer, t in zip(layers, tables, strict=True)
    )
    _, value = resource.penalty(layers, "flops", "linear", "score")
    assert float(_np(value)) == pytest.approx(sampled, rel=1e-5)


def _gradient(layer, estimator, form, res="params"):
    with tf.GradientTape() as tape:
        surrogate, _ = resource.penalty([layer], res, form, estimator)
    return _np(tape.gradient(surrogate, layer.arch_logits))


@pytest.mark.parametrize("form", resource.FORMS)
@pytest.mark.parametrize("estimator", ["reparam", "expected"])
def test_penalty_gradient_pushes_toward_cheaper_op(estimator, form):
    layer = _mixed(CHEAP_EXPENSIVE, seed=5, relaxation="gumbel")
    costs = layer.cost_table[:, 0]
    assert costs[0] < costs[1]
    for _ in range(3):  # several samples
        layer(_x(), training=True)
        grad = _gradient(layer, estimator, form)
        assert np.all(np.isfinite(grad))
        assert grad[0] < 0 < grad[1]
        before = resource.expected_cost([layer])
        layer.arch_logits.assign(layer.arch_logits.numpy() - 0.5 * grad / np.abs(grad).max())
        assert resource.expected_cost([layer]) < before


@pytest.mark.parametrize("estimator", ["reparam", "expected"])
def test_gradient_step_lowers_expected_cost_over_all_primitives(estimator):
    layer = _mixed(NAMES, seed=6)
    layer.arch_logits.assign(np.random.default_rng(0).normal(size=len(NAMES)).astype("float32"))
    grads = []
    for _ in range(20 if estimator == "reparam" else 1):
        layer(_x(), training=True)
        grads.append(_gradient(layer, estimator, "linear"))
    grad = np.mean(grads, axis=0)
    assert np.abs(grad).max() > 0
    before = resource.expected_cost([layer])
    layer.arch_logits.assign(layer.arch_logits.numpy() - 0.5 * grad / np.abs(grad).max())
    assert resource.expected_cost([layer]) < before


def test_score_surrogate_has_score_function_gradient():
    layer = _mixed(CHEAP_EXPENSIVE, seed=8)
    tables = layer.cost_table[:, 0] * 1e-6
    eps = 0.01 * tables.max()
    for _ in range(3):
        layer(_x(), training=True)
        h = int(layer.sampled_index())
        p = _np(layer.probabilities())
        grad = _gradient(layer, "score", "log")
        advantage = np.log(tables[h] + eps) - np.log(p @ tables + eps)
        expected = advantage * (np.eye(2)[h] - p)
        assert np.abs(grad).sum() > 0
        np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-8)


def test_score_penalty_counts_shared_logits_once(supernet):
    shared = mixed_ops(supernet)
    assert len(arch_variables(supernet)) < len(shared)
    with tf.GradientTape() as tape:
        surrogate, _ = resource.penalty(shared, "params", "log", "score")
    grads = tape.gradient(surrogate, arch_variables(supernet))
    assert all(g is not None and np.all(np.isfinite(_np(g))) for g in grads)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"resource": "energy"}, "resource"),
        ({"form": "square"}, "form"),
        ({"estimator": "reinforce"}, "estimator"),
    ],
)
def test_penalty_rejects_bad_arguments(layers, kwargs, field):
    with pytest.raises(ValueError, match=field):
        resource.penalty(layers, **kwargs)


def test_penalty_rejects_empty_layer_list():
    with pytest.raises(ValueError, match="no MixedOp"):
        resource.penalty([])


# -- network_cost ------------------------------------------------------------------------------


def test_network_cost_of_sequential_is_hand_computed():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", use_bias=False),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2),
        ]
    )
    cost = resource.network_cost(model)
    assert cost.params == _num_params(model) == 3 * 3 * 3 * 4 + 4 * 2 + 2
    assert cost.flops == 8 * 8 * 3 * 3 * 3 * 4 + 4 * 2


@pytest.mark.parametrize("kwargs", [{}, {"center": False, "scale": False}])
def test_network_cost_params_of_keras_batch_normalization(kwargs):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(**kwargs)])
    assert resource.network_cost(model).params == _num_params(model)


@pytest.mark.parametrize("kwargs", [{"center": False}, {"scale": False}])
def test_network_cost_params_of_keras_batch_normalization_with_one_affine_part(kwargs):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.BatchNormalization(**kwargs)])
    assert resource.network_cost(model).params == _num_params(model) == 3


def test_network_cost_params_of_child_network():
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2)
    genotype = Genotype(
        normal=[[("sep_conv_3x3", 0), ("dil_conv_5x5", 1)], []],
        normal_concat=[2, 3],
        reduce=[[("skip_connect", 0), ("avg_pool_3x3", 1)], [("sep_conv_5x5", 2)]],
        reduce_concat=[2, 3],
    )
    child = space.build_child(genotype)
    cost = resource.network_cost(child)
    assert cost.params == _num_params(child)
    assert cost.flops > 0 and cost.mac > 0


@pytest.mark.parametrize("auxiliary,drop_path", [(False, 0.0), (True, 0.2)])
def test_network_cost_params_of_evaluation_network(auxiliary, drop_path):
    net = build_network(
        DARTS_V2, 10, (8, 8, 1), init_channels=4, layers=3, auxiliary=auxiliary,
        drop_path=drop_path,
    )  # fmt: skip
    assert resource.network_cost(net).params == _num_params(net)


def test_network_cost_of_a_cell_network_with_one_node():
    """With N=1 a cell concatenates a one-element list; merging layers cost nothing."""
    from kerasnas.search_spaces import CellSpace

    net = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=1).build_supernet("gumbel")
    params = resource.network_cost(net).params
    assert 0 < params <= sum(int(np.prod(v.shape)) for v in net.trainable_weights) * 2
