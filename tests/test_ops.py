"""Tests for kerasnas.ops: op shapes and structure, costs, BatchNorm, registry, configs."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import ops
from kerasnas.layers import MixedOp

BUILTIN_OPS = ops.PRIMITIVES + ("conv_1x1", "conv_3x3")
# ops whose output channels may differ from their input channels
CHANNEL_CHANGING_OPS = ("none", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
C = 4


def _x(size: int, channels: int = C, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, size, size, channels)).astype("float32")


def _num_params(layer: keras.layers.Layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


def _sublayers(layer: keras.layers.Layer) -> list:
    return list(layer._flatten_layers(include_self=False, recursive=True))


def _randomize(layer: keras.layers.Layer, seed: int = 1) -> None:
    """Random weights (positive moving variances) so that copies are really tested."""
    rng = np.random.default_rng(seed)
    values = []
    for w in layer.weights:
        if "variance" in w.name:
            values.append(rng.uniform(0.5, 1.5, w.shape))
        else:
            values.append(rng.normal(0, 0.5, w.shape))
    layer.set_weights([v.astype("float32") for v in values])


@pytest.fixture
def private_registry(monkeypatch):
    """Registrations made in a test stay local to it."""
    monkeypatch.setattr(ops, "_REGISTRY", dict(ops._REGISTRY))


# -- shapes ------------------------------------------------------------------------------------


def test_builtin_ops_are_registered_with_primitives_first():
    names = ops.registered_ops()
    assert names[: len(ops.PRIMITIVES)] == ops.PRIMITIVES
    assert set(BUILTIN_OPS) <= set(names)


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_op_output_shape_is_ceil_of_input_over_stride(name, strides, size):
    op = ops.create_op(name, C, strides)
    out = math.ceil(size / strides)
    for training in (True, False):
        y = op(_x(size), training=training)
        assert tuple(y.shape) == (2, out, out, C)
    assert tuple(op.compute_output_shape((2, size, size, C))) == (2, out, out, C)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", CHANNEL_CHANGING_OPS)
def test_op_changes_channels(name, strides):
    op = ops.create_op(name, 6, strides)
    y = op(_x(7, channels=3), training=True)
    out = math.ceil(7 / strides)
    assert tuple(y.shape) == (2, out, out, 6)


@pytest.mark.parametrize("size", [8, 7])
@pytest.mark.parametrize("strides", [1, 2])
def test_none_outputs_zeros(strides, size):
    op = ops.create_op("none", 6, strides)
    y = keras.ops.convert_to_numpy(op(_x(size, channels=3) + 1.0))
    out = math.ceil(size / strides)
    assert y.shape == (2, out, out, 6)
    assert not y.any()


def test_stride1_skip_is_identity():
    op = ops.create_op("skip_connect", C, 1)
    assert isinstance(op, ops.Identity)
    x = _x(7)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(op(x, training=True)), x)
    assert op.trainable_weights == []


@pytest.mark.parametrize("size", [8, 7])
def test_stride2_skip_is_factorized_reduce(size):
    op = ops.create_op("skip_connect", C, 2)
    assert isinstance(op, ops.FactorizedReduce)
    x = _x(size)
    y = keras.ops.convert_to_numpy(op(x, training=False))
    # by hand: ReLU, 1x1 stride-2 convs on the grid and the grid shifted by one pixel,
    # concatenated, batch norm with fresh moving statistics (mean 0, variance 1)
    k1 = op.conv1.kernel.numpy()[0, 0]
    k2 = op.conv2.kernel.numpy()[0, 0]
    assert k1.shape == (C, C // 2) and k2.shape == (C, C - C // 2)
    r = np.maximum(x, 0)
    padded = np.pad(r, [(0, 0), (0, 1), (0, 1), (0, 0)])
    a = r[:, ::2, ::2] @ k1
    b = padded[:, 1::2, 1::2][:, : a.shape[1], : a.shape[2]] @ k2
    expected = np.concatenate([a, b], axis=-1) / np.sqrt(1 + ops.BN_EPSILON)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,k", [("sep_conv_3x3", 3), ("sep_conv_5x5", 5)])
def test_sep_conv_has_two_depthwise_pointwise_stages(name, k):
    c_in, c_out = 3, 6
    op = ops.create_op(name, c_out, 1)
    op(_x(8, channels=c_in))
    layers = _sublayers(op)
    depthwise = [layer for layer in layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    pointwise = [layer for layer in layers if type(layer) is keras.layers.Conv2D]
    norms = [layer for layer in layers if isinstance(layer, ops.BatchNorm)]
    assert len(depthwise) == 2 and len(pointwise) == 2 and len(norms) == 2
    assert [tuple(d.kernel.shape) for d in depthwise] == [(k, k, c_in, 1)] * 2
    assert [tuple(p.kernel.shape) for p in pointwise] == [(1, 1, c_in, c_in), (1, 1, c_in, c_out)]
    expected = 2 * k * k * c_in + c_in * c_in + c_in * c_out + 2 * c_in + 2 * c_out
    assert _num_params(op) == expected
    assert len(op.trainable_weights) == 8


def test_dil_conv_is_dilated_by_two_and_single_stage():
    op = ops.create_op("dil_conv_3x3", C, 1)
    op(_x(8))
    depthwise = [
        layer for layer in _sublayers(op) if isinstance(layer, keras.layers.DepthwiseConv2D)
    ]
    assert len(depthwise) == 1
    assert tuple(depthwise[0].dilation_rate) == (2, 2)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_no_conv_has_a_bias(name, strides):
    op = ops.create_op(name, C, strides)
    op(_x(8))
    convs = [
        layer
        for layer in _sublayers(op)
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    ]
    for conv in convs:
        assert not conv.use_bias, conv.name
    assert not any("bias" in w.name for w in op.weights)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_affine_false_has_no_trainable_batch_norm(name, strides):
    op = ops.create_op(name, C, strides, affine=False, search=True)
    op(_x(8), training=True)
    for layer in _sublayers(op):
        if isinstance(layer, ops.BatchNorm):
            assert layer.trainable_weights == []
            assert len(layer.non_trainable_weights) == 2
    convs = sum(
        isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        for layer in _sublayers(op)
    )
    norm_params = sum(
        _num_params(layer) for layer in _sublayers(op) if isinstance(layer, ops.BatchNorm)
    )
    assert norm_params == 0
    assert len(op.trainable_weights) == convs


def test_pools_get_batch_norm_only_in_search_form():
    searched = ops.create_op("max_pool_3x3", C, 1, search=True)
    plain = ops.create_op("avg_pool_3x3", C, 1, search=False)
    assert any(isinstance(layer, ops.BatchNorm) for layer in _sublayers(searched))
    assert not any(isinstance(layer, ops.BatchNorm) for layer in _sublayers(plain))


def test_avg_pool_excludes_padding():
    op = ops.create_op("avg_pool_3x3", 1, 1, search=False)
    y = keras.ops.convert_to_numpy(op(np.ones((1, 4, 4, 1), "float32")))
    np.testing.assert_allclose(y, 1.0, rtol=1e-6)


# -- costs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_cost_params_equal_trainable_params(name, strides, affine):
    op = ops.create_op(name, C, strides, affine=affine, search=not affine)
    op(_x(7), training=True)
    cost = op.cost((7, 7, C))
    assert cost.params == _num_params(op)
    assert cost.flops >= 0 and cost.mac >= 0


@pytest.mark.parametrize("name", CHANNEL_CHANGING_OPS)
def test_cost_params_equal_trainable_params_when_channels_change(name):
    op = ops.create_op(name, 6, 2)
    op(_x(7, channels=3), training=True)
    assert op.cost((7, 7, 3)).params == _num_params(op)


def test_unbuilt_sep_conv_reports_its_cost():
    op = ops.create_op("sep_conv_3x3", 6, 1)
    assert op.cost((8, 8, 3)).params == 2 * 9 * 3 + 9 + 18 + 6 + 12


@pytest.mark.parametrize(
    "strides,expected",
    [
        # out 8x8: dw1 64*9*3, pw1 64*3*3, dw2 64*9*3, pw2 64*3*6
        # = 1728 + 576 + 1728 + 1152
        (1, 5184),
        # out 4x4 (the first depthwise carries the stride): 432 + 144 + 432 + 288
        (2, 1296),
    ],
)
def test_sep_conv_flops_are_hand_computed_mult_adds(strides, expected):
    op = ops.create_op("sep_conv_3x3", 6, strides)
    op(_x(8, channels=3))
    assert op.cost((8, 8, 3)).flops == expected


def test_zero_and_identity_cost_nothing():
    for name in ("none", "skip_connect"):
        cost = ops.create_op(name, C, 1).cost((8, 8, C))
        assert (cost.params, cost.flops, cost.mac) == (0, 0, 0)


def test_conv_3x3_flops_hand_computed():
    op = ops.create_op("conv_3x3", 6, 2)
    # out 4x4x6, 3x3x3 kernel per output
    assert op.cost((8, 8, 3)).flops == 16 * 9 * 3 * 6


# -- BatchNorm ---------------------------------------------------------------------------------


def test_batch_norm_training_normalises_per_channel():
    x = _x(5, channels=3, batch=4) * np.array([1.0, 3.0, 0.5], "float32") + np.array(
        [2.0, -1.0, 5.0], "float32"
    )
    bn = ops.BatchNorm(affine=False)
    y = keras.ops.convert_to_numpy(bn(x, training=True))
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1.0, atol=1e-3)


def test_batch_norm_moving_statistics_use_momentum_0_9():
    x = _x(5, channels=3, batch=4) * 2.0 + 1.0
    bn = ops.BatchNorm()
    bn.build(x.shape)
    bn.moving_mean.assign(np.array([1.0, -2.0, 0.5], "float32"))
    old_mean = bn.moving_mean.numpy().copy()
    old_var = bn.moving_variance.numpy().copy()
    bn(x, training=True)
    batch_mean = x.mean(axis=(0, 1, 2))
    batch_var = x.var(axis=(0, 1, 2), ddof=1)  # unbiased, as PyTorch
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * old_mean + 0.1 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(),
        0.9 * old_var + 0.1 * batch_var,
        rtol=1e-5,
    )


def test_batch_norm_inference_uses_moving_statistics():
    x = _x(5, channels=3)
    bn = ops.BatchNorm(affine=True)
    bn.build(x.shape)
    mean = np.array([0.5, -1.0, 2.0], "float32")
    var = np.array([2.0, 0.5, 1.5], "float32")
    gamma = np.array([1.5, -0.5, 2.0], "float32")
    beta = np.array([0.1, 0.2, -0.3], "float32")
    bn.set_weights([gamma, beta, mean, var])
    y = keras.ops.convert_to_numpy(bn(x, training=False))
    expected = (x - mean) / np.sqrt(var + ops.BN_EPSILON) * gamma + beta
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # inference leaves the moving statistics alone
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mean)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_under_mixed_bfloat16_keeps_float32_statistics(training):
    x = _x(5, channels=3, batch=4) * 2.0 + 1.0
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        bn = ops.BatchNorm()
        y = bn(x, training=training, output_scale=tf.constant(0.5))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.dtype == tf.bfloat16
    assert {v.dtype for v in bn.weights} == {"float32"}
    if training:
        expected = 0.5 * (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + ops.BN_EPSILON)
    else:
        expected = 0.5 * x / np.sqrt(1.0 + ops.BN_EPSILON)
    np.testing.assert_allclose(np.asarray(tf.cast(y, tf.float32)), expected, atol=0.05)
    if training:  # the moving mean moved towards the float32 batch mean
        np.testing.assert_allclose(bn.moving_mean.numpy(), 0.1 * x.mean((0, 1, 2)), rtol=0.02)


def test_batch_norm_affine_false_has_no_trainable_weights():
    bn = ops.BatchNorm(affine=False)
    bn.build((None, 4, 4, 3))
    assert bn.trainable_weights == []
    assert [tuple(w.shape) for w in bn.non_trainable_weights] == [(3,), (3,)]


@pytest.mark.parametrize("kwargs", [{"momentum": 1.0}, {"momentum": -0.1}, {"epsilon": 0.0}])
def test_batch_norm_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ops.BatchNorm(**kwargs)


# -- registry ----------------------------------------------------------------------------------


def _conv1x1_factory(channels, strides, affine, search, name):
    return keras.layers.Conv2D(channels, 1, strides, padding="same", use_bias=False, name=name)


def test_register_op_adds_a_usable_op(private_registry):
    ops.register_op("test_conv1x1", _conv1x1_factory)
    assert "test_conv1x1" in ops.registered_ops()
    layer = ops.create_op("test_conv1x1", 6, 2, layer_name="mine")
    assert layer.name == "mine"
    assert tuple(layer(_x(7, channels=3)).shape) == (2, 4, 4, 6)
    mixed = MixedOp(["skip_connect", "test_conv1x1"], channels=C, relaxation="softmax")
    y = mixed(_x(8), training=True)
    assert tuple(y.shape) == (2, 8, 8, C)
    assert mixed.candidate_names == ["skip_connect", "test_conv1x1"]
    assert isinstance(mixed.candidates[1], keras.layers.Conv2D)
    # generic cost of a custom layer: its trainable parameters
    assert mixed.cost_table[1, 0] == C * C


def test_register_op_rejects_duplicates(private_registry):
    ops.register_op("test_dup", _conv1x1_factory)
    with pytest.raises(ValueError, match="test_dup"):
        ops.register_op("test_dup", _conv1x1_factory)
    with pytest.raises(ValueError, match="already registered"):
        ops.register_op("sep_conv_3x3", _conv1x1_factory)
    ops.register_op("test_dup", _conv1x1_factory, overwrite=True)  # allowed explicitly


def test_register_op_rejects_bad_arguments(private_registry):
    with pytest.raises(ValueError, match="name"):
        ops.register_op("", _conv1x1_factory)
    with pytest.raises(ValueError, match="callable"):
        ops.register_op("test_bad", "not a factory")


def test_create_op_unknown_name_raises_naming_the_op():
    with pytest.raises(ValueError, match="'no_such_op'"):
        ops.create_op("no_such_op", C)


@pytest.mark.parametrize(
    "kwargs,field", [({"channels": 0}, "channels"), ({"strides": 3}, "strides")]
)
def test_create_op_rejects_bad_channels_and_strides(kwargs, field):
    args = {"channels": C, "strides": 1, **kwargs}
    with pytest.raises(ValueError, match=field):
        ops.create_op("sep_conv_3x3", **args)


# -- get_config / from_config ------------------------------------------------------------------


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_config_round_trip_gives_identical_outputs(name, strides, affine):
    op = ops.create_op(name, C, strides, affine=affine, search=not affine)
    x = _x(7)
    op(x)
    _randomize(op)
    clone = type(op).from_config(op.get_config())
    assert clone.get_config() == op.get_config()
    clone(x)
    clone.set_weights(op.get_weights())
    for training in (False, True):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(clone(x, training=training)),
            keras.ops.convert_to_numpy(op(x, training=training)),
            rtol=1e-6,
            atol=1e-6,
        )


def test_batch_norm_config_round_trip():
    bn = ops.BatchNorm(affine=False, momentum=0.8, epsilon=1e-3, name="bn_x")
    x = _x(5)
    bn(x)
    _randomize(bn)
    clone = ops.BatchNorm.from_config(bn.get_config())
    assert (clone.affine, clone.momentum, clone.epsilon) == (False, 0.8, 1e-3)
    clone(x)
    clone.set_weights(bn.get_weights())
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(bn(x)), rtol=1e-6
    )


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("name", BUILTIN_OPS)
def test_call_scaled_equals_scale_times_output(name, strides):
    # ops ending in batch norm fold the mixing weight into it: same values, same gradients
    op = ops.create_op(name, C, strides, affine=False, search=True)
    x = keras.ops.convert_to_tensor(_x(7))
    op(x)
    _randomize(op)
    scale = tf.Variable(0.37)
    for training in (False, True):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            folded = ops.call_scaled(op, x, scale, training)
            plain = scale * op(x, training=training)
            loss_folded = tf.reduce_sum(folded * folded)
            loss_plain = tf.reduce_sum(plain * plain)
        np.testing.assert_allclose(folded.numpy(), plain.numpy(), rtol=1e-5, atol=1e-5)
        for a, b in zip(
            tape.gradient(loss_folded, [scale, x], unconnected_gradients="zero"),
            tape.gradient(loss_plain, [scale, x], unconnected_gradients="zero"),
            strict=True,
        ):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dilation", [2, 3])
@pytest.mark.parametrize("size", [16, 7])
@pytest.mark.parametrize("k", [3, 5])
def test_strided_dilated_depthwise_matches_keras(k, size, dilation):
    # the zero-spread kernel at stride 2 computes what Keras' stride-1-then-subsample does
    ref = keras.layers.DepthwiseConv2D(k, 2, padding="same", dilation_rate=dilation, use_bias=False)
    ours = ops._DepthwiseConv2D(k, 2, padding="same", dilation_rate=dilation, use_bias=False)
    x = tf.constant(_x(size))
    ref.build(x.shape)
    ours.build(x.shape)
    ours.set_weights(ref.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y_ref, y_ours = ref(x), ours(x)
        loss_ref, loss_ours = tf.reduce_sum(y_ref**2), tf.reduce_sum(y_ours**2)
    assert y_ours.shape == y_ref.shape
    np.testing.assert_allclose(y_ours.numpy(), y_ref.numpy(), rtol=1e-5, atol=1e-5)
    grads = zip(
        tape.gradient(loss_ours, [x, ours.kernel]),
        tape.gradient(loss_ref, [x, ref.kernel]),
        strict=True,
    )
    for a, b in grads:
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)


def test_reduction_dil_conv_uses_the_output_resolution_depthwise():
    op = ops.create_op("dil_conv_3x3", C, 2)
    op.build((None, 8, 8, C))
    assert any(isinstance(layer, ops._DepthwiseConv2D) for layer in op.steps)


@pytest.mark.parametrize("k, d", [(3, 2), (5, 2), (3, 3)])
def test_dilated_kernel_spreads_taps_with_zeros(k, d):
    kernel = np.random.default_rng(0).normal(size=(k, k, 3, 2)).astype("float32")
    spread = keras.ops.convert_to_numpy(ops.dilate_kernel(kernel, d))
    span = (k - 1) * d + 1
    assert spread.shape == (span, span, 3, 2)
    np.testing.assert_array_equal(spread[::d, ::d], kernel)  # the taps, unchanged
    mask = np.ones((span, span), bool)
    mask[::d, ::d] = False
    assert not spread[mask].any()  # zeros between them


def test_reduction_dil_conv_converts_to_plain_tflite():
    """The dilated kernel is built with tensors of at most 4 dimensions: TFLite has no builtin
    pad of a 6-D tensor, which made children with a dil_conv_5x5 on a stride-2 edge fail to
    convert (at 32 channels the converter no longer folds the pad away)."""
    from kerasnas.export import litert

    inputs = keras.Input((8, 8, 32))
    outputs = ops.create_op("dil_conv_5x5", 32, 2)(inputs, training=False)
    model = keras.Model(inputs, outputs)
    tflite = litert.convert_keras_frozen(model, "float")
    x = _x(8, channels=32)
    np.testing.assert_allclose(litert.predict(tflite, x), model.predict(x, verbose=0), atol=1e-4)
