"""Network morphisms of the metaqnn space (kerasnas.estimation.morphism_metaqnn, through the
dispatching kerasnas.estimation.morphism): every operator keeps the parent's function in
its child, and proposes only architectures the space's rules allow."""

from __future__ import annotations

import numpy as np
import pytest

from kerasnas.estimation import morphism, morphism_metaqnn
from kerasnas.search_spaces.base import SpaceError
from kerasnas.search_spaces.metaqnn import MetaQNNSpace

SHAPE = (8, 8, 1)

# the layers around each changed one: conv->conv, conv->pool->conv, conv->fc (flatten),
# pool->fc, fc->fc, fc->classifier, conv->gap, pool->gap, conv->classifier (flatten)
ARCHS = {
    "conv_pool_conv_fc_fc": ["conv_4_3", "conv_4_1", "pool_2_2", "conv_4_3", "fc_8", "fc_8"],
    "conv_pool_fc": ["conv_4_3", "pool_2_2", "fc_8"],
    "conv_fc_fc": ["conv_4_1", "pool_3_2", "conv_8_1", "fc_12", "fc_8"],
    "conv_gap": ["conv_4_1", "conv_4_3", "gap"],
    "pool_gap": ["conv_4_3", "pool_2_2", "gap"],
    "conv_flatten": ["conv_4_1", "pool_3_2", "conv_4_1"],
}


def _space(batch_norm: bool = False, max_layers: int = 7) -> MetaQNNSpace:
    return MetaQNNSpace(
        max_layers=max_layers,
        conv_filters=(4, 8),
        conv_kernels=(1, 3, 5),
        pools=((2, 2), (3, 2)),
        fc_units=(12, 8),
        batch_norm=batch_norm,
    )


def _randomise(model, rng):
    """Random weights of unit-order outputs (kernels N(0, 1/fan_in)), biases, and batch
    norms with non-trivial statistics (mean != 0, variance in [0.5, 2], gamma != 1)."""
    for v in model.weights:
        shape, leaf = tuple(v.shape), v.path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "moving_mean":
            value = rng.normal(0, 0.5, shape)
        elif len(shape) == 1:  # bias, beta
            value = rng.normal(0, 0.3, shape)
        else:
            value = rng.normal(0, 1.5 / np.sqrt(np.prod(shape[:-1])), shape)
        v.assign(value.astype(np.float32))


def _kind(layer: str) -> str:
    return layer.split("_", 1)[0]


def _check_all(space, arch, rng) -> set[tuple[str, str]]:
    """Applies every morphism of `arch` to a random parent; returns the (operator, layer
    kind) pairs seen."""
    x = rng.normal(size=(6, *SHAPE)).astype(np.float32)
    parent = space.build(arch, SHAPE, 10)
    _randomise(parent, rng)
    want = parent(x, training=False).numpy()
    assert np.abs(want).max() > 0.1  # a live network, not zeros
    layers = space.arch_to_actions(arch)
    seen = set()
    for m in morphism.morphisms(space, arch, SHAPE[:2]):
        child_arch = morphism.apply(space, arch, m)
        assert space.key(child_arch) != space.key(arch), m
        child = space.build(child_arch, SHAPE, 10)
        morphism.inherit(space, arch, parent, m, child, np.random.default_rng(7))
        got = child(x, training=False).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=m.describe())
        seen.add((m.kind, _kind(layers[m.layer])))
    return seen


@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
@pytest.mark.parametrize("name", sorted(ARCHS))
def test_every_operator_preserves_the_function(name, batch_norm):
    space = _space(batch_norm)
    arch = space.from_description({"layers": ARCHS[name]})
    seen = _check_all(space, arch, np.random.default_rng(len(name)))
    assert ("widen", "conv") in seen and ("deepen", "conv") in seen


def test_the_fixed_architectures_cover_every_operator():
    space = _space()
    seen = set()
    for layers in ARCHS.values():
        arch = space.from_description({"layers": layers})
        for m in morphism.morphisms(space, arch, SHAPE[:2]):
            seen.add((m.kind, _kind(space.arch_to_actions(arch)[m.layer])))
    want = {
        ("widen", "conv"),
        ("widen", "fc"),
        ("deepen", "conv"),
        ("deepen", "pool"),
        ("deepen", "fc"),
        ("kernel", "conv"),
    }
    assert seen == want


def test_random_architectures_preserve_the_function():
    space = _space(batch_norm=True, max_layers=5)
    rng = np.random.default_rng(11)
    checked = 0
    while checked < 5:
        arch = space.sample(rng)
        if len(space.arch_to_actions(arch)) < 3:
            continue
        _check_all(space, arch, rng)
        checked += 1


def test_morphisms_return_only_valid_architectures():
    space = _space(max_layers=5)
    rng = np.random.default_rng(0)
    total = 0
    for _ in range(200):
        arch = space.sample(rng)
        for m in morphism.morphisms(space, arch, SHAPE[:2]):
            child = morphism.apply(space, arch, m)
            space.validate(child, repair=False)  # raises SpaceError when a rule is broken
            assert space.describe(space.validate(child)) == space.describe(child)
            total += 1
    assert total > 200


