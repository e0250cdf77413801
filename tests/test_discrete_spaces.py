"""Tests for the discrete search spaces (nasrl, metaqnn, cell) and SpaceHyperModel."""

from __future__ import annotations

import hashlib
import json
import math

import keras
import keras_tuner
import numpy as np
import pytest

from kerasnas import data as data_lib
from kerasnas.genotype import Genotype
from kerasnas.multitrial.hypermodel import SpaceHyperModel
from kerasnas.resource import network_cost
from kerasnas.search_spaces import (
    DiscreteCellSpace,
    DiscreteSpace,
    MetaQNNSpace,
    NASRLSpace,
    SpaceError,
    get_space,
)

CLASSES = 10
SHAPES = [(8, 8, 1), (32, 32, 3)]
NAMES = ["nasrl", "metaqnn", "cell"]


def make_space(name: str, image_size: int = 8) -> DiscreteSpace:
    """Small spaces for fast tests."""
    if name == "nasrl":
        return NASRLSpace(max_layers=4, filters=(4, 8), strides=(1, 2, 3))
    if name == "metaqnn":
        return MetaQNNSpace(
            max_layers=5, image_size=image_size, conv_filters=(4, 8), fc_units=(16, 8)
        )
    return DiscreteCellSpace(init_channels=2, layers=3, nodes=2)


def samples(space: DiscreteSpace, n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


# -- registry and the Choice view ---------------------------------------------------------------


def test_get_space_and_config_round_trip():
    for name in NAMES:
        space = make_space(name)
        assert space.name == name
        again = get_space(**space.get_config())
        assert type(again) is type(space)
        assert again.get_config() == space.get_config()
        assert again.decisions() == space.decisions()
    assert isinstance(get_space("cell"), DiscreteCellSpace)
    with pytest.raises(ValueError, match="unknown search space 'enas'.*cell, metaqnn, nasrl"):
        get_space("enas")
    with pytest.raises(ValueError, match="nasrl"):
        get_space("nasrl", max_depth=3)


@pytest.mark.parametrize("name", NAMES)
def test_hyperparameters_match_decisions(name):
    space = make_space(name)
    hp = space.hyperparameters()
    assert [p.name for p in hp.space] == [n for n, _ in space.decisions()]
    for p, (_, values) in zip(hp.space, space.decisions(), strict=True):
        assert isinstance(p, keras_tuner.engine.hyperparameters.Choice)
        assert tuple(p.values) == tuple(values)
        assert p.ordered is False
        assert all(isinstance(v, (int, str)) for v in values)
    defaults = space.defaults()
    assert hp.values == defaults
    assert space.is_valid(defaults)
    assert space.from_hyperparameters(hp) == defaults
    assert space.from_hyperparameters({**hp.values, "tuner/epochs": 2}) == defaults


def test_decision_names():
    nasrl = NASRLSpace(max_layers=3)
    names = [n for n, _ in nasrl.decisions()]
    assert names == [
        "num_layers",
        "L0/filter_height",
        "L0/filter_width",
        "L0/filters",
        "L1/filter_height",
        "L1/filter_width",
        "L1/filters",
        "L1/skip0",
        "L2/filter_height",
        "L2/filter_width",
        "L2/filters",
        "L2/skip0",
        "L2/skip1",
    ]
    assert nasrl.values("num_layers") == (2, 3)
    assert nasrl.values("L2/skip1") == (0, 1)
    assert nasrl.values("L0/filter_height") == (1, 3, 5, 7)
    assert nasrl.values("L0/filters") == (24, 36, 48, 64)
    assert "L0/stride" in dict(NASRLSpace(max_layers=2, strides=(1, 2, 3)).decisions())
    cell = DiscreteCellSpace(nodes=3)
    d = dict(cell.decisions())
    assert d["normal/node0/input1"] == (0, 1)
    assert d["reduce/node2/input0"] == (0, 1, 2, 3)
    assert "none" not in d["normal/node1/op0"] and len(d) == 2 * 3 * 4
    assert [n for n, _ in MetaQNNSpace(max_layers=3).decisions()] == ["layer0", "layer1", "layer2"]


# -- building -----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=["8x8x1", "32x32x3"])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "cell" else n for n in NAMES]
)
def test_samples_build_logits(name, shape):
    space = make_space(name, image_size=shape[0])
    x = np.random.default_rng(1).normal(size=(2, *shape)).astype("float32")
    for i, arch in enumerate(samples(space, 50, seed=shape[0])):
        assert space.is_valid(arch)
        model = space.build(arch, shape, CLASSES)
        logits = keras.ops.convert_to_numpy(model(x, training=False))
        assert logits.shape == (2, CLASSES)
        assert np.isfinite(logits).all()
        if i < 2:  # the cost is that of the built model
            cost = network_cost(model)
            assert space.cost(arch, shape, CLASSES) == cost and cost.params > 0


