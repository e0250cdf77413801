"""A discrete search space as the oracles see it: the ``hp.Choice`` entries of a
``keras_tuner.HyperParameters``, in their order; an architecture is the dict of their values.

Conventions understood here: a decision named ``num_layers`` is the depth of a chain space
(decisions ``L{n}/...`` with ``n >= depth`` are ignored); ``L{n}/skip{j}`` (values 0 and 1,
``j < n``) is an anchor-point skip connection from layer j into layer n. Ignored decisions
take their first value, so two architectures that build the same network compare equal.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import keras_tuner
import numpy as np

DEPTH = "num_layers"
_LAYER = re.compile(r"^L(\d+)/")
_SKIP = re.compile(r"^L(\d+)/skip(\d+)$")


@dataclasses.dataclass(frozen=True)
class Decision:
    """One Choice: its name, values, layer (None for a global decision) and, for an anchor
    skip decision ``L{n}/skip{j}``, the layer j it reads from."""

    name: str
    values: tuple
    layer: int | None
    skip_from: int | None


class ArchSpace:
    """The ordered decisions of a space of ``hp.Choice`` entries (see the module doc)."""

    def __init__(self, hyperparameters: keras_tuner.HyperParameters):
        decisions = []
        for hp in hyperparameters.space:
            if not isinstance(hp, keras_tuner.engine.hyperparameters.Choice):
                raise ValueError(
                    f"only hp.Choice entries can be searched, {hp.name!r} is {type(hp).__name__}"
                )
            if hp.conditions:
                raise ValueError(f"conditional hyperparameters are not supported: {hp.name!r}")
            layer = _LAYER.match(hp.name)
            skip = _SKIP.match(hp.name)
            values = tuple(hp.values)
            if skip:
                if sorted(values) != [0, 1]:
                    raise ValueError(f"{hp.name!r} must have the values [0, 1], got {values}")
                if int(skip.group(2)) >= int(skip.group(1)):
                    raise ValueError(f"{hp.name!r}: a skip must come from an earlier layer")
            decisions.append(
                Decision(
                    hp.name,
                    values,
                    int(layer.group(1)) if layer else None,
                    int(skip.group(2)) if skip else None,
                )
            )
        if not decisions:
            raise ValueError("the search space has no hp.Choice entries")
        self.decisions: list[Decision] = decisions
        self.names: list[str] = [d.name for d in decisions]
        self.depth_index: int | None = self.names.index(DEPTH) if DEPTH in self.names else None
        if self.depth_index is not None:
            depth_values = decisions[self.depth_index].values
            if not all(isinstance(v, int) and v >= 0 for v in depth_values):
                raise ValueError(f"{DEPTH} values must be non-negative ints, got {depth_values}")

    def __len__(self) -> int:
        return len(self.decisions)

    @property
    def max_depth(self) -> int | None:
        """The largest value of ``num_layers`` (None without a depth decision)."""
        if self.depth_index is None:
            return None
        return max(self.decisions[self.depth_index].values)

    def depth(self, values: dict[str, Any]) -> int | None:
        return None if self.depth_index is None else int(values[DEPTH])

    def active(self, index: int, depth: int | None) -> bool:
        """Whether decision `index` matters at this depth (None: every decision does)."""
        layer = self.decisions[index].layer
        return depth is None or layer is None or layer < depth

    def canonical(self, values: dict[str, Any]) -> dict[str, Any]:
        """`values` with every ignored decision at its first value; raises on a bad value."""
        out = {}
        for d in self.decisions:
            if d.name not in values:
                raise ValueError(f"architecture lacks a value for {d.name!r}")
            if values[d.name] not in d.values:
                raise ValueError(f"{values[d.name]!r} is not a value of {d.name!r}: {d.values}")
            out[d.name] = values[d.name]
        depth = self.depth(out)
        for i, d in enumerate(self.decisions):
            if not self.active(i, depth):
                out[d.name] = d.values[0]
        return out

    def key(self, values: dict[str, Any]) -> str:
        """A JSON string that identifies the (canonical) architecture."""
        return json.dumps([values[n] for n in self.names])

    def to_indices(self, values: dict[str, Any]) -> list[int]:
        return [d.values.index(values[d.name]) for d in self.decisions]

    def from_indices(self, indices: Any) -> dict[str, Any]:
        return self.canonical(
            {d.name: d.values[int(i)] for d, i in zip(self.decisions, indices, strict=True)}
        )

    def random(self, rng: np.random.Generator) -> dict[str, Any]:
        """Each Choice uniformly and independently (then canonical)."""
        return self.from_indices([rng.integers(len(d.values)) for d in self.decisions])

    def mutable(self, values: dict[str, Any]) -> list[int]:
        """Indices of the decisions a mutation may change: active, with two values or more."""
        depth = self.depth(values)
        return [
            i for i, d in enumerate(self.decisions) if self.active(i, depth) and len(d.values) > 1
        ]

    def apply(
        self, values: dict[str, Any], index: int, new_index: int, rng: np.random.Generator
    ) -> dict[str, Any]:
        """`values` with decision `index` set to its value `new_index`; layers that a larger
        depth switches on get random values."""
        d = self.decisions[index]
        child = dict(values)
        child[d.name] = d.values[new_index]
        if index == self.depth_index:
            old, new = self.depth(values), self.depth(child)
            for other in self.decisions:
                if other.layer is not None and old <= other.layer < new:
                    child[other.name] = other.values[rng.integers(len(other.values))]
        return self.canonical(child)

    def mutate(self, values: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """One uniformly chosen mutable decision changed to another uniformly chosen value."""
        candidates = self.mutable(values)
        if not candidates:
            raise ValueError("no decision of this space can be mutated")
        index = candidates[rng.integers(len(candidates))]
        current = self.decisions[index].values.index(values[self.decisions[index].name])
        others = [k for k in range(len(self.decisions[index].values)) if k != current]
        return self.apply(values, index, others[rng.integers(len(others))], rng)

    def size(self) -> int:
        """The number of distinct (canonical) architectures."""
        if self.depth_index is None:
            return int(np.prod([len(d.values) for d in self.decisions], dtype=object))
        total = 0
        for depth in set(self.decisions[self.depth_index].values):
            sizes = [
                len(d.values)
                for i, d in enumerate(self.decisions)
                if i != self.depth_index and self.active(i, depth)
            ]
            total += int(np.prod(sizes, dtype=object))
        return total

    def enumerate(self) -> Iterator[dict[str, Any]]:
        """Every distinct architecture once (for small spaces)."""
        seen = set()
        for indices in itertools.product(*(range(len(d.values)) for d in self.decisions)):
            values = self.from_indices(indices)
            key = self.key(values)
            if key not in seen:
                seen.add(key)
                yield values


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-serialisable state of a numpy Generator."""
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)
