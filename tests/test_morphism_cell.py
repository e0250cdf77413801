"""Network morphisms of the discrete cell space (kerasnas.estimation.morphism_cell, through
the dispatching kerasnas.estimation.morphism): the one operator, kernel growth of an edge's
op, keeps the parent's function in its child."""

from __future__ import annotations

import numpy as np
import pytest

from kerasnas.estimation import morphism
from kerasnas.search_spaces.cell_discrete import DiscreteCellSpace

SHAPE = (8, 8, 1)
OPS = (
    "skip_connect",
    "max_pool_3x3",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "conv_1x1",
    "conv_3x3",
)
# every growable op on a normal (stride 1) and a reduction edge, from the cell inputs
# (stride 2 in reductions) and from a node (stride 1)
ARCH = {
    "normal/node0/input0": 0,
    "normal/node0/op0": "sep_conv_3x3",
    "normal/node0/input1": 1,
    "normal/node0/op1": "dil_conv_3x3",
    "normal/node1/input0": 2,
    "normal/node1/op0": "conv_1x1",
    "normal/node1/input1": 0,
    "normal/node1/op1": "skip_connect",
    "reduce/node0/input0": 0,
    "reduce/node0/op0": "sep_conv_3x3",
    "reduce/node0/input1": 1,
    "reduce/node0/op1": "conv_1x1",
    "reduce/node1/input0": 2,
    "reduce/node1/op0": "conv_1x1",
    "reduce/node1/input1": 1,
    "reduce/node1/op1": "dil_conv_3x3",
}


def _space(form="eval", ops=OPS):
    return DiscreteCellSpace(init_channels=4, layers=3, nodes=2, ops=ops, form=form)


def _randomise(model, rng):
    """Random weights, batch norms with non-trivial statistics (variance in [0.5, 2])."""
    for v in model.weights:
        shape, leaf = tuple(v.shape), v.path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif leaf == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif leaf == "moving_mean":
            value = rng.normal(0, 0.5, shape)
        elif len(shape) == 1:
            value = rng.normal(0, 0.3, shape)
        else:
            value = rng.normal(0, 1.5 / np.sqrt(np.prod(shape[:-1])), shape)
        v.assign(value.astype(np.float32))


def _grown(space, arch, m):
    name = space.decisions()[m.layer][0]
    return name, arch[name], m.value


@pytest.mark.parametrize("form", ["eval", "search"])
def test_every_kernel_growth_preserves_the_function(form):
    space = _space(form)
    arch = space.validate(ARCH, repair=False)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    parent = space.build(arch, SHAPE, 10)
    _randomise(parent, rng)
    want = parent(x, training=False).numpy()
    assert np.abs(want).max() > 0.1
    found = morphism.morphisms(space, arch, SHAPE[:2])
    # the reduction's conv_1x1 on its input 1 (stride 2) is not offered: see the next test
    assert sorted(_grown(space, arch, m)[0] for m in found) == [
        "normal/node0/op0",
        "normal/node0/op1",
        "normal/node1/op0",
        "reduce/node0/op0",
        "reduce/node1/op0",
        "reduce/node1/op1",
    ]
    for m in found:
        child_arch = morphism.apply(space, arch, m)
        assert space.key(child_arch) != space.key(arch)
        child = space.build(child_arch, SHAPE, 10)
        morphism.inherit(space, arch, parent, m, child, rng)
        got = child(x, training=False).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5, err_msg=m.describe())


def test_a_strided_1x1_grown_to_3x3_would_not_preserve_the_function():
    # 'same' padding at stride 2 on 8 pixels pads nothing for 1x1 and one pixel after for
    # 3x3: the old tap lands off the grown kernel's centre, so the operator is withheld
    space = _space()
    arch = space.validate(ARCH, repair=False)
    index = space.index("reduce/node0/op1")
    m = morphism.Morphism("kernel", index, "conv_3x3")
    assert m not in morphism.morphisms(space, arch, SHAPE[:2])
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    parent = space.build(arch, SHAPE, 10)
    _randomise(parent, rng)
    child = space.build({**arch, "reduce/node0/op1": "conv_3x3"}, SHAPE, 10)
    morphism.inherit(space, arch, parent, m, child, rng)
    gap = np.abs(child(x, training=False).numpy() - parent(x, training=False).numpy()).max()
    assert gap > 1e-2


def test_only_listed_ops_and_op_decisions():
    space = _space(ops=("skip_connect", "sep_conv_3x3", "dil_conv_3x3", "dil_conv_5x5"))
    arch = {k: ("skip_connect" if v == "conv_1x1" else v) for k, v in ARCH.items()}
    found = morphism.morphisms(space, space.validate(arch, repair=False), SHAPE[:2])
    assert {m.value for m in found} == {"dil_conv_5x5"}  # no sep_conv_5x5 in the space
    with pytest.raises(ValueError, match="cannot grow"):
        morphism.apply(
            space,
            arch,
            morphism.Morphism("kernel", space.index("normal/node0/op0"), "sep_conv_5x5"),
        )
    with pytest.raises(ValueError, match="not an op decision"):
        morphism.apply(space, arch, morphism.Morphism("kernel", 0, "sep_conv_5x5"))
    with pytest.raises(ValueError, match="kind must be one of"):
        morphism.apply(space, arch, morphism.Morphism("widen", 1, 8))