def test_metaqnn_builds_on_larger_images_and_refuses_smaller():
    space = make_space("metaqnn", image_size=8)
    for arch in samples(space, 5):
        assert space.build(arch, (32, 32, 3), CLASSES).output_shape == (None, CLASSES)
    with pytest.raises(ValueError, match="image_size=4"):
        space.build(space.defaults(), (4, 4, 1), CLASSES)


def test_build_with_preprocessing():
    norm = keras.layers.Normalization(axis=-1, mean=[8.0], variance=[16.0])
    for name in NAMES:
        space = make_space(name)
        model = space.build(space.defaults(), (8, 8, 1), 3, preprocessing=norm)
        assert model.layers[1] is norm
        norm = keras.layers.Normalization(axis=-1, mean=[8.0], variance=[16.0])


# -- the papers' rules --------------------------------------------------------------------------


def nasrl_arch(space, layers):
    arch = {"num_layers": len(layers)}
    for n, (fh, fw, filters, stride, inputs) in enumerate(layers):
        arch.update({f"L{n}/filter_height": fh, f"L{n}/filter_width": fw})
        arch.update({f"L{n}/filters": filters, f"L{n}/stride": stride})
        arch.update({f"L{n}/skip{j}": int(j in inputs) for j in range(n)})
    return space.validate(arch, repair=False)


def test_nasrl_padding_concatenation_and_outputs():
    space = NASRLSpace(max_layers=4, filters=(4, 8, 16), strides=(1, 2, 3))
    # L0: stride 2 (4x4); L1: no input -> the image (8x8); L2 takes L0 and L1;
    # L3: stride 3 from L1 (3x3); unconsumed: L2 (8x8) and L3 (3x3) -> the classifier
    arch = nasrl_arch(
        space,
        [(3, 3, 4, 2, []), (1, 5, 8, 1, []), (3, 1, 16, 1, [0, 1]), (3, 3, 8, 3, [1])],
    )
    assert space.outputs(arch) == [2, 3]
    assert space.describe(arch)["layers"][2]["inputs"] == [0, 1]
    model = space.build(arch, (8, 8, 1), CLASSES)
    image = model.inputs[0]
    assert model.get_layer("L0_conv").input is image
    assert model.get_layer("L1_conv").input is image
    assert model.get_layer("L0_relu").output.shape[1:] == (4, 4, 4)
    pad = model.get_layer("L2_pad0")
    assert isinstance(pad, keras.layers.ZeroPadding2D)
    assert pad.output.shape[1:] == (8, 8, 4)
    assert model.get_layer("L2_concat").output.shape[1:] == (8, 8, 12)
    assert model.get_layer("L3_relu").output.shape[1:] == (3, 3, 8)
    assert model.get_layer("head_pad3").output.shape[1:] == (8, 8, 8)
    assert model.get_layer("head_concat").output.shape[1:] == (8, 8, 24)
    assert model.get_layer("classifier").input.shape[1:] == (24,)
    # the padding is zeros around the centred feature map
    probe = keras.Model(image, [model.get_layer("L0_relu").output, pad.output])
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 1)).astype("float32")
    inner, padded = (keras.ops.convert_to_numpy(t) for t in probe(x))
    np.testing.assert_allclose(padded[:, 2:6, 2:6], inner)
    border = padded.copy()
    border[:, 2:6, 2:6] = 0
    assert not border.any()


