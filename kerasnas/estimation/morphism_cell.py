"""Network morphisms of the discrete ``cell`` space (DARTS/SNAS cells, one op per edge).
Called through :mod:`kerasnas.estimation.morphism`, which dispatches on the space.

The cell space's widths and depth are fixed by the space (``init_channels``, ``layers``,
``nodes``), not by the architecture, so Net2Net's widen and deepen have no counterpart; and
swapping an edge's op for another kind is not function-preserving (every conv op starts with
a ReLU of an input that can be negative, so none can equal an identity or a pooling). One
operator fits:

- ``kernel``: the op of one edge of a cell kind (decision ``{kind}/node{i}/op{k}``, whose
  index in the space is the morphism's `layer`) grows its kernel, ``sep_conv_3x3`` ->
  ``sep_conv_5x5``, ``dil_conv_3x3`` -> ``dil_conv_5x5`` or ``conv_1x1`` -> ``conv_3x3``
  (the new op name is the `value`), when the space lists the larger op. The (depthwise)
  kernels are zero-padded around the old ones; under 'same' padding the taps stay aligned
  when the old (dilated) kernel spans at least the stride, as TensorFlow then pads both
  kernels (no clamping at 0) and the even growth shifts the first tap by half of it. So
  ``conv_1x1`` grows only on stride-1 edges (not on a reduction cell's edges from its
  inputs). The change applies to every cell of that kind (they share the genotype).

"Function-preserving" is at inference (``training=False``); ``tests/test_morphism_cell.py``
checks it on random inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kerasnas.estimation.morphism import Morphism

__all__ = ["GROW", "KINDS", "apply", "inherit", "morphisms"]

KINDS = ("kernel",)
# op -> (the op with the grown kernel, the old op's span in pixels, dilation included)
GROW = {
    "sep_conv_3x3": ("sep_conv_5x5", 3),
    "dil_conv_3x3": ("dil_conv_5x5", 5),
    "conv_1x1": ("conv_3x3", 1),
}


def _op_decision(space, m: Morphism) -> str:
    if m.kind not in KINDS:
        raise ValueError(f"cell morphism kind must be one of {KINDS}, got {m.kind!r}")
    names = [name for name, _ in space.decisions()]
    if not 0 <= m.layer < len(names) or "/op" not in names[m.layer]:
        raise ValueError(f"cell morphism: decision {m.layer} is not an op decision")
    return names[m.layer]


def _stride(name: str) -> int:
    """The stride of the edge of decision ``{kind}/node{i}/op{k}`` given its input."""
    return 2 if name.startswith("reduce/") else 1


def morphisms(space, arch: Mapping[str, Any], image_hw: tuple[int, int]) -> list[Morphism]:
    """Every kernel growth that applies to `arch` within `space` (a ``DiscreteCellSpace``);
    `image_hw` is not needed (the alignment holds for every input size)."""
    arch = space.validate(arch)
    found = []
    for index, (name, _) in enumerate(space.decisions()):
        if "/op" not in name or arch[name] not in GROW:
            continue
        new, span = GROW[arch[name]]
        src = arch[name.replace("/op", "/input")]
        stride = _stride(name) if src < 2 else 1
        if new in space.ops and span >= stride:
            found.append(Morphism("kernel", index, new))
    return found


def apply(space, arch: Mapping[str, Any], m: Morphism) -> dict[str, Any]:
    """The child architecture of `arch` under `m` (validated)."""
    name = _op_decision(space, m)
    arch = space.validate(arch)
    if GROW.get(arch[name], (None,))[0] != m.value or m.value not in space.ops:
        raise ValueError(f"cell morphism: {name} = {arch[name]!r} cannot grow to {m.value!r}")
    return space.validate({**arch, name: m.value}, repair=False)


def _renamed(space, arch: Mapping[str, Any], m: Morphism, parent, child) -> dict[str, str]:
    """Child layer name -> parent layer name of the changed edge in every cell of its kind
    (``cell{c}_edge{src}_{dst}_{op}``; the child's names the parent lacks)."""
    name = _op_decision(space, m)
    kind, node, k = name.split("/")
    dst = int(node.removeprefix("node")) + 2
    src = arch[f"{kind}/{node}/input{k.removeprefix('op')}"]
    suffix = f"_edge{src}_{dst}_{m.value}"
    before = {layer.name for layer in parent.layers}
    return {
        layer.name: layer.name.removesuffix(m.value) + arch[name]
        for layer in child.layers
        if layer.name.endswith(suffix) and layer.name not in before
    }


def _grow(old: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`old` zero-padded around its centre on its first two axes to `shape`."""
    pad = [((s - o) // 2, (s - o) // 2) for s, o in zip(shape[:2], old.shape[:2], strict=True)]
    return np.pad(old, [*pad, *[(0, 0)] * (old.ndim - 2)])


def inherit(
    space,
    parent_arch: Mapping[str, Any],
    parent,
    m: Morphism,
    child,
    rng: np.random.Generator,
) -> None:
    """Sets the weights of `child` (the built model of ``apply(space, parent_arch, m)``)
    from the `parent` (the model of `parent_arch`), layer by layer name; the grown kernels
    zero-padded. `rng` is unused (kept for the common signature)."""
    renamed = _renamed(space, space.validate(parent_arch), m, parent, child)
    used = set()
    for layer in child.layers:
        if not layer.weights:
            continue
        source = renamed.get(layer.name, layer.name)
        weights = parent.get_layer(source).get_weights()
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        weights = [
            w if tuple(w.shape) == s else _grow(w, s) for w, s in zip(weights, shapes, strict=True)
        ]
        layer.set_weights(weights)
        used.add(source)
    missed = {la.name for la in parent.layers if la.weights} - used
    if missed:
        raise ValueError(
            f"cell morphism: parent layers with no child counterpart: {sorted(missed)}"
        )
