"""Genotype: an immutable, JSON-serialisable description of a DARTS/SNAS cell architecture.

A cell is a DAG with two input nodes (index 0: output of the cell two back, 1: previous cell)
and N intermediate nodes (DAG indices 2..N+1). Intermediate node k (0-based, DAG index k+2)
sums the ops on its incoming edges, each given as an ``(op_name, input_index)`` pair with
``0 <= input_index <= k+1``. The cell output concatenates the nodes listed in ``concat``.

Two layouts are read:

* per-node (what ``to_dict`` writes):
  ``normal = [[["sep_conv_3x3", 0], ["skip_connect", 1]], ...]``;
  a node may have any number of pairs, including none (SNAS can delete every incoming edge);
* DARTS flat form: ``normal = [["sep_conv_3x3", 0], ["skip_connect", 1], ...]``, two pairs per
  node, as in the published DARTS genotypes.

Error messages name the offending entry, e.g. ``reduce node 0, pair 0: input index 3 out of
range 0..1``; node and pair numbers are 0-based.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from kerasnas.errors import SettingError
from kerasnas.io import write_text
from kerasnas.wording import count

__all__ = ["DARTS_V1", "DARTS_V2", "Genotype", "GenotypeError"]

Pair = tuple[str, int]
Cell = tuple[tuple[Pair, ...], ...]

KINDS: tuple[str, ...] = ("normal", "reduce")
_KEYS: tuple[str, ...] = ("normal", "normal_concat", "reduce", "reduce_concat")
_NONE_OP = "none"


class GenotypeError(SettingError):
    """Invalid genotype input; the one-line message names the offending entry."""


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_seq(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _looks_like_pair(item: Any) -> bool:
    return _is_seq(item) and len(item) == 2 and isinstance(item[0], str)


def _allowed_set(allowed_ops: Iterable[str] | None) -> frozenset[str]:
    """Ops a genotype may use: the given ones, or every registered op except 'none'."""
    if allowed_ops is None:
        from kerasnas.ops import registered_ops  # lazy: the op registry imports keras

        return frozenset(op for op in registered_ops() if op != _NONE_OP)
    if isinstance(allowed_ops, str):
        raise TypeError("allowed_ops must be an iterable of op names, not a single str")
    return frozenset(allowed_ops)


def _normalise_cell(kind: str, value: Any, allowed: frozenset[str]) -> Cell:
    """Validates one cell (per-node or DARTS flat form) and returns it as nested tuples."""
    if not _is_seq(value):
        raise GenotypeError(f"{kind}: expected a list of nodes, got {_type_name(value)}")
    flat = len(value) > 0 and all(_looks_like_pair(item) for item in value)
    if flat:
        if len(value) % 2:
            raise GenotypeError(
                f"{kind}: DARTS flat form has {count(len(value), 'pair')}; expected an even number "
                "(two per node)"
            )
        nodes = [value[i : i + 2] for i in range(0, len(value), 2)]
    else:
        nodes = list(value)
    cell = []
    for k, node in enumerate(nodes):
        where = f"{kind} node {k}"
        if not _is_seq(node):
            raise GenotypeError(f"{where}: expected a list of [op, input] pairs, got {node!r}")
        if _looks_like_pair(node):
            raise GenotypeError(
                f"{where}: expected a list of [op, input] pairs, got the single pair "
                f"{list(node)!r} (mixed per-node and DARTS flat form?)"
            )
        pairs = []
        for p, pair in enumerate(node):
            at = f"{where}, pair {p}" + (f" (flat item {2 * k + p})" if flat else "")
            if not _is_seq(pair) or len(pair) != 2:
                raise GenotypeError(f"{at}: expected an [op, input] pair, got {pair!r}")
            op, index = pair
            if not isinstance(op, str):
                raise GenotypeError(f"{at}: op name must be a str, got {op!r}")
            if not _is_int(index):
                raise GenotypeError(f"{at}: input index must be an int, got {index!r}")
            if op not in allowed:
                if op == _NONE_OP:
                    raise GenotypeError(
                        f"{at}: op 'none' is not allowed (a 'none' edge is no edge; drop the pair)"
                    )
                known = ", ".join(sorted(allowed))
                raise GenotypeError(f"{at}: unknown op {op!r} (known: {known})")
            if not 0 <= index <= k + 1:
                raise GenotypeError(f"{at}: input index {index} out of range 0..{k + 1}")
            pairs.append((op, int(index)))
        cell.append(tuple(pairs))
    return tuple(cell)


def _normalise_concat(kind: str, value: Any, num_nodes: int) -> tuple[int, ...]:
    """Validates a concat list (any int sequence or range) against the cell's node count."""
    where = f"{kind}_concat"
    if not isinstance(value, (list, tuple, range)):
        raise GenotypeError(f"{where}: expected a list of node indices, got {_type_name(value)}")
    if len(value) == 0:
        raise GenotypeError(f"{where}: must name at least one node")
    seen: set[int] = set()
    for i, index in enumerate(value):
        if not _is_int(index):
            raise GenotypeError(f"{where}, item {i}: node index must be an int, got {index!r}")
        if not 2 <= index <= num_nodes + 1:
            span = f"2..{num_nodes + 1}" if num_nodes else "(the cell has no intermediate nodes)"
            raise GenotypeError(f"{where}, item {i}: node index {index} out of range {span}")
        if index in seen:
            raise GenotypeError(f"{where}, item {i}: node index {index} listed twice")
        seen.add(index)
    return tuple(int(i) for i in value)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'normal' or 'reduce', got {kind!r}")
    return kind


