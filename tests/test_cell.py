"""Tests for kerasnas.search_spaces.cell: supernet, derivation, child and evaluation networks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kerasnas import ops
from kerasnas.genotype import DARTS_V2, Genotype
from kerasnas.layers import DropPath, MixedOp, arch_variables, mixed_ops
from kerasnas.search_spaces.cell import CellSpace, build_network, reduction_cells

CLASSES = 10
SPACE = CellSpace((8, 8, 1), CLASSES, init_channels=4, layers=3, nodes=2)

# hand-set choices: the normal cell deletes every edge into node 3 (an empty node)
CHOICES = {
    "normal": {
        (0, 2): "sep_conv_3x3",
        (1, 2): "none",
        (0, 3): "none",
        (1, 3): "none",
        (2, 3): "none",
    },
    "reduce": {
        (0, 2): "max_pool_3x3",
        (1, 2): "skip_connect",
        (0, 3): "none",
        (1, 3): "dil_conv_3x3",
        (2, 3): "sep_conv_5x5",
    },
}
EXPECTED_GENOTYPE = Genotype(
    normal=[[("sep_conv_3x3", 0)], []],
    normal_concat=[2, 3],
    reduce=[[("max_pool_3x3", 0), ("skip_connect", 1)], [("dil_conv_3x3", 1), ("sep_conv_5x5", 2)]],
    reduce_concat=[2, 3],
)


def _images(shape=(8, 8, 1), batch=2, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


def _set_choices(space, supernet, choices, seed=0):
    rng = np.random.default_rng(seed)
    for kind, edges in choices.items():
        for (src, dst), op in edges.items():
            logits = rng.uniform(-1.0, 1.0, len(space.ops))
            logits[space.ops.index(op)] = 3.0
            space.mixed_op(supernet, kind, src, dst).arch_logits.assign(logits.astype("float32"))


@pytest.fixture(scope="module")
def supernet():
    net = SPACE.build_supernet(seed=0)
    net(_images(seed=1), training=True)  # moves every batch norm's moving statistics
    return net


@pytest.fixture(scope="module")
def supernet_rgb():
    space = CellSpace((32, 32, 3), CLASSES, init_channels=4, layers=3, nodes=2)
    return space.build_supernet(seed=1)


@pytest.fixture(scope="module")
def evaluation_net():
    return build_network(DARTS_V2, CLASSES, (8, 8, 1), init_channels=4, layers=3)


@pytest.fixture(scope="module")
def evaluation_net_aux_drop():
    return build_network(
        DARTS_V2, CLASSES, (8, 8, 1), init_channels=4, layers=3, auxiliary=True, drop_path=0.3
    )


# -- supernet ----------------------------------------------------------------------------------


def test_reduction_cells_at_one_and_two_thirds():
    assert reduction_cells(3) == (1, 2)
    assert reduction_cells(8) == (2, 5)
    assert SPACE.reduction_cells == (1, 2)
    assert SPACE.first_cell("normal") == 0 and SPACE.first_cell("reduce") == 1
    assert SPACE.edges() == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


def test_supernet_output_shape_small_gray_images(supernet):
    assert tuple(supernet.output.shape) == (None, CLASSES)
    assert tuple(supernet(_images(batch=3), training=False).shape) == (3, CLASSES)
    assert tuple(supernet(_images(batch=2), training=True).shape) == (2, CLASSES)


def test_supernet_output_shape_rgb_images(supernet_rgb):
    y = supernet_rgb(_images((32, 32, 3), batch=2), training=False)
    assert tuple(y.shape) == (2, CLASSES)


@pytest.mark.parametrize("which,size", [("supernet", 8), ("supernet_rgb", 32)])
def test_reduction_cells_halve_spatial_size_and_double_channels(request, which, size):
    net = request.getfixturevalue(which)
    shapes = [tuple(net.get_layer(f"cell{i}_out").output.shape) for i in range(3)]
    nodes, c = SPACE.nodes, SPACE.init_channels
    assert shapes == [
        (None, size, size, nodes * c),
        (None, size // 2, size // 2, nodes * 2 * c),
        (None, size // 4, size // 4, nodes * 4 * c),
    ]


def test_cells_of_one_type_share_logits(supernet):
    edges = SPACE.edges()
    assert len(mixed_ops(supernet)) == SPACE.layers * len(edges)
    assert len(arch_variables(supernet)) == 2 * len(edges)
    for src, dst in edges:
        normal = supernet.get_layer(f"cell0_edge{src}_{dst}")
        reduce1 = supernet.get_layer(f"cell1_edge{src}_{dst}")
        reduce2 = supernet.get_layer(f"cell2_edge{src}_{dst}")
        assert reduce2.arch_logits is reduce1.arch_logits
        assert normal.arch_logits is not reduce1.arch_logits
        assert reduce2.owner() is reduce1
        assert normal.candidate_names == list(SPACE.ops)
    assert supernet.get_layer("cell1_edge0_2").strides == 2
    assert supernet.get_layer("cell1_edge2_3").strides == 1


def test_supernet_cells_use_search_form_ops(supernet):
    edge = supernet.get_layer("cell0_edge0_2")
    assert not edge.affine
    sep = edge.candidates[SPACE.ops.index("sep_conv_3x3")]
    assert sep.cost((8, 8, 4)).params == sum(int(np.prod(w.shape)) for w in sep.trainable_weights)
    assert all(
        not layer.trainable_weights
        for layer in sep._flatten_layers(include_self=False)
        if isinstance(layer, ops.BatchNorm)
    )


# -- derivation --------------------------------------------------------------------------------


def test_derive_argmax_picks_argmax_ops_and_drops_none_edges(supernet):
    _set_choices(SPACE, supernet, CHOICES)
    genotype = SPACE.derive(supernet, "argmax")
    assert genotype == EXPECTED_GENOTYPE
    assert genotype.normal[1] == ()  # a node whose every edge is `none`
    assert SPACE.derive(supernet) == genotype  # argmax is the default


def test_child_gives_exactly_the_supernet_output_at_inference(supernet):
    _set_choices(SPACE, supernet, CHOICES)
    genotype = SPACE.derive(supernet, "argmax")
    child = SPACE.build_child(genotype, supernet)
    names = {layer.name for layer in child.layers}
    assert not mixed_ops(child)
    assert {"cell0_edge0_2_sep_conv_3x3", "cell1_edge1_2_skip_connect", "cell0_node3_zero"} <= names
    assert not any(name.startswith("cell0_edge1_2") for name in names)  # deleted edge
    assert isinstance(child.get_layer("cell1_edge1_2_skip_connect"), ops.FactorizedReduce)
    x = _images(batch=3, seed=5)
    expected = _np(supernet(x, training=False))
    got = _np(child(x, training=False))
    assert np.abs(got - expected).max() < 1e-5
    np.testing.assert_array_equal(
        child.get_layer("classifier").get_weights()[0],
        supernet.get_layer("classifier").get_weights()[0],
    )


def test_child_of_random_logits_matches_supernet(supernet):
    rng = np.random.default_rng(3)
    for v in arch_variables(supernet):
        v.assign(rng.normal(size=v.shape).astype("float32"))
    child = SPACE.build_child(SPACE.derive(supernet), supernet)
    x = _images(batch=2, seed=6)
    diff = np.abs(_np(child(x, training=False)) - _np(supernet(x, training=False))).max()
    assert diff < 1e-5


def test_derive_top2_keeps_two_strongest_non_none_inputs(supernet):
    rng = np.random.default_rng(4)
    none = SPACE.ops.index("none")
    expected = {}
    for kind in ("normal", "reduce"):
        cell = []
        for dst in range(2, SPACE.nodes + 2):
            scored = []
            for src in range(dst):
                logits = rng.normal(size=len(SPACE.ops))
                logits[none] = 5.0  # `none` is always the most likely op
                SPACE.mixed_op(supernet, kind, src, dst).arch_logits.assign(
                    logits.astype("float32")
                )
                masked = np.where(np.arange(len(logits)) == none, -np.inf, logits)
                scored.append((masked.max(), src, SPACE.ops[int(np.argmax(masked))]))
            scored.sort(key=lambda t: -t[0])
            cell.append(tuple((op, src) for _, src, op in scored[:2]))
        expected[kind] = tuple(cell)
    genotype = SPACE.derive(supernet, "top2")
    assert genotype.normal == expected["normal"]
    assert genotype.reduce == expected["reduce"]
    for kind in ("normal", "reduce"):
        for node in genotype.cell(kind):
            assert len(node) == 2
            assert len({src for _, src in node}) == 2
            assert all(op != "none" for op, _ in node)
    assert SPACE.derive(supernet, "argmax").normal == ((), ())  # argmax deletes them all


def test_derive_rejects_unknown_rule(supernet):
    with pytest.raises(ValueError, match="rule"):
        SPACE.derive(supernet, "top3")


def test_build_child_rejects_wrong_number_of_nodes():
    assert DARTS_V2.nodes != SPACE.nodes
    with pytest.raises(ValueError, match="nodes"):
        SPACE.build_child(DARTS_V2)


def test_build_child_rejects_wrong_concat():
    genotype = Genotype(
        normal=[[("sep_conv_3x3", 0)], [("skip_connect", 1)]],
        normal_concat=[3],
        reduce=[[("sep_conv_3x3", 0)], [("skip_connect", 1)]],
        reduce_concat=[2, 3],
    )
    with pytest.raises(ValueError, match="normal_concat"):
        SPACE.build_child(genotype)


# -- evaluation network ------------------------------------------------------------------------


def test_build_network_gives_logits(evaluation_net):
    assert tuple(evaluation_net.output.shape) == (None, CLASSES)
    y = _np(evaluation_net(_images(batch=2), training=False))
    assert y.shape == (2, CLASSES) and np.all(np.isfinite(y))
    assert not any(isinstance(layer, DropPath) for layer in evaluation_net.layers)
    assert not mixed_ops(evaluation_net)
    # evaluation form: affine batch norm, pooling without batch norm
    pool = evaluation_net.get_layer("cell1_edge0_2_max_pool_3x3")
    assert not any(isinstance(layer, ops.BatchNorm) for layer in pool._flatten_layers())
    sep = evaluation_net.get_layer("cell0_edge0_2_sep_conv_3x3")
    assert sep.affine and len(sep.trainable_weights) == 8
    shapes = [tuple(evaluation_net.get_layer(f"cell{i}_out").output.shape) for i in range(3)]
    assert shapes == [(None, 8, 8, 16), (None, 4, 4, 32), (None, 2, 2, 64)]


def test_build_network_auxiliary_gives_logits_and_aux(evaluation_net_aux_drop):
    outputs = evaluation_net_aux_drop(_images(batch=2), training=False)
    assert isinstance(outputs, (list, tuple)) and len(outputs) == 2
    assert [tuple(o.shape) for o in outputs] == [(2, CLASSES), (2, CLASSES)]


def test_drop_path_changes_training_outputs_only(evaluation_net_aux_drop):
    net = evaluation_net_aux_drop
    drops = [layer for layer in net.layers if isinstance(layer, DropPath)]
    # one per non-identity op: 6 in the normal cell, 5 in each of the 2 reduction cells
    assert len(drops) == 6 + 5 + 5
    x = _images(batch=4, seed=2)

    def logits(training):
        return _np(net(x, training=training)[0])

    inference_with_drop = logits(False)
    for d in drops:
        d.rate.assign(0.0)
    np.testing.assert_array_equal(logits(False), inference_with_drop)
    np.testing.assert_allclose(logits(True), logits(True), rtol=1e-6, atol=1e-6)
    for d in drops:
        d.rate.assign(0.3)
    a, b = logits(True), logits(True)
    assert np.abs(a - b).max() > 1e-4


def test_build_network_rejects_bad_arguments():
    with pytest.raises(ValueError, match="drop_path"):
        build_network(DARTS_V2, CLASSES, (8, 8, 1), init_channels=4, layers=3, drop_path=1.0)
    with pytest.raises(ValueError, match="layers"):
        build_network(DARTS_V2, CLASSES, (8, 8, 1), init_channels=4, layers=2)
    with pytest.raises(ValueError, match="genotype"):
        build_network(DARTS_V2.to_dict(), CLASSES, (8, 8, 1), init_channels=4, layers=3)


# -- CellSpace validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"layers": 2}, "layers"),
        ({"ops": ("sep_conv_3x3", "no_such_op")}, "no_such_op"),
        ({"ops": ()}, "ops"),
        ({"ops": ("sep_conv_3x3", "sep_conv_3x3")}, "ops"),
        ({"input_shape": (8, 8)}, "input_shape"),
        ({"input_shape": (8, 0, 1)}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"init_channels": 1}, "init_channels"),
        ({"nodes": 0}, "nodes"),
    ],
)
def test_cell_space_rejects_bad_fields(kwargs, field):
    args = {"input_shape": (8, 8, 1), "num_classes": CLASSES, "layers": 3, "nodes": 2, **kwargs}
    with pytest.raises(ValueError, match=field):
        CellSpace(**args)


def test_mixed_op_lookup_returns_owner_of_edge(supernet):
    layer = SPACE.mixed_op(supernet, "reduce", 1, 3)
    assert isinstance(layer, MixedOp)
    assert layer.name == "cell1_edge1_3"
