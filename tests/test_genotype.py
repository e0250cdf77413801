"""Tests for kerasnas.genotype."""

from __future__ import annotations

import collections
import copy
import dataclasses
import json
import os
from typing import Any

import pytest

from kerasnas.genotype import DARTS_V1, DARTS_V2, Genotype, GenotypeError

V2_NORMAL = [
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("skip_connect", 0),
    ("dil_conv_3x3", 2),
]
V2_REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("max_pool_3x3", 1),
]
V1_NORMAL = [
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("skip_connect", 0),
    ("sep_conv_3x3", 1),
    ("skip_connect", 0),
    ("sep_conv_3x3", 1),
    ("sep_conv_3x3", 0),
    ("skip_connect", 2),
]
V1_REDUCE = [
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 1),
    ("skip_connect", 2),
    ("max_pool_3x3", 0),
    ("max_pool_3x3", 0),
    ("skip_connect", 2),
    ("skip_connect", 2),
    ("avg_pool_3x3", 0),
]


def _flat(cell: tuple) -> list[tuple[str, int]]:
    return [pair for node in cell for pair in node]


def _snas_dict() -> dict[str, Any]:
    """A per-node genotype with a 3-input node, an empty node and a 1-input node."""
    return {
        "normal": [
            [["sep_conv_3x3", 0], ["skip_connect", 1], ["dil_conv_5x5", 0]],
            [],
            [["sep_conv_5x5", 2], ["max_pool_3x3", 3]],
        ],
        "normal_concat": [2, 4],
        "reduce": [[["max_pool_3x3", 0]], [["avg_pool_3x3", 2], ["skip_connect", 1]]],
        "reduce_concat": [2, 3],
    }


# -- published genotypes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("genotype", "normal", "reduce"),
    [(DARTS_V1, V1_NORMAL, V1_REDUCE), (DARTS_V2, V2_NORMAL, V2_REDUCE)],
    ids=["V1", "V2"],
)
def test_published_genotypes(genotype: Genotype, normal: list, reduce: list) -> None:
    assert genotype.nodes == 4
    for kind, expected in (("normal", normal), ("reduce", reduce)):
        cell = genotype.cell(kind)
        assert len(cell) == 4
        assert all(len(node) == 2 for node in cell)
        assert _flat(cell) == expected
        assert genotype.concat(kind) == (2, 3, 4, 5)


def test_published_genotypes_validate_against_the_registry() -> None:
    for genotype in (DARTS_V1, DARTS_V2):
        assert Genotype.from_dict(genotype.to_dict()) == genotype


# -- construction and normalisation --------------------------------------------------------------


def test_constructor_normalises_lists_to_tuples() -> None:
    g = Genotype.from_dict(_snas_dict())
    assert g.normal == (
        (("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 0)),
        (),
        (("sep_conv_5x5", 2), ("max_pool_3x3", 3)),
    )
    assert g.normal_concat == (2, 4)
    assert isinstance(g.reduce[1][0], tuple)
    assert g.nodes == 3
    assert len(g.reduce) == 2  # the two cell types need not have the same node count


def test_empty_node_allowed_and_round_trips() -> None:
    g = Genotype(
        normal=[[("sep_conv_3x3", 0)], []],
        normal_concat=[2, 3],
        reduce=[[]],
        reduce_concat=[2],
    )
    assert g.normal[1] == ()
    assert g.reduce == ((),)
    assert Genotype.from_json(g.to_json()) == g


def test_constructor_accepts_darts_flat_form() -> None:
    g = Genotype(
        normal=V2_NORMAL, normal_concat=range(2, 6), reduce=V2_REDUCE, reduce_concat=[2, 3, 4, 5]
    )
    assert g == DARTS_V2


def test_immutable_and_hashable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DARTS_V2.normal = ()  # type: ignore[misc]
    twin = Genotype.from_dict(copy.deepcopy(DARTS_V2.to_dict()))
    assert twin == DARTS_V2 and twin is not DARTS_V2
    assert hash(twin) == hash(DARTS_V2)
    assert len({DARTS_V1, DARTS_V2, twin}) == 2
    assert DARTS_V1 != DARTS_V2


def test_cell_and_concat_accessors() -> None:
    assert DARTS_V2.cell("normal") is DARTS_V2.normal
    assert DARTS_V2.cell("reduce") is DARTS_V2.reduce
    assert DARTS_V2.concat("reduce") == DARTS_V2.reduce_concat
    with pytest.raises(ValueError, match="reduction"):
        DARTS_V2.cell("reduction")


def test_edges() -> None:
    assert DARTS_V2.edges("normal") == [
        (0, 2, "sep_conv_3x3"),
        (1, 2, "sep_conv_3x3"),
        (0, 3, "sep_conv_3x3"),
        (1, 3, "sep_conv_3x3"),
        (1, 4, "sep_conv_3x3"),
        (0, 4, "skip_connect"),
        (0, 5, "skip_connect"),
        (2, 5, "dil_conv_3x3"),
    ]
    g = Genotype.from_dict(_snas_dict())
    assert g.edges("normal") == [
        (0, 2, "sep_conv_3x3"),
        (1, 2, "skip_connect"),
        (0, 2, "dil_conv_5x5"),
        (2, 4, "sep_conv_5x5"),
        (3, 4, "max_pool_3x3"),
    ]
    assert g.edges("reduce") == [
        (0, 2, "max_pool_3x3"),
        (2, 3, "avg_pool_3x3"),
        (1, 3, "skip_connect"),
    ]


# -- serialisation -------------------------------------------------------------------------------


def test_to_dict_layout() -> None:
    d = DARTS_V2.to_dict()
    assert d["normal"][0] == [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]
    assert d["normal_concat"] == [2, 3, 4, 5]
    assert list(d) == ["normal", "normal_concat", "reduce", "reduce_concat"]
    json.dumps(d)  # plain JSON types only


@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2], ids=["V1", "V2"])
def test_json_round_trip(genotype: Genotype) -> None:
    text = genotype.to_json()
    assert json.loads(text) == genotype.to_dict()
    assert Genotype.from_json(text) == genotype