def test_nasrl_default_is_a_chain_and_depth_ignores_later_layers():
    space = NASRLSpace(max_layers=4, filters=(4, 8))
    default = space.defaults()
    assert [layer["inputs"] for layer in space.layers(default)] == [[], [0], [1], [2]]
    assert space.outputs(default) == [3]
    short = dict(default, num_layers=2)
    assert space.outputs(short) == [1]
    assert len(space.build(short, (8, 8, 1), CLASSES).layers) == 9  # image, 2 x 3, pool, dense
    assert "L3/filters" not in space.active_decisions(short)
    assert space.canonical({**short, "L3/filters": 8}) == space.canonical(short)
    chain = NASRLSpace(max_layers=3, skip_connections=False)
    assert not any("skip" in n for n, _ in chain.decisions())
    assert [layer["inputs"] for layer in chain.layers(chain.defaults())] == [[], [0], [1]]


def replay_metaqnn(space: MetaQNNSpace, layers: list[str]) -> None:
    """Checks a trajectory against the rules, tracking the representation size here."""
    size, prev, fc_run = space.image_size, "start", 0
    assert layers[-1] == "softmax" and layers.count("softmax") == 1
    assert len(layers) <= space.max_layers + 1
    for layer in layers[:-1]:
        kind, *args = layer.split("_")
        if kind == "conv":
            assert prev in ("start", "conv", "pool") and int(args[1]) < size
        elif kind == "pool":
            assert prev == "conv"  # in particular no pool after pool
            assert int(args[0]) < size
            size = math.ceil((size - int(args[0]) + 1) / int(args[1]))
        elif kind == "fc":
            fc_run = fc_run + 1 if prev == "fc" else 1
            assert fc_run <= space.max_fc
            if prev != "fc":
                assert prev in ("start", "conv", "pool") and size <= space.fc_max_size
        else:
            assert kind == "gap" and prev in ("start", "conv", "pool")
        assert prev != "gap"
        prev = kind


def test_metaqnn_samples_obey_the_rules():
    space = make_space("metaqnn")
    kinds = set()
    for arch in samples(space, 300):
        layers = space.describe(arch)["layers"]
        replay_metaqnn(space, layers)
        kinds.update(layer.split("_")[0] for layer in layers)
        states = space.states(arch)
        assert space.is_terminal(states[-1]) and not any(s.terminal for s in states[:-1])
    assert kinds == {"conv", "pool", "fc", "gap", "softmax"}


def test_metaqnn_mdp():
    space = make_space("metaqnn")
    s0 = space.initial_state()
    assert (s0.depth, s0.layer, s0.size, s0.bin) == (0, "start", 8, 8)
    start = space.actions(s0)
    assert start[-1] == "softmax"
    assert not any(a.startswith(("pool", "fc")) for a in start)  # no pool on the image; R = 8
    s1 = space.next_state(s0, "conv_4_5")
    pools = [a for a in space.actions(s1) if a.startswith("pool")]
    assert pools == ["pool_5_3", "pool_3_2", "pool_2_2"]
    s2 = space.next_state(s1, "pool_3_2")
    assert (s2.size, s2.bin) == (3, 1)
    after_pool = space.actions(s2)
    assert not any(a.startswith("pool") for a in after_pool)
    assert "fc_16" in after_pool and "conv_4_3" not in after_pool and "conv_4_1" in after_pool
    with pytest.raises(SpaceError, match="no pool after pool"):
        space.next_state(s2, "pool_2_2")
    s3 = space.next_state(s2, "fc_8")
    assert space.actions(s3) == ["fc_8", "softmax"]  # no wider FC after FC
    s4 = space.next_state(s3, "fc_8")
    assert space.actions(s4) == ["softmax"]  # at most 2 FC in a row
    gap = space.next_state(s1, "gap")
    assert space.actions(gap) == ["softmax"]
    end = space.next_state(s4, "softmax")
    assert space.is_terminal(end) and space.actions(end) == []
    assert end.key() == (5, "softmax", 1, 2)
    assert json.loads(json.dumps(s3)) == [3, "fc_8", 1, 1]  # states key JSON Q tables
    assert space.actions(json.loads(json.dumps(s3))) == space.actions(s3)
    arch = space.arch_from_actions(["conv_4_5", "pool_3_2", "fc_8", "fc_8", "softmax"])
    assert arch == {
        "layer0": "conv_4_5",
        "layer1": "pool_3_2",
        "layer2": "fc_8",
        "layer3": "fc_8",
        "layer4": "softmax",
    }
    assert space.arch_to_actions(arch)[-1] == "softmax"
    with pytest.raises(SpaceError) as err:
        space.arch_from_actions(["conv_4_5", "fc_8"])
    assert err.value.decision == "layer1" and "representation size" in str(err.value)
    # depth limit: only softmax after max_layers layers; no softmax decision needed
    deep = ["conv_4_3"] * space.max_layers
    state = s0
    for a in deep:
        state = space.next_state(state, a)
    assert space.actions(state) == ["softmax"]
    assert space.arch_to_actions(space.arch_from_actions(deep)) == [*deep, "softmax"]
    # every action of every reachable state is a value of that depth's decision
    frontier = {s0}
    for i in range(space.max_layers):
        values = set(space.values(f"layer{i}"))
        nxt = set()
        for state in frontier:
            assert set(space.actions(state)) <= values
            nxt.update(space.next_state(state, a) for a in space.actions(state) if a != "softmax")
        frontier = nxt


