"""Network morphisms of the nasrl space (kerasnas.estimation.morphism): every operator keeps
the trained parent's function in its child."""

from __future__ import annotations

import numpy as np
import pytest

from kerasnas.estimation import morphism
from kerasnas.search_spaces.nasrl import NASRLSpace

SHAPE = (8, 8, 1)


def _space(strides=(1, 2)):
    return NASRLSpace(
        max_layers=4,
        min_layers=1,
        filter_heights=(1, 3, 5),
        filter_widths=(1, 3, 5),
        filters=(4, 8, 12),
        strides=strides,
    )


def _randomise(model, rng):
    """Random weights everywhere, batch-norm statistics included (variance > 0)."""
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        new = [rng.normal(0, 0.5, w.shape).astype(np.float32) for w in weights]
        if layer.name.endswith("_bn"):
            new[3] = rng.uniform(0.5, 2.0, weights[3].shape).astype(np.float32)
        if layer.name.startswith("normalization"):
            new = weights
        layer.set_weights(new)


def _parents(space, n, seed):
    rng = np.random.default_rng(seed)
    archs = []
    while len(archs) < n:
        arch = space.sample(rng)
        if 2 <= len(space.layers(arch)) < space.max_layers:  # room to deepen
            archs.append(arch)
    return archs


@pytest.mark.slow
def test_every_operator_preserves_the_function():
    space = _space()
    rng = np.random.default_rng(100)
    x = rng.normal(size=(5, *SHAPE)).astype(np.float32)
    kinds = set()
    for arch in _parents(space, 6, 0):
        parent = space.build(arch, SHAPE, 10)
        _randomise(parent, rng)
        want = parent(x, training=False).numpy()
        found = morphism.morphisms(space, arch, SHAPE[:2])
        for m in found:
            child_arch = morphism.apply(space, arch, m)
            assert space.key(child_arch) != space.key(arch), m
            child = space.build(child_arch, SHAPE, 10)
            morphism.inherit(space, arch, parent, m, child, np.random.default_rng(0))
            got = child(x, training=False).numpy()
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=m.describe())
            kinds.add(m.kind)
    assert kinds == set(morphism.KINDS)


def test_widen_copies_filters_and_divides_their_consumers():
    space = _space(strides=None)
    arch = space.from_description(
        {
            "layers": [
                {"filter_height": 3, "filter_width": 3, "filters": 4, "inputs": []},
                {"filter_height": 1, "filter_width": 1, "filters": 4, "inputs": [0]},
            ]
        }
    )
    m = morphism.Morphism("widen", 0, 8)
    assert m in morphism.morphisms(space, arch, SHAPE[:2])
    child_arch = morphism.apply(space, arch, m)
    assert space.layers(child_arch)[0]["filters"] == 8
    parent = space.build(arch, SHAPE, 10)
    child = space.build(child_arch, SHAPE, 10)
    morphism.inherit(space, arch, parent, m, child, np.random.default_rng(0))
    kernel = child.get_layer("L0_conv").get_weights()[0]
    old = parent.get_layer("L0_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel[..., :4], old)
    for k in range(4, 8):  # every new filter is a copy of an old one
        assert any(np.array_equal(kernel[..., k], old[..., i]) for i in range(4))
    consumer = child.get_layer("L1_conv").get_weights()[0]
    # the copies of one filter share its weight: their sum is the parent's
    assert consumer.shape[-2] == 8


def test_no_operator_changes_what_the_classifier_reads():
    space = _space(strides=None)
    # layers 0 and 1 both read the image; 1 is a classifier input: no skip from 1
    arch = space.from_description(
        {
            "layers": [
                {"filter_height": 3, "filter_width": 3, "filters": 4, "inputs": []},
                {"filter_height": 3, "filter_width": 3, "filters": 4, "inputs": []},
                {"filter_height": 3, "filter_width": 3, "filters": 4, "inputs": [0]},
            ]
        }
    )
    skips = [m for m in morphism.morphisms(space, arch, SHAPE[:2]) if m.kind == "skip"]
    assert all(m.value != 1 for m in skips)


def test_other_spaces_are_refused():
    import keras_tuner

    from kerasnas.search_spaces.hyperparameters import HyperParameterSpace

    hp = keras_tuner.HyperParameters()
    hp.Choice("units", [8, 16])
    with pytest.raises(ValueError, match="supported spaces: nasrl"):
        morphism.morphisms(HyperParameterSpace(hp), {}, (8, 8))


def test_every_skip_of_a_chain_preserves_the_function():
    space = _space()
    layers = [
        {"filter_height": 3, "filter_width": 1, "filters": 4, "stride": 1, "inputs": []},
        {"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 2, "inputs": [0]},
        {"filter_height": 1, "filter_width": 3, "filters": 4, "stride": 1, "inputs": [1]},
        {"filter_height": 3, "filter_width": 3, "filters": 12, "stride": 1, "inputs": [0, 2]},
    ]
    arch = space.from_description({"layers": layers})
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    parent = space.build(arch, SHAPE, 10)
    _randomise(parent, rng)
    want = parent(x, training=False).numpy()
    skips = [m for m in morphism.morphisms(space, arch, SHAPE[:2]) if m.kind == "skip"]
    # 0 -> 2 is refused: layer 0's 8x8 output is larger than layer 2's 4x4 input
    assert sorted((m.value, m.layer) for m in skips) == [(1, 3)]
    for m in skips:
        child_arch = morphism.apply(space, arch, m)
        child = space.build(child_arch, SHAPE, 10)
        morphism.inherit(space, arch, parent, m, child, rng)
        got = child(x, training=False).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=m.describe())