def test_json_round_trip_snas() -> None:
    g = Genotype.from_dict(_snas_dict())
    assert Genotype.from_json(g.to_json()) == g
    assert g.to_dict() == _snas_dict()


def test_save_load(tmp_path: Any) -> None:
    path = tmp_path / "sub" / "genotype.json"
    DARTS_V2.save(path)
    assert Genotype.load(path) == DARTS_V2
    assert Genotype.load(str(path)) == DARTS_V2
    assert os.listdir(path.parent) == ["genotype.json"]  # no temp file left behind
    # Overwriting works and is atomic (replace, not append).
    DARTS_V1.save(path)
    assert Genotype.load(path) == DARTS_V1


def test_darts_flat_form_in_json(tmp_path: Any) -> None:
    flat = {
        "normal": [list(p) for p in V2_NORMAL],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [list(p) for p in V2_REDUCE],
        "reduce_concat": [2, 3, 4, 5],
    }
    assert Genotype.from_dict(flat) == DARTS_V2
    assert Genotype.from_json(json.dumps(flat)) == DARTS_V2
    path = tmp_path / "darts.json"
    path.write_text(json.dumps(flat))
    assert Genotype.load(path) == DARTS_V2
    # One cell flat, the other per-node.
    mixed = dict(flat, reduce=DARTS_V2.to_dict()["reduce"])
    assert Genotype.from_dict(mixed) == DARTS_V2


def test_allowed_ops_restricts_and_extends() -> None:
    d = DARTS_V2.to_dict()
    with pytest.raises(GenotypeError, match=r"normal node 2, pair 1: unknown op 'skip_connect'"):
        Genotype.from_dict(d, allowed_ops={"sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3"})
    custom = copy.deepcopy(d)
    custom["normal"][0][0][0] = "my_op"
    g = Genotype.from_dict(
        custom,
        allowed_ops={"my_op", "sep_conv_3x3", "skip_connect", "dil_conv_3x3", "max_pool_3x3"},
    )
    assert g.normal[0][0] == ("my_op", 0)


def test_none_op_rejected_unless_allowed() -> None:
    d = _snas_dict()
    d["normal"][0][1][0] = "none"
    with pytest.raises(GenotypeError, match=r"normal node 0, pair 1: op 'none' is not allowed"):
        Genotype.from_dict(d)
    ops = {
        "none",
        "sep_conv_3x3",
        "dil_conv_5x5",
        "sep_conv_5x5",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
    }
    assert Genotype.from_dict(d, allowed_ops=ops).normal[0][1] == ("none", 1)


# -- DARTS repr parsing --------------------------------------------------------------------------

_V2_REPR = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=range(2, 6), reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_from_darts_repr_with_range() -> None:
    assert Genotype.from_darts(_V2_REPR) == DARTS_V2