# -- validate -----------------------------------------------------------------------------------


def test_validate_fills_defaults_and_names_bad_decisions():
    for name in NAMES:
        space = make_space(name)
        assert space.validate({}) == space.defaults()
        with pytest.raises(SpaceError, match="unknown decision 'bogus'") as err:
            space.validate({"bogus": 1})
        assert err.value.decision == "bogus"
        first, values = space.decisions()[1]
        bad = 999 if isinstance(values[0], int) else "bogus_op"
        with pytest.raises(SpaceError, match=f"decision '{first}' must be one of") as err:
            space.validate({first: bad})
        assert err.value.decision == first
        assert isinstance(err.value, ValueError)
    nasrl = make_space("nasrl")
    arch = nasrl.validate({"L1/filters": np.int64(8), "L1/skip0": True})
    assert arch["L1/filters"] == 8 and type(arch["L1/filters"]) is int and arch["L1/skip0"] == 1
    with pytest.raises(SpaceError, match="'L1/filters'"):
        nasrl.validate({"L1/filters": "8"})


def test_metaqnn_validate_truncates_at_first_invalid_layer():
    space = make_space("metaqnn")
    broken = {
        "layer0": "conv_4_3",
        "layer1": "pool_2_2",
        "layer2": "pool_2_2",  # pool after pool
        "layer3": "conv_8_1",
        "layer4": "fc_8",
    }
    repaired = space.validate(broken)
    assert repaired["layer2"] == "softmax"
    assert space.describe(repaired)["layers"] == ["conv_4_3", "pool_2_2", "softmax"]
    assert space.validate(repaired) == repaired
    with pytest.raises(SpaceError, match="layer2.*no pool after pool") as err:
        space.validate(broken, repair=False)
    assert err.value.decision == "layer2"
    # fc_16 is a value of layer2 (reachable after conv, pool) but not after two convs at R = 8
    early_fc = {"layer0": "conv_4_1", "layer1": "conv_4_1", "layer2": "fc_16"}
    assert space.describe(space.validate(early_fc))["layers"] == ["conv_4_1", "conv_4_1", "softmax"]
    with pytest.raises(SpaceError, match="FC only from representation size <= 4"):
        space.validate(early_fc, repair=False)
    # a value no path reaches at that depth is not a value of the decision
    with pytest.raises(SpaceError, match="decision 'layer1' must be one of"):
        space.validate({"layer0": "conv_4_1", "layer1": "fc_16"})
    # every Choice assignment becomes a valid architecture
    rng = np.random.default_rng(3)
    for _ in range(200):
        raw = {n: v[int(rng.integers(len(v)))] for n, v in space.decisions()}
        fixed = space.validate(raw)
        assert space.is_valid(fixed)
        replay_metaqnn(space, space.describe(fixed)["layers"])
        for name in space.active_decisions(fixed)[:-1]:
            assert fixed[name] == raw[name]