@dataclasses.dataclass(frozen=True)
class Genotype:
    """A discrete cell architecture: per intermediate node, the (op, input_index) pairs feeding it.

    Lists are normalised to tuples and everything is validated on construction (the DARTS flat
    form, two pairs per node, is also accepted). Ops must be registered in `kerasnas.ops`;
    'none' is rejected unless listed in the keyword-only ``allowed_ops``, which, when given,
    replaces the registered set. Instances are immutable and hashable.
    """

    normal: Cell
    normal_concat: tuple[int, ...]
    reduce: Cell
    reduce_concat: tuple[int, ...]
    _: dataclasses.KW_ONLY
    allowed_ops: dataclasses.InitVar[Iterable[str] | None] = None

    def __post_init__(self, allowed_ops: Iterable[str] | None) -> None:
        allowed = _allowed_set(allowed_ops)
        for kind in KINDS:
            cell = _normalise_cell(kind, getattr(self, kind), allowed)
            concat = _normalise_concat(kind, getattr(self, f"{kind}_concat"), len(cell))
            object.__setattr__(self, kind, cell)
            object.__setattr__(self, f"{kind}_concat", concat)

    @property
    def nodes(self) -> int:
        """Number of intermediate nodes of the normal cell."""
        return len(self.normal)

    def cell(self, kind: str) -> Cell:
        """The per-node pairs of the 'normal' or 'reduce' cell."""
        return getattr(self, _check_kind(kind))

    def concat(self, kind: str) -> tuple[int, ...]:
        """The DAG indices concatenated into the output of the 'normal' or 'reduce' cell."""
        return getattr(self, f"{_check_kind(kind)}_concat")

    def edges(self, kind: str) -> list[tuple[int, int, str]]:
        """Every edge of a cell as (src, dst, op); dst is a DAG index (2..N+1), like src."""
        return [(src, k + 2, op) for k, node in enumerate(self.cell(kind)) for op, src in node]

    @classmethod
    def of_cells(
        cls, normal: Iterable, reduce: Iterable, *, allowed_ops: Iterable[str] | None = None
    ) -> Genotype:
        """The genotype of two cells that concatenate every intermediate node."""
        normal, reduce = tuple(normal), tuple(reduce)
        return cls(
            normal=normal,
            normal_concat=tuple(range(2, len(normal) + 2)),
            reduce=reduce,
            reduce_concat=tuple(range(2, len(reduce) + 2)),
            allowed_ops=allowed_ops,
        )

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, list]:
        """Plain JSON-ready dict in the per-node form."""
        return {
            "normal": [[[op, i] for op, i in node] for node in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[[op, i] for op, i in node] for node in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, allowed_ops: Iterable[str] | None = None
    ) -> Genotype:
        """Builds a genotype from `to_dict` output or the DARTS flat form."""
        if not isinstance(d, Mapping):
            raise GenotypeError(
                f"expected an object with keys {', '.join(_KEYS)}, got {_type_name(d)}"
            )
        missing = [k for k in _KEYS if k not in d]
        if missing:
            raise GenotypeError(f"missing key(s): {', '.join(missing)}")
        extra = sorted(str(k) for k in d if k not in _KEYS)
        if extra:
            raise GenotypeError(f"unknown key(s): {', '.join(extra)} (expected {', '.join(_KEYS)})")
        return cls(**{k: d[k] for k in _KEYS}, allowed_ops=allowed_ops)

    def to_json(self) -> str:
        """Readable JSON text, one node per line."""

        def cell_text(cell: Cell) -> str:
            if not cell:
                return "[]"
            rows = ",\n".join("    " + json.dumps([list(p) for p in node]) for node in cell)
            return "[\n" + rows + "\n  ]"

        return (
            "{\n"
            f'  "normal": {cell_text(self.normal)},\n'
            f'  "normal_concat": {json.dumps(list(self.normal_concat))},\n'
            f'  "reduce": {cell_text(self.reduce)},\n'
            f'  "reduce_concat": {json.dumps(list(self.reduce_concat))}\n'
            "}"
        )

    @classmethod
    def from_json(
        cls, text: str, *, allowed_ops: Iterable[str] | None = None, source: str | None = None
    ) -> Genotype:
        """Parses JSON text; `source` (e.g. a file name) prefixes every error message."""
        prefix = f"{source}: " if source else ""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise GenotypeError(
                f"{prefix}invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        try:
            return cls.from_dict(data, allowed_ops=allowed_ops)
        except GenotypeError as e:
            if not prefix:
                raise
            raise GenotypeError(f"{prefix}{e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Writes the JSON form to `path` atomically."""
        write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, *, allowed_ops: Iterable[str] | None = None) -> Genotype:
        """Reads a JSON genotype file (per-node or DARTS flat form); errors name the file."""
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise GenotypeError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        return cls.from_json(text, allowed_ops=allowed_ops, source=name)

    @classmethod
    def from_darts(cls, text_or_obj: Any, *, allowed_ops: Iterable[str] | None = None) -> Genotype:
        """Converts a DARTS genotype: the namedtuple itself, or its repr / source line as text.

        Text such as ``Genotype(normal=[('sep_conv_3x3', 0), ...], normal_concat=range(2, 6),
        ...)`` (optionally ``NAME = Genotype(...)``) is parsed with `ast`, never evaluated;
        only literals and ``range(...)`` / ``list(range(...))`` are accepted.
        """
        if isinstance(text_or_obj, Genotype):
            return text_or_obj
        if isinstance(text_or_obj, str):
            fields = _parse_darts_text(text_or_obj)
        elif isinstance(text_or_obj, Mapping):
            fields = dict(text_or_obj)
        elif all(hasattr(text_or_obj, k) for k in _KEYS):
            fields = {k: getattr(text_or_obj, k) for k in _KEYS}
        else:
            raise GenotypeError(
                f"cannot read a DARTS genotype from {_type_name(text_or_obj)}: expected text or "
                f"an object with attributes {', '.join(_KEYS)}"
            )
        return cls.from_dict(fields, allowed_ops=allowed_ops)


def _literal(node: ast.expr, where: str) -> Any:
    """Safely converts an AST literal (plus range / list(range)) to a Python value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand, where)
        if _is_int(value):
            return -value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, where) for e in node.elts]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id == "range" and 1 <= len(node.args) <= 3:
            args = [_literal(a, where) for a in node.args]
            if all(_is_int(a) for a in args):
                return list(range(*args))
        if node.func.id in ("list", "tuple") and len(node.args) == 1:
            return _literal(node.args[0], where)
    snippet = ast.unparse(node)
    if len(snippet) > 60:
        snippet = snippet[:57] + "..."
    raise GenotypeError(
        f"{where}: unsupported expression {snippet!r} (only literals and range(...) are allowed)"
    )


def _parse_darts_text(text: str) -> dict[str, Any]:
    """Extracts the four fields from ``[NAME =] Genotype(...)`` source text."""
    try:
        module = ast.parse(text.strip())
    except SyntaxError as e:
        raise GenotypeError(f"cannot parse DARTS genotype: {e.msg} at line {e.lineno}") from None
    if len(module.body) != 1 or not isinstance(module.body[0], (ast.Expr, ast.Assign)):
        raise GenotypeError("cannot parse DARTS genotype: expected one 'Genotype(...)' expression")
    call = module.body[0].value
    if not isinstance(call, ast.Call):
        raise GenotypeError(
            "cannot parse DARTS genotype: expected a 'Genotype(...)' call, "
            f"got {ast.unparse(call)!r}"
        )
    if len(call.args) > len(_KEYS):
        raise GenotypeError(f"DARTS genotype: too many positional arguments ({len(call.args)})")
    fields: dict[str, Any] = {}
    for key, arg in zip(_KEYS, call.args, strict=False):
        fields[key] = _literal(arg, key)
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in _KEYS:
            raise GenotypeError(
                f"DARTS genotype: unexpected argument {kw.arg or '**'!r} "
                f"(expected {', '.join(_KEYS)})"
            )
        if kw.arg in fields:
            raise GenotypeError(f"DARTS genotype: argument {kw.arg!r} given twice")
        fields[kw.arg] = _literal(kw.value, kw.arg)
    return fields


# Published DARTS cells (Liu et al., 2019), in the form found in the DARTS code.
_DARTS_V1_TEXT = (
    "Genotype("
    "normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)], "
    "reduce_concat=[2, 3, 4, 5])"
)
_DARTS_V2_TEXT = (
    "Genotype("
    "normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], "
    "reduce_concat=[2, 3, 4, 5])"
)

# Built-in op names the published cells use; checking against them (rather than the registry)
# keeps `import kerasnas.genotype` free of the keras import that `kerasnas.ops` needs.
_PUBLISHED_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")

#: First-order DARTS (DARTS_V1) CIFAR-10 cells.
DARTS_V1: Genotype = Genotype.from_darts(_DARTS_V1_TEXT, allowed_ops=_PUBLISHED_OPS)
#: Second-order DARTS (DARTS_V2) CIFAR-10 cells.
DARTS_V2: Genotype = Genotype.from_darts(_DARTS_V2_TEXT, allowed_ops=_PUBLISHED_OPS)