def test_the_space_rules_forbid_some_operators():
    space = _space(max_layers=6)
    found = morphism.morphisms(
        space, space.from_description({"layers": ARCHS["conv_fc_fc"]}), SHAPE[:2]
    )
    # fc_12 -> fc_8: the second may grow to the first's 12; a third fc breaks max_fc = 2
    assert morphism.Morphism("widen", 4, 12) in found
    assert not any(m.kind == "deepen" and m.layer in (3, 4) for m in found)
    # after pool_3_2, R = 3: conv_8_1 may not grow to 3 (kernel < R)
    assert not any(m.kind == "kernel" and m.layer == 2 for m in found)
    assert morphism.Morphism("kernel", 0, (3, 3)) in found
    # fc_8 -> fc_8: the first may grow, not the second (wider than the fc before it)
    found = morphism.morphisms(
        space, space.from_description({"layers": ARCHS["conv_pool_conv_fc_fc"]}), SHAPE[:2]
    )
    assert morphism.Morphism("widen", 4, 12) in found
    assert morphism.Morphism("widen", 5, 12) not in found
    # six layers = max_layers: no deepen
    assert not any(m.kind == "deepen" for m in found)
    with pytest.raises(SpaceError):
        morphism.apply(
            space,
            space.from_description({"layers": ARCHS["conv_pool_conv_fc_fc"]}),
            morphism.Morphism("deepen", 0),
        )


def test_widen_before_a_flatten_repeats_the_channel_pattern():
    space = _space()
    arch = space.from_description({"layers": ["conv_4_3", "pool_2_2", "fc_8"]})
    m = morphism.Morphism("widen", 0, 8)
    parent = space.build(arch, SHAPE, 10)
    child = space.build(morphism.apply(space, arch, m), SHAPE, 10)
    morphism.inherit(space, arch, parent, m, child, np.random.default_rng(0))
    old = parent.get_layer("layer0_conv").get_weights()[0]
    new = child.get_layer("layer0_conv").get_weights()[0]
    np.testing.assert_array_equal(new[..., :4], old)
    g = [next(i for i in range(4) if np.array_equal(new[..., k], old[..., i])) for k in range(8)]
    p_fc = parent.get_layer("layer2_fc").get_weights()[0].reshape(16, 4, 8)  # 4x4 positions
    c_fc = child.get_layer("layer2_fc").get_weights()[0].reshape(16, 8, 8)
    summed = np.zeros_like(p_fc)
    for k, i in enumerate(g):
        summed[:, i] += c_fc[:, k]
        np.testing.assert_allclose(c_fc[:, k], p_fc[:, i] / g.count(i), rtol=1e-6)
    np.testing.assert_allclose(summed, p_fc, rtol=1e-6, atol=1e-7)


def test_other_spaces_and_bad_morphisms_are_refused():
    import keras_tuner

    from kerasnas.search_spaces.hyperparameters import HyperParameterSpace

    hp = keras_tuner.HyperParameters()
    hp.Choice("units", [8, 16])
    other = HyperParameterSpace(hp)
    m = morphism.Morphism("widen", 0, 8)
    for call in (
        lambda: morphism.morphisms(other, {}, (8, 8)),
        lambda: morphism.apply(other, {}, m),
        lambda: morphism.inherit(other, {}, None, m, None, np.random.default_rng(0)),
    ):
        with pytest.raises(ValueError, match="'hyperparameters' space .*nasrl, metaqnn, cell"):
            call()
    space = _space()
    arch = space.from_description({"layers": ARCHS["conv_gap"]})
    with pytest.raises(ValueError, match="image_size 8"):
        morphism.morphisms(space, arch, (6, 6))
    with pytest.raises(ValueError, match="kind must be one of"):
        morphism.apply(space, arch, morphism.Morphism("skip", 1, 0))
    with pytest.raises(ValueError, match="cannot widen 'gap'"):
        morphism.apply(space, arch, morphism.Morphism("widen", 2, 8))
    with pytest.raises(ValueError, match="no layer 5"):
        morphism.apply(space, arch, morphism.Morphism("deepen", 5))
    assert morphism_metaqnn.KINDS == ("widen", "deepen", "kernel")


def test_even_kernels_deepen_and_grow_aligned():
    # 'same' padding at stride 1 pads k - 1, the smaller half first: identity tap (k-1)//2
    space = MetaQNNSpace(
        max_layers=5, conv_filters=(4, 8), conv_kernels=(2, 3, 4), pools=((2, 2),), batch_norm=True
    )
    arch = space.from_description({"layers": ["conv_4_2", "conv_4_3", "pool_2_2", "conv_4_2"]})
    seen = _check_all(space, arch, np.random.default_rng(5))
    assert seen == {("widen", "conv"), ("deepen", "conv"), ("deepen", "pool"), ("kernel", "conv")}
    assert "conv_4_2" in space.arch_to_actions(
        morphism.apply(space, arch, morphism.Morphism("deepen", 0))
    )