def test_cell_validate_repairs_repeated_inputs():
    space = make_space("cell")
    arch = dict(space.defaults())
    arch["normal/node1/input0"] = arch["normal/node1/input1"] = 2
    with pytest.raises(SpaceError, match="normal/node1/input1.*must differ") as err:
        space.validate(arch, repair=False)
    assert err.value.decision == "normal/node1/input1"
    assert space.validate(arch)["normal/node1/input1"] == 0
    arch["reduce/node0/input0"] = arch["reduce/node0/input1"] = 0
    assert space.validate(arch)["reduce/node0/input1"] == 1
    rng = np.random.default_rng(4)
    for _ in range(100):
        raw = {n: v[int(rng.integers(len(v)))] for n, v in space.decisions()}
        assert space.is_valid(space.validate(raw))


# -- description, mutation, cost ----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_describe_round_trip(name):
    space = make_space(name)
    for arch in samples(space, 30, seed=5):
        d = space.describe(arch)
        assert json.loads(json.dumps(d)) == d
        back = space.from_description(json.loads(json.dumps(d)))
        assert back == space.canonical(arch)
        assert space.describe(back) == d
        assert space.key(back) == space.key(arch)
    with pytest.raises(SpaceError):
        space.from_description({"layers": "nope", "normal": 3})


def test_cell_describe_is_the_genotype():
    space = make_space("cell")
    arch = samples(space, 1, seed=6)[0]
    d = space.describe(arch)
    genotype = Genotype.from_dict(d)
    assert genotype == space.genotype(arch)
    assert all(len(node) == 2 for node in genotype.normal + genotype.reduce)
    assert space.from_description(d) == arch  # every decision is active: exact round trip
    assert space.from_genotype(genotype) == arch
    one_input = dict(d, normal=[d["normal"][0][:1], d["normal"][1]])
    with pytest.raises(SpaceError, match="normal node 0 has 1 input;"):
        space.from_description(one_input)


def raw_assignments(space: DiscreteSpace, n: int, seed: int) -> list[dict]:
    """Each decision uniformly, not repaired."""
    rng = np.random.default_rng(seed)
    return [
        {name: values[int(rng.integers(len(values)))] for name, values in space.decisions()}
        for _ in range(n)
    ]


def one_mutation(space: DiscreteSpace, parent: dict, child: dict) -> bool:
    """Whether `child` is `parent` with one decision active in both changed, decisions
    switched on or off by it aside, and another model."""
    both = set(space.active_decisions(parent)) & set(space.active_decisions(child))
    changed = [k for k in both if parent[k] != child[k]]
    return len(changed) == 1 and space.key(child) != space.key(parent)


@pytest.mark.parametrize("name", NAMES)
def test_mutate_changes_one_active_decision(name):
    space = make_space(name)
    rng = np.random.default_rng(7)
    raw = [space.validate(a) for a in raw_assignments(space, 60, seed=9)]
    for arch in samples(space, 40, seed=8) + raw:
        child = space.mutate(arch, rng)
        active = space.active_decisions(arch)
        changed = [k for k in arch if arch[k] != child[k]]
        # one active decision changes; the others only when it switches them on (new layers
        # get random values)
        assert len([k for k in changed if k in active]) == 1
        switched_on = set(space.active_decisions(child)) - set(active)
        assert set(changed) - set(active) <= switched_on
        assert space.is_valid(child)
        assert space.key(child) != space.key(arch)
        assert one_mutation(space, arch, child)


def test_mutate_is_seeded():
    space = make_space("nasrl")
    arch = space.defaults()
    a = space.mutate(arch, np.random.default_rng(9))
    b = space.mutate(arch, np.random.default_rng(9))
    assert a == b


# -- the same architecture ----------------------------------------------------------------------


def _without_names(config):
    if isinstance(config, dict):
        return {k: _without_names(v) for k, v in config.items() if k != "name"}
    if isinstance(config, (list, tuple)):
        return [_without_names(v) for v in config]
    return config


