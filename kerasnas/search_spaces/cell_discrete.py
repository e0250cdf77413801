"""The DARTS/SNAS cell space with one op per edge, for trial-based strategies.

The same space :class:`~kerasnas.search_spaces.cell.CellSpace` relaxes for SNAS, made
discrete the DARTS way: every intermediate node i (0-based) of the normal and of the
reduction cell takes two *different* inputs (0, 1: the cell inputs; 2..i+1: earlier nodes),
each through one op. Decisions, in order, for kind in (normal, reduce), node i, k in (0, 1):
``{kind}/node{i}/input{k}`` (values 0..i+1) and ``{kind}/node{i}/op{k}`` (the ops).
An assignment whose two inputs coincide is repaired by moving ``input1`` to the first other
index. The architecture is a :class:`~kerasnas.Genotype` (two pairs per node, every node
concatenated), which :meth:`DiscreteCellSpace.describe` returns as its JSON dict, pairs in
the order given; :meth:`DiscreteCellSpace.key` treats a node's two pairs as a set (the node
sums them).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from kerasnas import ops as ops_lib
from kerasnas.errors import SettingError
from kerasnas.genotype import Genotype, GenotypeError
from kerasnas.search_spaces.base import (
    Arch,
    DiscreteSpace,
    SpaceError,
    check_reduction,
    scale_width,
)
from kerasnas.search_spaces.cell import CELL_KINDS, CellSpace, genotype_stack, reduction_cells
from kerasnas.wording import count

__all__ = ["DiscreteCellSpace"]

DEFAULT_OPS: tuple[str, ...] = tuple(op for op in ops_lib.PRIMITIVES if op != "none")
FORMS: tuple[str, ...] = ("eval", "search")


class DiscreteCellSpace(DiscreteSpace):
    """The cell space with one op on each of two inputs per node.

    Args:
      init_channels: C of the built network (the SNAS search default 8 on digits).
      layers: L cells (>= 3; reductions at L//3 and 2L//3).
      nodes: N intermediate nodes per cell.
      ops: candidate op names (registered in :mod:`kerasnas.ops`; not ``none``: a discrete
        cell keeps two inputs per node). Default: the 7 DARTS/SNAS ops other than ``none``.
      form: ``eval`` builds :func:`~kerasnas.search_spaces.cell.build_network` (affine batch
        norm, no batch norm after pooling: the network the papers retrain); ``search``
        builds :meth:`CellSpace.build_child` (the SNAS child's search-time form).
      drop_path: drop-path rate of the ``eval`` form (training only).
      stem_multiplier: stem channels = stem_multiplier * C.
    """

    name = "cell"

    def __init__(
        self,
        init_channels: int = 8,
        layers: int = 5,
        nodes: int = 4,
        ops: Sequence[str] = DEFAULT_OPS,
        form: str = "eval",
        drop_path: float = 0.0,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        ops = tuple(ops)
        if "none" in ops:
            raise SettingError(
                "DiscreteCellSpace: 'none' is not a candidate in {ops} (a discrete cell keeps "
                "two inputs per node)"
            )
        if form not in FORMS:
            raise SettingError(f"DiscreteCellSpace: {{form}} must be one of {FORMS}, got {form!r}")
        if not 0.0 <= drop_path < 1.0:
            raise SettingError(
                f"DiscreteCellSpace: {{drop_path}} must be in [0, 1), got {drop_path}"
            )
        # CellSpace checks sizes and ops; its input shape is replaced at build time
        try:
            CellSpace((8, 8, 1), 2, init_channels, layers, nodes, ops, stem_multiplier)
        except SettingError as e:
            raise SettingError(e.template.replace("CellSpace", "DiscreteCellSpace")) from None
        self.init_channels = init_channels
        self.layers = layers
        self.nodes = nodes
        self.ops = ops
        self.form = form
        self.drop_path = float(drop_path)
        self.stem_multiplier = stem_multiplier
        default_op = "sep_conv_3x3" if "sep_conv_3x3" in ops else ops[0]
        for kind in CELL_KINDS:
            for i in range(nodes):
                for k in range(2):
                    self._declare(f"{kind}/node{i}/input{k}", range(i + 2), default=k)
                    self._declare(f"{kind}/node{i}/op{k}", ops, default=default_op)
        # kinds whose only cell is the first: its two inputs are both the stem's output
        self._twin_inputs = tuple(kind for kind in CELL_KINDS if _cells_of(kind, layers) == [0])
        self._finish_init()

    @property
    def model_name(self) -> str:
        return "child" if self.form == "search" else "network"

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "init_channels": self.init_channels,
            "layers": self.layers,
            "nodes": self.nodes,
            "ops": list(self.ops),
            "form": self.form,
            "drop_path": self.drop_path,
            "stem_multiplier": self.stem_multiplier,
        }

    def reduce(self, arch, width=1.0, depth=1.0, image_size=None):
        """The same genotype in a network of ``round(C * width)`` channels (at least 2) and
        ``round(L * depth)`` cells (at least 3; reductions at L//3 and 2L//3 of the new L).
        Any image size builds."""
        check_reduction(width, depth, image_size)
        arch = self.validate(arch)
        channels = max(2, scale_width(self.init_channels, width))
        layers = max(3, scale_width(self.layers, depth))
        if (channels, layers) == (self.init_channels, self.layers):
            return self, arch
        config = {**self.get_config(), "init_channels": channels, "layers": layers}
        config.pop("name")
        space = DiscreteCellSpace(**config)
        return space, space.validate(arch, repair=False)

    def _check(self, arch: Arch, repair: bool) -> Arch:
        for kind in CELL_KINDS:
            for i in range(self.nodes):
                a, b = f"{kind}/node{i}/input0", f"{kind}/node{i}/input1"
                if arch[a] != arch[b]:
                    continue
                if not repair:
                    raise SpaceError(
                        f"cell: {b} = {arch[b]} repeats {a}; the two inputs of a node must differ",
                        decision=b,
                    )
                arch[b] = 0 if arch[a] != 0 else 1
        return arch

    def sample(self, rng: np.random.Generator) -> Arch:
        """Two different inputs per node uniformly, each op uniformly."""
        arch: Arch = {}
        for kind in CELL_KINDS:
            for i in range(self.nodes):
                inputs = rng.choice(i + 2, size=2, replace=False)
                for k in range(2):
                    arch[f"{kind}/node{i}/input{k}"] = int(inputs[k])
                    arch[f"{kind}/node{i}/op{k}"] = self.ops[int(rng.integers(len(self.ops)))]
        return self.validate(arch)

    def enumerate(self) -> Iterator[Arch]:
        """Every distinct architecture once: per node each pair of different inputs (in
        increasing order) with each op on each, skipping genotypes :meth:`key` identifies."""
        slots = [(kind, i) for kind in CELL_KINDS for i in range(self.nodes)]
        per_node = [
            [
                (a, b, op_a, op_b)
                for a, b in itertools.combinations(range(i + 2), 2)
                for op_a in self.ops
                for op_b in self.ops
            ]
            for _, i in slots
        ]
        seen: set[str] = set()
        for combo in itertools.product(*per_node):
            arch: Arch = {}
            for (kind, i), (a, b, op_a, op_b) in zip(slots, combo, strict=True):
                node = f"{kind}/node{i}"
                arch.update({f"{node}/input0": a, f"{node}/op0": op_a})
                arch.update({f"{node}/input1": b, f"{node}/op1": op_b})
            arch = self.validate(arch)
            key = self.key(arch)
            if key not in seen:
                seen.add(key)
                yield arch

    def _count_assignments(self) -> int:
        per_kind = 1
        for i in range(self.nodes):
            per_kind *= (i + 2) * (i + 1) // 2 * len(self.ops) ** 2
        return per_kind ** len(CELL_KINDS)

    # -- genotypes ---------------------------------------------------------------------------

    def genotype(self, arch: Mapping[str, Any]) -> Genotype:
        """The :class:`~kerasnas.Genotype` of `arch`: per node [(op0, input0), (op1, input1)]."""
        arch = self.validate(arch)
        cells = {
            kind: [
                [(arch[f"{kind}/node{i}/op{k}"], arch[f"{kind}/node{i}/input{k}"]) for k in (0, 1)]
                for i in range(self.nodes)
            ]
            for kind in CELL_KINDS
        }
        return Genotype.of_cells(cells["normal"], cells["reduce"], allowed_ops=self.ops)

    def from_genotype(self, genotype: Genotype) -> Arch:
        """The architecture of a genotype with this space's nodes, two different inputs
        per node, ops of this space, and every node concatenated."""
        arch: dict[str, Any] = {}
        for kind in CELL_KINDS:
            cell = genotype.cell(kind)
            if len(cell) != self.nodes:
                raise SpaceError(
                    f"cell: the {kind} cell has {count(len(cell), 'node')}, the space {self.nodes}"
                )
            if tuple(genotype.concat(kind)) != tuple(range(2, self.nodes + 2)):
                raise SpaceError(
                    f"cell: {kind}_concat must be {list(range(2, self.nodes + 2))} in this space"
                )
            for i, node in enumerate(cell):
                if len(node) != 2:
                    raise SpaceError(
                        f"cell: {kind} node {i} has {count(len(node), 'input')}; "
                        "this space keeps 2",
                        decision=f"{kind}/node{i}/input0",
                    )
                for k, (op, src) in enumerate(node):
                    arch[f"{kind}/node{i}/input{k}"] = src
                    arch[f"{kind}/node{i}/op{k}"] = op
        return self.validate(arch, repair=False)

    def describe(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """The genotype's JSON dict (``Genotype.to_dict``: what ``genotype.json`` holds)."""
        return self.genotype(arch).to_dict()

    def key(self, arch: Mapping[str, Any]) -> str:
        """The genotype with each node's two (input, op) pairs as a set (the node sums
        them), so the order they are listed in is not part of the key. When a cell kind
        occurs only as the first cell (``layers`` = 3: the normal cell), that cell's two
        inputs are the same stem output through twin preprocessing layers: a genotype and
        the one with inputs 0 and 1 exchanged build the same network, and get one key."""
        genotype = self.genotype(arch)
        cells = {}
        for kind in CELL_KINDS:
            forms = [genotype.cell(kind)]
            if kind in self._twin_inputs:
                swap = {0: 1, 1: 0}
                forms.append([[(op, swap.get(src, src)) for op, src in n] for n in forms[0]])
            cells[kind] = min(
                json.dumps([sorted([src, op] for op, src in node) for node in form])
                for form in forms
            )
        return json.dumps({"space": self.name, **cells}, sort_keys=True)

    def from_description(self, description: Mapping[str, Any]) -> Arch:
        try:
            genotype = Genotype.from_dict(description, allowed_ops=self.ops)
        except GenotypeError as e:
            raise SpaceError(f"cell description: {e}") from None
        return self.from_genotype(genotype)

    # -- model -------------------------------------------------------------------------------

    def _body(self, arch: Arch, image: Any, num_classes: int) -> Any:
        """The stacked cells of the genotype: :func:`~kerasnas.search_spaces.cell.
        build_network`'s layers (``eval``) or ``CellSpace.build_child``'s (``search``)."""
        return genotype_stack(
            image,
            self.genotype(arch),
            num_classes,
            self.init_channels,
            self.layers,
            search=self.form == "search",
            drop_path=self.drop_path,
            stem_multiplier=self.stem_multiplier,
        )


def _cells_of(kind: str, layers: int) -> list[int]:
    """Indices of the cells of `kind` in an L-cell network."""
    reductions = reduction_cells(layers)
    return [i for i in range(layers) if (i in reductions) == (kind == "reduce")]
