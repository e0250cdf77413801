"""Tests for kerasnas.layers: MixedOp relaxations, inference modes, sharing, saving; DropPath."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasnas  # noqa: F401  (registers the layers for load_model)
from kerasnas import ops
from kerasnas.layers import (
    DropPath,
    MixedOp,
    arch_variables,
    mixed_ops,
    set_inference,
    set_temperature,
    weight_variables,
)

C = 4
NAMES = ["none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "conv_1x1"]


def _x(batch=2, size=6, channels=C, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, size, size, channels)).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


class Scale(keras.layers.Layer):
    """x * k * w (w trainable, initially 1) that counts how often it runs."""

    def __init__(self, k, **kwargs):
        super().__init__(**kwargs)
        self.k = float(k)
        self.calls = 0

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(), initializer="ones")

    def call(self, x):
        self.calls += 1
        return x * self.w * self.k

    def compute_output_shape(self, input_shape):
        return input_shape


def _scales(n=4):
    return [Scale(i + 1, name=f"scale{i}") for i in range(n)]


def _built(layer, x):
    layer(x, training=False)
    return layer


def _set_logits(layer, values):
    layer.arch_logits.assign(np.asarray(values, "float32"))


def _candidate_outputs(layer, x, training):
    return [_np(ops.call_layer(c, x, training)) for c in layer.candidates]


# -- relaxations -------------------------------------------------------------------------------


def test_softmax_relaxation_is_probability_weighted_sum():
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, relaxation="softmax", seed=0), x)
    _set_logits(layer, [0.5, -1.0, 2.0, 0.3, 1.0, -0.2])
    y = _np(layer(x, training=True))
    p = _np(keras.ops.softmax(layer.arch_logits))
    outs = _candidate_outputs(layer, x, training=True)
    expected = sum(pk * o for pk, o in zip(p, outs, strict=True))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_np(layer.probabilities()), p, rtol=1e-6)


def test_gumbel_relaxation_is_sample_weighted_sum_with_fresh_samples():
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, relaxation="gumbel", seed=3), x)
    samples = []
    for _ in range(2):
        y = _np(layer(x, training=True))
        z = _np(layer.relaxed_sample())
        outs = _candidate_outputs(layer, x, training=True)
        expected = sum(zk * o for zk, o in zip(z, outs, strict=True))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(z.sum(), 1.0, rtol=1e-5)
        samples.append(z)
    assert not np.allclose(samples[0], samples[1])  # one new sample per call
    assert not np.allclose(samples[0], _np(layer.probabilities()))


def test_relaxed_sample_is_softmax_of_noisy_logits_over_temperature():
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, seed=1), x)
    layer(x, training=True)
    set_temperature(layer, 0.5)
    logits = layer.arch_logits.numpy() + layer.gumbel_noise.numpy()
    expected = np.exp(logits / 0.5) / np.exp(logits / 0.5).sum()
    np.testing.assert_allclose(_np(layer.relaxed_sample()), expected, rtol=1e-5)
    assert int(layer.sampled_index()) == int(np.argmax(logits))


def test_gumbel_hard_runs_only_the_sampled_op():
    x = _x()
    candidates = _scales()
    layer = _built(MixedOp(candidates, relaxation="gumbel_hard", seed=5), x)
    for c in candidates:
        c.calls = 0
    seen = set()
    for step in range(8):
        before = [c.calls for c in candidates]
        y = _np(layer(x, training=True))
        i = int(layer.sampled_index())
        seen.add(i)
        ran = [c.calls - b for c, b in zip(candidates, before, strict=True)]
        assert ran == [1 if k == i else 0 for k in range(4)], (step, i, ran)
        np.testing.assert_allclose(y, (i + 1) * x, rtol=1e-6, atol=1e-6)
    assert len(seen) > 1  # the sample changes between calls


def test_gumbel_hard_output_equals_sampled_named_op_and_gradients_skip_others():
    x = _x()
    layer = _built(MixedOp(NAMES[1:], channels=C, relaxation="gumbel_hard", seed=2), x)
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * y)
    i = int(layer.sampled_index())
    np.testing.assert_allclose(
        _np(y), _np(ops.call_layer(layer.candidates[i], x, True)), rtol=1e-5, atol=1e-6
    )
    weights = [c.trainable_weights for c in layer.candidates]
    grads = tape.gradient(loss, [layer.arch_logits] + [w for ws in weights for w in ws])
    assert np.abs(_np(grads[0])).sum() > 0
    pos = 1
    for k, ws in enumerate(weights):
        for g in grads[pos : pos + len(ws)]:
            if k == i:
                assert g is not None and np.abs(_np(g)).sum() > 0
            else:
                assert g is None or not np.any(_np(g))
        pos += len(ws)


@pytest.mark.parametrize("relaxation", ["gumbel", "gumbel_hard", "softmax"])
def test_arch_logits_receive_nonzero_gradients(relaxation):
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, relaxation=relaxation, seed=4), x)
    target = np.random.default_rng(1).normal(size=(2, 6, 6, C)).astype("float32")
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True) * target)
    grad = _np(tape.gradient(loss, layer.arch_logits))
    assert grad.shape == (len(NAMES),)
    assert np.all(np.isfinite(grad)) and np.abs(grad).sum() > 1e-6


# -- inference ---------------------------------------------------------------------------------


def test_inference_default_is_argmax_op():
    x = _x()
    candidates = _scales()
    layer = _built(MixedOp(candidates, relaxation="gumbel", seed=0), x)
    assert layer.inference == "argmax"
    for chosen in (2, 0, 3):
        logits = np.zeros(4)
        logits[chosen] = 1.0
        _set_logits(layer, logits)
        before = [c.calls for c in candidates]
        y = _np(layer(x, training=False))
        np.testing.assert_allclose(y, (chosen + 1) * x, rtol=1e-6)
        ran = [c.calls - b for c, b in zip(candidates, before, strict=True)]
        assert ran == [1 if k == chosen else 0 for k in range(4)]
        assert layer.chosen_index() == chosen
        assert layer.chosen_op() is candidates[chosen]


def test_inference_argmax_of_named_ops():
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, seed=0), x)
    _set_logits(layer, [0.0, 0.0, 0.0, 0.0, 3.0, 0.0])
    y = _np(layer(x, training=False))
    np.testing.assert_allclose(y, _candidate_outputs(layer, x, False)[4], rtol=1e-6)


def test_set_inference_softmax_changes_inference_output():
    x = _x()
    layer = MixedOp(_scales(), seed=0)
    model = keras.Sequential([keras.Input((6, 6, C)), layer])
    _set_logits(layer, [0.1, 0.5, -0.3, 0.2])
    argmax_out = _np(model(x, training=False))
    np.testing.assert_allclose(argmax_out, 2 * x, rtol=1e-6)
    set_inference(model, "softmax")
    assert layer.inference == "softmax"
    p = _np(layer.probabilities())
    expected = sum(pk * (k + 1) for k, pk in enumerate(p)) * x
    np.testing.assert_allclose(_np(model(x, training=False)), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="mode"):
        set_inference(model, "median")


def test_inference_sample_draws_like_training():
    x = _x()
    layer = _built(MixedOp(_scales(), inference="sample", relaxation="gumbel", seed=7), x)
    y = _np(layer(x, training=False))
    z = _np(layer.relaxed_sample())
    np.testing.assert_allclose(y, sum(zk * (k + 1) for k, zk in enumerate(z)) * x, rtol=1e-5)


# -- temperature and sharing -------------------------------------------------------------------


def test_set_temperature_changes_sample_sharpness():
    x = _x()
    layer = _built(MixedOp(NAMES, channels=C, seed=11), x)
    layer(x, training=True)  # fixes the noise
    set_temperature(layer, 0.05)
    sharp = _np(layer.relaxed_sample())
    set_temperature(layer, 20.0)
    flat = _np(layer.relaxed_sample())
    assert float(layer.temperature.numpy()) == pytest.approx(20.0)
    assert sharp.max() > 0.9
    assert flat.max() < 0.3 and flat.min() > 0.1
    assert np.argmax(sharp) == np.argmax(flat) == int(layer.sampled_index())
    with pytest.raises(ValueError, match="tau"):
        set_temperature(layer, 0.0)


def test_share_with_shares_logits_and_sample():
    x = _x()
    owner = _built(MixedOp(NAMES, channels=C, seed=1, name="owner"), x)
    follower = MixedOp(NAMES, channels=C, share_with=owner, seed=2, name="follower")
    follower(x, training=False)
    assert follower.arch_logits is owner.arch_logits
    assert follower.owner() is owner
    owner(x, training=True)
    noise = owner.gumbel_noise.numpy().copy()
    follower(x, training=True)
    np.testing.assert_array_equal(owner.gumbel_noise.numpy(), noise)  # no redraw
    np.testing.assert_allclose(_np(follower.relaxed_sample()), _np(owner.relaxed_sample()))
    assert int(follower.sampled_index()) == int(owner.sampled_index())
    inputs = keras.Input((6, 6, C))
    model = keras.Model(inputs, follower(owner(inputs)))
    assert len(arch_variables(model)) == 1
    set_temperature(model, 3.0)
    assert float(follower.temperature.numpy()) == pytest.approx(3.0)
    _set_logits(owner, np.arange(len(NAMES)))
    assert follower.chosen_index() == len(NAMES) - 1


def test_share_with_errors():
    x = _x()
    with pytest.raises(ValueError, match="share_with"):
        MixedOp(NAMES, channels=C, share_with="owner")
    unbuilt = MixedOp(NAMES, channels=C)
    with pytest.raises(ValueError, match="share_with"):
        MixedOp(NAMES, channels=C, share_with=unbuilt)(x)
    owner = _built(MixedOp(NAMES, channels=C), x)
    with pytest.raises(ValueError, match="different candidates"):
        MixedOp(NAMES[:3], channels=C, share_with=owner)(x)


# -- variables ---------------------------------------------------------------------------------


def test_arch_and_weight_variables_partition_trainable_variables():
    inputs = keras.Input((6, 6, C))
    a = MixedOp(NAMES, channels=C, name="a")
    b = MixedOp(["sep_conv_3x3", "conv_1x1"], channels=C, name="b")
    h = keras.layers.Conv2D(C, 1, name="conv")(inputs)
    model = keras.Model(inputs, b(a(h)))
    arch = arch_variables(model)
    weights = weight_variables(model)
    assert [id(v) for v in arch] == [id(a.arch_logits), id(b.arch_logits)]
    assert not {id(v) for v in arch} & {id(v) for v in weights}
    assert {id(v) for v in arch} | {id(v) for v in weights} == {
        id(v) for v in model.trainable_variables
    }
    assert len(weights) == len(model.trainable_variables) - 2
    assert all("arch_logits" not in v.name for v in weights)
    assert mixed_ops(model) == [a, b]


# -- saving ------------------------------------------------------------------------------------


def test_user_cnn_with_mixed_op_saves_and_loads(tmp_path):
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    choice = MixedOp(
        [
            keras.layers.Conv2D(4, 3, padding="same", name="k3"),
            keras.layers.Conv2D(4, 5, padding="same", name="k5"),
        ],
        name="kernel_choice",
    )
    h = choice(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(h))
    _set_logits(choice, [0.2, 0.9])
    x = _x(size=8, channels=3)
    expected = _np(model(x, training=False))
    path = tmp_path / "user_cnn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    loaded_choice = loaded.get_layer("kernel_choice")
    assert isinstance(loaded_choice, MixedOp)
    assert loaded_choice.candidate_names == ["k3", "k5"]
    np.testing.assert_array_equal(loaded_choice.arch_logits.numpy(), np.float32([0.2, 0.9]))
    assert loaded_choice.chosen_index() == 1
    np.testing.assert_allclose(_np(loaded(x, training=False)), expected, rtol=1e-6, atol=1e-6)
    set_inference(model, "softmax")
    set_inference(loaded, "softmax")
    np.testing.assert_allclose(
        _np(loaded(x, training=False)), _np(model(x, training=False)), rtol=1e-6, atol=1e-6
    )


def test_model_with_shared_mixed_ops_saves_and_loads(tmp_path):
    inputs = keras.Input((6, 6, C))
    owner = MixedOp(["skip_connect", "conv_1x1"], channels=C, name="a")
    follower = MixedOp(["skip_connect", "conv_1x1"], channels=C, share_with=owner, name="b")
    model = keras.Model(inputs, follower(owner(inputs)))
    _set_logits(owner, [0.1, 0.8])
    x = _x()
    path = tmp_path / "shared.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(
        _np(loaded(x, training=False)), _np(model(x, training=False)), rtol=1e-6, atol=1e-6
    )


def test_mixed_op_builds_on_inputs_with_unknown_spatial_size():
    inputs = keras.Input((None, None, C))
    out = MixedOp(["sep_conv_3x3", "skip_connect"], channels=C)(inputs)
    assert tuple(out.shape) == (None, None, None, C)


# -- argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"candidates": NAMES, "channels": C, "relaxation": "foo"}, "relaxation"),
        ({"candidates": NAMES, "channels": C, "inference": "foo"}, "inference"),
        ({"candidates": [], "channels": C}, "candidates"),
        ({"candidates": "sep_conv_3x3", "channels": C}, "candidates"),
        ({"candidates": ["sep_conv_3x3", "skip_connect"]}, "channels"),
        ({"candidates": ["sep_conv_3x3", "sep_conv_3x3"], "channels": C}, "unique"),
        ({"candidates": ["sep_conv_3x3", "no_such_op"], "channels": C}, "no_such_op"),
    ],
)
def test_mixed_op_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MixedOp(**kwargs)


def test_mixed_op_rejects_candidates_with_different_output_shapes():
    layer = MixedOp([keras.layers.Conv2D(4, 1), keras.layers.Conv2D(6, 1)])
    with pytest.raises(ValueError, match="candidates give different output shapes"):
        layer(_x())
    strided = MixedOp([keras.layers.Conv2D(4, 1), keras.layers.Conv2D(4, 1, strides=2)])
    with pytest.raises(ValueError, match="different output shapes"):
        strided(_x())


# -- DropPath ----------------------------------------------------------------------------------


def test_drop_path_is_identity_at_inference():
    layer = DropPath(0.5, seed=0)
    x = _x(batch=16)
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)
    np.testing.assert_array_equal(_np(layer(x)), x)


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_drop_path_drops_whole_examples_at_rate(rate):
    layer = DropPath(rate, seed=1)
    n = 4000
    x = np.ones((n, 2, 2, 3), "float32")
    y = _np(layer(x, training=True)).reshape(n, -1)
    dropped = (y == 0).all(axis=1)
    kept = np.isclose(y, 1.0 / (1.0 - rate)).all(axis=1)
    assert (dropped | kept).all()  # whole examples, survivors rescaled
    assert abs(dropped.mean() - rate) < 0.04
    layer.rate.assign(0.0)  # the rate is a variable a trainer can ramp
    np.testing.assert_array_equal(_np(layer(x, training=True)), x)


def test_drop_path_rejects_bad_rate():
    with pytest.raises(ValueError, match="rate"):
        DropPath(1.0)