def structure(model: keras.Model) -> str:
    """A fingerprint of a functional model's graph, independent of layer names and creation
    order. Each layer call starts labelled (class, config without names); round by round it
    is relabelled with the labels of its inputs (in order; sorted for ``Add``, which
    commutes: the cell network sums a node's edges with it) and of its consumers (with the
    input position they read it at), until the partition stops changing. Consumers tell
    sharing apart (one tensor read twice vs two equal tensors). The fingerprint: the
    multiset of labels and the outputs' labels."""
    calls: dict[tuple, tuple] = {}

    def visit(tensor) -> tuple:
        op, index, _ = tensor._keras_history
        ident = (id(op), index)
        if ident not in calls:
            inputs = [visit(t) for t in op._inbound_nodes[index].input_tensors]
            config = _without_names(op.get_config())
            label = json.dumps([type(op).__name__, config], sort_keys=True, default=str)
            calls[ident] = (label, inputs, isinstance(op, keras.layers.Add))
        return ident

    outputs = [visit(t) for t in model.outputs]
    consumers = {c: [] for c in calls}
    for c, (_, inputs, commutes) in calls.items():
        for position, src in enumerate(inputs):
            consumers[src].append((c, None if commutes else position))
    label = {c: call[0] for c, call in calls.items()}
    while True:
        new = {}
        for c, (_, inputs, commutes) in calls.items():
            ins = [label[src] for src in inputs]
            outs = sorted(f"{label[d]}@{position}" for d, position in consumers[c])
            text = json.dumps([label[c], sorted(ins) if commutes else ins, outs])
            new[c] = hashlib.sha1(text.encode()).hexdigest()
        stable = len(set(new.values())) == len(set(label.values()))
        label = new
        if stable:
            return json.dumps([sorted(label.values()), [label[o] for o in outputs]])


TWO_OPS = ("skip_connect", "max_pool_3x3")
PROPERTY_SPACES = {
    "nasrl": lambda: NASRLSpace(
        max_layers=3, min_layers=1, filter_heights=(1, 3), filter_widths=(1,), filters=(2, 4)
    ),
    "metaqnn": lambda: MetaQNNSpace(
        max_layers=3, conv_filters=(2,), conv_kernels=(1, 3), pools=((2, 2),), fc_units=(4,)
    ),
    "cell": lambda: DiscreteCellSpace(init_channels=2, layers=3, nodes=2, ops=TWO_OPS),
}


def twins(space: DiscreteSpace, raw: dict, rng: np.random.Generator) -> list[dict]:
    """Raw assignments made to build the model of `raw`: another value for an inactive
    decision (nasrl: a layer past num_layers; metaqnn: a layer after softmax); for the cell,
    a node's two pairs swapped, a repeated input that repair turns back into `raw`'s, and
    (layers=3: the normal cell is only the first, whose inputs are twins) the normal cell's
    inputs 0 and 1 exchanged."""
    arch = space.validate(raw)
    out = []
    inactive = [n for n, _ in space.decisions() if n not in space.active_decisions(arch)]
    if inactive:
        name = inactive[int(rng.integers(len(inactive)))]
        other = [v for v in space.values(name) if v != raw[name]]
        if other:
            out.append({**raw, name: other[int(rng.integers(len(other)))]})
    if isinstance(space, DiscreteCellSpace):
        kind, i = ("normal", "reduce")[int(rng.integers(2))], int(rng.integers(space.nodes))
        node = f"{kind}/node{i}"
        swapped = dict(arch)
        for a, b in ((f"{node}/input0", f"{node}/input1"), (f"{node}/op0", f"{node}/op1")):
            swapped[a], swapped[b] = arch[b], arch[a]
        out.append(swapped)
        first = arch["normal/node0/input0"]  # node 0's inputs are 0 and 1: repair restores it
        out.append({**arch, "normal/node0/input1": first})
        out.append(
            {
                k: (1 - v if k.startswith("normal") and "/input" in k and v in (0, 1) else v)
                for k, v in arch.items()
            }
        )
    return out


