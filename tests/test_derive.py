"""Tests for kerasnas.derive: derive_model / choices on user models with MixedOp layers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasnas import ops
from kerasnas.derive import choices, derive_model
from kerasnas.layers import MixedOp, mixed_ops


def _images(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, 8, 8, 3)).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _kernel_choice():
    return MixedOp(
        [
            keras.layers.Conv2D(4, 3, padding="same", name="k3"),
            keras.layers.Conv2D(4, 5, padding="same", name="k5"),
        ],
        seed=0,
        name="kernel_choice",
    )


def _op_choice():
    return MixedOp(
        ["sep_conv_3x3", "max_pool_3x3", "skip_connect"], channels=4, seed=1, name="op_choice"
    )


def _prepare(model):
    """Sets the choices (k5, sep_conv_3x3) and moves the batch-norm statistics."""
    model.get_layer("kernel_choice").arch_logits.assign(np.float32([0.1, 0.7]))
    model.get_layer("op_choice").arch_logits.assign(np.float32([0.9, 0.2, -0.4]))
    model(_images(batch=4, seed=9), training=True)  # gumbel: every op runs
    return model


@pytest.fixture(scope="module")
def functional():
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    h = _kernel_choice()(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = _op_choice()(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(3, name="head")(h)
    return _prepare(keras.Model(inputs, outputs))


@pytest.fixture(scope="module")
def sequential():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, padding="same", name="stem"),
            _kernel_choice(),
            _op_choice(),
            keras.layers.GlobalAveragePooling2D(name="pool"),
            keras.layers.Dense(3, name="head"),
        ]
    )
    return _prepare(model)


MODELS = ["functional", "sequential"]


@pytest.mark.parametrize("which", MODELS)
def test_choices_lists_argmax_candidates(request, which):
    model = request.getfixturevalue(which)
    assert choices(model) == {"kernel_choice": "k5", "op_choice": "sep_conv_3x3"}


@pytest.mark.parametrize("which", MODELS)
def test_derived_model_has_no_mixed_ops_and_chosen_layers(request, which):
    model = request.getfixturevalue(which)
    child = derive_model(model)
    assert isinstance(child, keras.Sequential) == (which == "sequential")
    assert not mixed_ops(child)
    assert not any(isinstance(layer, MixedOp) for layer in child.layers)
    kernel = child.get_layer("kernel_choice")
    assert isinstance(kernel, keras.layers.Conv2D) and tuple(kernel.kernel_size) == (5, 5)
    assert isinstance(child.get_layer("op_choice"), ops.SepConv)
    assert len(child.layers) == len(model.layers)


@pytest.mark.parametrize("which", MODELS)
def test_derived_model_matches_original_at_inference(request, which):
    model = request.getfixturevalue(which)
    child = derive_model(model)
    x = _images()
    np.testing.assert_allclose(
        _np(child(x, training=False)), _np(model(x, training=False)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("which", MODELS)
def test_derived_model_has_independent_variables(request, which):
    model = request.getfixturevalue(which)
    child = derive_model(model)
    assert not {id(v) for v in child.weights} & {id(v) for v in model.weights}
    x = _images()
    before = _np(model(x, training=False))
    snapshot = [v.numpy().copy() for v in model.weights]
    for v in child.trainable_variables:
        v.assign(v.numpy() + 1.0)
    child(x, training=True)  # also moves the child's batch-norm statistics
    np.testing.assert_array_equal(_np(model(x, training=False)), before)
    for v, old in zip(model.weights, snapshot, strict=True):
        np.testing.assert_array_equal(v.numpy(), old)
    assert np.abs(_np(child(x, training=False)) - before).max() > 1e-3


def test_derive_model_follows_changed_logits(functional):
    functional.get_layer("op_choice").arch_logits.assign(np.float32([0.0, 0.0, 2.0]))
    try:
        child = derive_model(functional)
        assert isinstance(child.get_layer("op_choice"), ops.Identity)
        x = _images()
        np.testing.assert_allclose(
            _np(child(x, training=False)), _np(functional(x, training=False)), atol=1e-5
        )
    finally:
        functional.get_layer("op_choice").arch_logits.assign(np.float32([0.9, 0.2, -0.4]))


def test_derive_model_rejects_model_without_mixed_ops():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="no MixedOp"):
        derive_model(model)


def test_derive_model_rejects_nested_mixed_op():
    inner = keras.Sequential([keras.Input((8, 8, 3)), _kernel_choice()], name="inner")
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inner(inputs)))
    with pytest.raises(ValueError, match="nested"):
        derive_model(model)