def test_from_darts_assignment_line_and_list_range() -> None:
    text = "DARTS = " + _V2_REPR.replace(
        "normal_concat=range(2, 6)", "normal_concat=list(range(2, 6))"
    )
    assert Genotype.from_darts(text) == DARTS_V2


def test_from_darts_positional_arguments() -> None:
    text = f"Genotype({V2_NORMAL!r}, [2, 3, 4, 5], {V2_REDUCE!r}, range(2, 6))"
    assert Genotype.from_darts(text) == DARTS_V2


def test_from_darts_namedtuple_object() -> None:
    DartsGenotype = collections.namedtuple("Genotype", "normal normal_concat reduce reduce_concat")
    obj = DartsGenotype(V2_NORMAL, range(2, 6), V2_REDUCE, range(2, 6))
    assert Genotype.from_darts(obj) == DARTS_V2
    assert Genotype.from_darts(DARTS_V2) is DARTS_V2


def test_from_darts_never_evaluates(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    evil = _V2_REPR.replace(
        "normal_concat=range(2, 6)", f"normal_concat=open({str(marker)!r}, 'w')"
    )
    with pytest.raises(GenotypeError, match="normal_concat: unsupported expression"):
        Genotype.from_darts(evil)
    assert not marker.exists()
    with pytest.raises(GenotypeError, match="unsupported expression"):
        Genotype.from_darts(_V2_REPR.replace("range(2, 6)", "__import__('os').getcwd()"))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Genotype(normal=[", "cannot parse DARTS genotype"),
        ("x = 1; y = 2", "expected one 'Genotype(...)' expression"),
        ("[1, 2]", "expected a 'Genotype(...)' call"),
        (_V2_REPR.replace("reduce_concat=", "reduce_cat="), "unexpected argument 'reduce_cat'"),
        (
            _V2_REPR.replace("reduce_concat=range(2, 6))", "reduce_concat=range(2, 7))"),
            "reduce_concat, item 4: node index 6",
        ),
        (
            _V2_REPR.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"),
            "normal node 3, pair 1 (flat item 7): input index 5 out of range 0..4",
        ),
    ],
    ids=["syntax", "two-statements", "not-a-call", "bad-keyword", "bad-range", "bad-index"],
)
def test_from_darts_errors(text: str, fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        Genotype.from_darts(text)
    assert fragment in str(info.value)


def test_from_darts_rejects_other_objects() -> None:
    with pytest.raises(GenotypeError, match="cannot read a DARTS genotype from int"):
        Genotype.from_darts(42)


# -- validation errors ---------------------------------------------------------------------------


def _mutated(path: tuple, value: Any) -> dict[str, Any]:
    d = copy.deepcopy(DARTS_V2.to_dict())
    target: Any = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


def _without(key: str) -> dict[str, Any]:
    d = DARTS_V2.to_dict()
    del d[key]
    return d


ERROR_CASES = [
    pytest.param(
        _mutated(("normal", 2, 1, 0), "sep_conv_9x9"),
        "normal node 2, pair 1: unknown op 'sep_conv_9x9' (known: ",
        id="unknown-op",
    ),
    pytest.param(
        _mutated(("reduce", 0, 0, 1), 3),
        "reduce node 0, pair 0: input index 3 out of range 0..1",
        id="index-too-large",
    ),
    pytest.param(
        _mutated(("normal", 1, 0, 1), -1),
        "normal node 1, pair 0: input index -1 out of range 0..2",
        id="index-negative",
    ),
    pytest.param(
        _mutated(("normal", 3, 0, 1), "2"),
        "normal node 3, pair 0: input index must be an int",
        id="index-str",
    ),
    pytest.param(
        _mutated(("normal", 3, 0, 1), True),
        "normal node 3, pair 0: input index must be an int",
        id="index-bool",
    ),
    pytest.param(
        _mutated(("normal", 3, 0, 1), 1.0),
        "normal node 3, pair 0: input index must be an int",
        id="index-float",
    ),
    pytest.param(
        _mutated(("reduce", 1, 1, 0), 7),
        "reduce node 1, pair 1: op name must be a str",
        id="op-int",
    ),
    pytest.param(
        _mutated(("reduce", 1, 1), ["skip_connect", 1, 2]),
        "reduce node 1, pair 1: expected an [op, input] pair",
        id="pair-3-items",
    ),
    pytest.param(
        _mutated(("normal",), "sep_conv_3x3"),
        "normal: expected a list of nodes, got str",
        id="cell-str",
    ),
    pytest.param(
        _mutated(("reduce", 2), 5),
        "reduce node 2: expected a list of [op, input] pairs",
        id="node-int",
    ),
    pytest.param(
        _mutated(("normal", 1), ["skip_connect", 0]),
        "normal node 1: expected a list of [op, input] pairs, got the single pair",
        id="mixed-forms",
    ),
    pytest.param(
        _mutated(("normal",), [list(p) for p in V2_NORMAL[:7]]),
        "normal: DARTS flat form has 7 pairs; expected an even number",
        id="odd-flat",
    ),
    pytest.param(
        _mutated(
            ("normal",),
            [list(p) for p in V2_NORMAL[:6]] + [["sep_conv_9x9", 2], ["skip_connect", 0]],
        ),
        "normal node 3, pair 0 (flat item 6): unknown op 'sep_conv_9x9'",
        id="flat-unknown-op",
    ),
    pytest.param(
        _mutated(("normal_concat",), [2, 3, 6]),
        "normal_concat, item 2: node index 6 out of range 2..5",
        id="concat-too-large",
    ),
    pytest.param(
        _mutated(("reduce_concat",), [1, 2]),
        "reduce_concat, item 0: node index 1 out of range 2..5",
        id="concat-input-node",
    ),
    pytest.param(
        _mutated(("reduce_concat",), [2, 2]),
        "reduce_concat, item 1: node index 2 listed twice",
        id="concat-dup",
    ),
    pytest.param(
        _mutated(("normal_concat",), []),
        "normal_concat: must name at least one node",
        id="concat-empty",
    ),
    pytest.param(
        _mutated(("normal_concat",), "2345"),
        "normal_concat: expected a list of node indices",
        id="concat-str",
    ),
    pytest.param(
        _mutated(("normal_concat",), [2, "3"]),
        "normal_concat, item 1: node index must be an int",
        id="concat-item-str",
    ),
    pytest.param(_without("reduce_concat"), "missing key(s): reduce_concat", id="missing-key"),
    pytest.param(
        dict(DARTS_V2.to_dict(), normal_concats=[2]),
        "unknown key(s): normal_concats",
        id="unknown-key",
    ),
    pytest.param(
        [1, 2],
        "expected an object with keys normal, normal_concat, reduce, reduce_concat, got list",
        id="not-a-dict",
    ),
]


@pytest.mark.parametrize(("data", "fragment"), ERROR_CASES)
def test_from_dict_errors(data: Any, fragment: str) -> None:
    with pytest.raises(GenotypeError) as info:
        Genotype.from_dict(data)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


@pytest.mark.parametrize(("data", "fragment"), ERROR_CASES)
def test_load_errors_name_the_file(tmp_path: Any, data: Any, fragment: str) -> None:
    path = tmp_path / "genotype.json"
    path.write_text(json.dumps(data))
    with pytest.raises(GenotypeError) as info:
        Genotype.load(path)
    assert str(info.value).startswith(f"{path}: ")
    assert fragment in str(info.value)


def test_genotype_error_is_value_error() -> None:
    assert issubclass(GenotypeError, ValueError)


def test_invalid_json_names_file_and_line(tmp_path: Any) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "normal": [],\n  "normal_concat": [2,,3]\n}\n')
    with pytest.raises(GenotypeError) as info:
        Genotype.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: invalid JSON at line 3")
    assert "\n" not in message


def test_invalid_json_without_file() -> None:
    with pytest.raises(GenotypeError, match=r"^invalid JSON at line 1, column 1"):
        Genotype.from_json("not json")
    with pytest.raises(GenotypeError, match=r"^config\.json: missing key"):
        Genotype.from_json("{}", source="config.json")


def test_load_non_utf8_names_file(tmp_path: Any) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"normal": "\xff"}')
    with pytest.raises(GenotypeError, match="latin1.json: not UTF-8"):
        Genotype.load(path)


def test_load_missing_file_raises_os_error(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="nope.json"):
        Genotype.load(tmp_path / "nope.json")


def test_constructor_validates_too() -> None:
    with pytest.raises(
        GenotypeError, match="normal node 0, pair 0: input index 2 out of range 0..1"
    ):
        Genotype(
            normal=[[("sep_conv_3x3", 2)]],
            normal_concat=[2],
            reduce=[[("max_pool_3x3", 0)]],
            reduce_concat=[2],
        )
    with pytest.raises(GenotypeError, match="reduce_concat, item 0: node index 2 out of range"):
        Genotype(normal=[[("sep_conv_3x3", 0)]], normal_concat=[2], reduce=[], reduce_concat=[2])