@pytest.mark.parametrize("name", sorted(PROPERTY_SPACES))
def test_key_is_equal_exactly_when_the_models_have_the_same_structure(name):
    space = PROPERTY_SPACES[name]()
    rng = np.random.default_rng(12)
    archs = []
    for raw in raw_assignments(space, 6 if name == "cell" else 10, seed=13):
        archs += [raw, *twins(space, raw, rng)]
    if name == "nasrl":  # two layers on the image in the other order, the consumer rewired
        base = {"num_layers": 3, "L0/filter_height": 1, "L1/filter_height": 3}
        base.update({"L1/skip0": 0, "L2/skip0": 1, "L2/skip1": 0})
        archs += [base, {**base, "L0/filter_height": 3, "L1/filter_height": 1}]
        archs[-1].update({"L2/skip0": 0, "L2/skip1": 1})
    keys = [space.key(a) for a in archs]
    shapes = [structure(space.build(a, (8, 8, 1), 3)) for a in archs]
    same = 0
    for i in range(len(archs)):
        for j in range(i):
            assert (keys[i] == keys[j]) == (shapes[i] == shapes[j]), (archs[i], archs[j])
            same += keys[i] == keys[j] and archs[i] != archs[j]
    assert same >= 5 and len(set(keys)) >= 5  # both outcomes are exercised
    if name == "nasrl":
        assert keys[-1] == keys[-2] and archs[-1] != archs[-2]


def test_cell_key_ignores_pair_order_but_describe_keeps_it():
    space = make_space("cell")
    arch = samples(space, 1, seed=14)[0]
    swapped = dict(arch)
    for k in ("input", "op"):
        a, b = f"reduce/node1/{k}0", f"reduce/node1/{k}1"
        swapped[a], swapped[b] = arch[b], arch[a]
    assert space.key(swapped) == space.key(arch)
    assert space.describe(swapped) != space.describe(arch)  # genotype.json as listed
    assert space.canonical(swapped) == swapped  # canonical keeps the order


@pytest.mark.parametrize(
    "space, size",
    [
        (DiscreteCellSpace(init_channels=2, layers=3, nodes=1, ops=TWO_OPS), 12),
        (DiscreteCellSpace(init_channels=2, layers=4, nodes=1, ops=TWO_OPS), 16),
        (MetaQNNSpace(max_layers=2, conv_filters=(2,), conv_kernels=(1, 3), pools=((2, 2),)), None),
        (NASRLSpace(max_layers=2, min_layers=1, filter_heights=(1, 3), filter_widths=(1,)), None),
    ],
    ids=["cell3", "cell4", "metaqnn", "nasrl"],
)
def test_size_and_enumerate_count_distinct_architectures(space, size):
    archs = list(space.enumerate())
    keys = {space.key(a) for a in archs}
    assert len(keys) == len(archs) == space.size() == (size or len(archs))
    assert all(a == space.canonical(a) for a in archs)
    rng = np.random.default_rng(15)
    assert {space.key(space.sample(rng)) for _ in range(300)} <= keys
    assert {space.key(a) for a in raw_assignments(space, 300, seed=16)} <= keys


def test_apply_switches_on_random_layers_and_repairs_a_broken_value():
    nasrl = NASRLSpace(max_layers=4, min_layers=1, filters=(4, 8))
    short = nasrl.canonical({**nasrl.defaults(), "num_layers": 1})
    grown = [nasrl.apply(short, 0, 3, np.random.default_rng(s)) for s in range(20)]
    assert all(g["num_layers"] == 4 for g in grown)
    assert len({g["L3/filter_height"] for g in grown}) > 1  # not the defaults: random
    cell = make_space("cell")
    arch = cell.defaults()  # node 1: inputs 0 and 1
    index = cell.index("normal/node1/input0")
    child = cell.apply(arch, index, 1, np.random.default_rng(0))  # input0 = input1 = 1
    assert cell.is_valid(child) and child["normal/node1/input0"] == 1
    assert child["normal/node1/input1"] == 0  # repaired: moved to the first other input
    assert index in cell.mutable(arch) and 1 not in cell.moves(arch, index)
    metaqnn = make_space("metaqnn")
    arch = metaqnn.arch_from_actions(["conv_4_3", "softmax"])
    child = metaqnn.apply(arch, metaqnn.index("layer1"), 0, np.random.default_rng(0))
    assert metaqnn.is_valid(child) and len(metaqnn.arch_to_actions(child)) >= 3


# -- keras-tuner ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_space_hypermodel_random_search(tmp_path):
    # seeded: an earlier test in this process may have enabled op determinism, under which
    # unseeded random ops (Keras' shuffling, initialisers) raise
    keras.utils.set_random_seed(0)
    bundle = data_lib.load("digits", seed=0)
    x, y = bundle.numpy("train", limit=200)
    xv, yv = bundle.numpy("valid", limit=100)
    space = NASRLSpace(max_layers=3, filters=(4, 8))
    hypermodel = SpaceHyperModel(
        space, bundle.input_shape, bundle.num_classes, bundle.normalization_layer()
    )
    tuner = keras_tuner.RandomSearch(
        hypermodel,
        objective="val_accuracy",
        max_trials=2,
        seed=0,
        directory=str(tmp_path),
        project_name="nasrl",
        overwrite=True,
    )
    assert [p.name for p in tuner.oracle.hyperparameters.space] == [n for n, _ in space.decisions()]
    tuner.search(x, y, validation_data=(xv, yv), epochs=1, batch_size=50, verbose=0)
    trials = tuner.oracle.get_best_trials(2)
    assert len(trials) == 2 and all(t.score is not None for t in trials)
    arch = space.from_hyperparameters(trials[0].hyperparameters)
    assert space.is_valid(arch)
    model = tuner.get_best_models(1)[0]
    assert model(x[:3]).shape == (3, bundle.num_classes)


@pytest.mark.slow
def test_bayesian_oracle_searches_a_space(tmp_path):
    space = make_space("metaqnn")
    oracle = keras_tuner.oracles.BayesianOptimizationOracle(
        objective=keras_tuner.Objective("score", "max"),
        max_trials=6,
        num_initial_points=2,
        hyperparameters=space.hyperparameters(),
        seed=0,
    )
    oracle._set_project_dir(str(tmp_path), "bo")
    for i in range(5):  # 2 random points, then the Gaussian process proposes
        trial = oracle.create_trial(f"worker{i}")
        arch = space.from_hyperparameters(trial.hyperparameters)
        assert space.is_valid(arch)
        oracle.update_trial(trial.trial_id, {"score": float(len(space.arch_to_actions(arch)))})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_cell_search_form_builds_the_snas_child():
    space = DiscreteCellSpace(init_channels=2, layers=3, nodes=2, form="search")
    arch = samples(space, 1, seed=11)[0]
    model = space.build(arch, (8, 8, 1), CLASSES)
    assert model.name == "child" and model.output_shape == (None, CLASSES)
    with pytest.raises(ValueError, match="'none' is not a candidate"):
        DiscreteCellSpace(ops=("none", "skip_connect"))
    with pytest.raises(ValueError, match="DiscreteCellSpace: layers must be an int >= 3"):
        DiscreteCellSpace(layers=2)


def test_space_hypermodel_compiles_and_checks():
    space = make_space("metaqnn")
    hypermodel = SpaceHyperModel(space, (8, 8, 1), CLASSES, optimizer="sgd", learning_rate=0.1)
    hp = space.hyperparameters()
    hp.values["layer0"] = "conv_8_1"
    model = hypermodel.build(hp)
    assert model.optimizer.__class__.__name__ == "SGD"
    assert model.get_layer("layer0_conv").filters == 8
    # an adapted preprocessing layer is copied with its state, one copy per model
    norm = keras.layers.Normalization(axis=-1)
    norm.adapt(np.random.default_rng(0).normal(5.0, 2.0, size=(64, 8, 8, 1)).astype("float32"))
    hypermodel = SpaceHyperModel(space, (8, 8, 1), CLASSES, preprocessing=norm)
    first, second = hypermodel.build(space.hyperparameters()), hypermodel.build(hp)
    assert first.layers[1] is not norm and first.layers[1] is not second.layers[1]
    x = np.full((1, 8, 8, 1), 7.0, "float32")
    np.testing.assert_allclose(first.layers[1](x), norm(x), atol=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        SpaceHyperModel(space, (8, 8, 1), CLASSES, optimizer="rmsprop")
    with pytest.raises(ValueError, match="input_shape"):
        SpaceHyperModel(space, (8, 8), CLASSES)
