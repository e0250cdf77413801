"""Network morphisms: a child that computes what its trained parent computes, before its
own training (Chen et al. 2016, Net2Net; Wei et al. 2016; Elsken et al. 2017, NASH).

:func:`morphisms`, :func:`apply` and :func:`inherit` dispatch on the space: ``nasrl`` (this
module), ``metaqnn`` (:mod:`~kerasnas.estimation.morphism_metaqnn`: widen, deepen, kernel)
and ``cell`` (:mod:`~kerasnas.estimation.morphism_cell`: kernel growth of an edge's op);
any other space is a ValueError naming the supported ones.

Operators of the ``nasrl`` chain space (each one change of the architecture, each
function-preserving):

- ``widen`` layer n to more filters (Net2WiderNet): the new filters copy randomly chosen old
  ones (conv kernel and batch norm); every consumer of layer n (later layers' convs, the
  classifier) divides the input weights of each copied filter by its number of copies.
- ``deepen`` after layer n: a new layer on layer n's output alone, with layer n's filters,
  the smallest kernel of the space initialised to the identity, and a batch norm that is
  the identity at inference (moving mean 0, variance 1, gamma sqrt(1 + eps), beta 0); it
  takes layer n's place as the input of every consumer. Its ReLU sees layer n's ReLU
  output, so it is the identity too.
- ``skip``: layer n also takes layer j's output (concatenated), with zero weights for the
  new input channels; only where j's output already feeds another layer (so the classifier
  keeps its inputs), layer n already has inputs, and j's output is no larger than them.
- ``kernel``: grow layer n's filter height and/or width by an even amount (zero-padded
  around the old kernel), where 'same' padding keeps the taps aligned (always at stride
  1; at stride > 1 only for some input sizes, see :func:`_aligned`).

"Function-preserving" is at inference (``training=False``): in training mode batch norm
normalises with batch statistics, which a new identity layer's batch norm does not undo (as
in Net2Net). ``tests/test_morphism.py`` checks every operator on random inputs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["Morphism", "apply", "inherit", "morphisms"]

KINDS = ("widen", "deepen", "skip", "kernel")


@dataclasses.dataclass(frozen=True)
class Morphism:
    """One operator: `kind` (:data:`KINDS`; metaqnn and cell: their modules' ``KINDS``), the
    `layer` it changes (for ``deepen``: the layer the new one follows; cell: the index of an
    op decision) and its `value`: new filters or units (``widen``), the source layer
    (``skip``), the new (height, width) (``kernel``; cell: the new op's name), None
    (``deepen``)."""

    kind: str
    layer: int
    value: Any = None

    def describe(self) -> str:
        if self.kind == "widen":
            return f"widen L{self.layer} to {self.value} filters"
        if self.kind == "deepen":
            return f"deepen after L{self.layer}"
        if self.kind == "skip":
            return f"skip L{self.value} -> L{self.layer}"
        if isinstance(self.value, str):  # the cell space: an op decision's new op
            return f"op decision {self.layer} to {self.value}"
        return f"kernel of L{self.layer} to {self.value[0]}x{self.value[1]}"


def _sizes(layers: list[dict], image_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Output (height, width) of every layer ('same' padding: ceil(size / stride))."""
    sizes: list[tuple[int, int]] = []
    for layer in layers:
        if layer["inputs"]:
            h = max(sizes[j][0] for j in layer["inputs"])
            w = max(sizes[j][1] for j in layer["inputs"])
        else:
            h, w = image_hw
        s = layer["stride"]
        sizes.append((math.ceil(h / s), math.ceil(w / s)))
    return sizes


def _aligned(size: int, stride: int, k0: int, k1: int) -> bool:
    """Whether a kernel grown from k0 to k1 taps (zero-padded around the old one) sees what
    the old one saw under 'same' padding: TensorFlow pads ``max((out - 1) * stride + k -
    size, 0)`` in all, the smaller half first, which with stride > 1 can shift the taps."""
    out = math.ceil(size / stride)

    def before(k):
        return max((out - 1) * stride + k - size, 0) // 2

    return before(k1) - before(k0) == (k1 - k0) // 2


# -- the public functions: dispatch on the space --------------------------------------------

SPACES = ("nasrl", "metaqnn", "cell")


def _module(space, where: str):
    """The module of `space`'s operators: None for this one (nasrl), morphism_metaqnn or
    morphism_cell."""
    name = getattr(space, "name", None)
    if name == "nasrl":
        return None
    if name == "metaqnn":
        from kerasnas.estimation import morphism_metaqnn

        return morphism_metaqnn
    if name == "cell":
        from kerasnas.estimation import morphism_cell

        return morphism_cell
    raise ValueError(
        f"{where}: the {name!r} space has no network morphisms; supported spaces: "
        f"{', '.join(SPACES)} (got {space!r})"
    )


def morphisms(space, arch: Mapping[str, Any], image_hw: tuple[int, int]) -> list[Morphism]:
    """Every operator that applies to `arch` within `space` (a ``NASRLSpace``,
    ``MetaQNNSpace`` or ``DiscreteCellSpace``; ValueError for others) and yields one of its
    architectures, for inputs of (height, width) `image_hw`."""
    module = _module(space, "morphisms")
    if module is None:
        return _nasrl_morphisms(space, arch, image_hw)
    return module.morphisms(space, arch, image_hw)


def apply(space, arch: Mapping[str, Any], m: Morphism) -> dict[str, Any]:
    """The child architecture of `arch` under `m` (canonical)."""
    module = _module(space, "apply")
    if module is None:
        return _nasrl_apply(space, arch, m)
    return module.apply(space, arch, m)


def inherit(
    space,
    parent_arch: Mapping[str, Any],
    parent,
    m: Morphism,
    child,
    rng: np.random.Generator,
) -> None:
    """Sets the weights of `child` (the built model of ``apply(space, parent_arch, m)``)
    from the trained `parent` (the model of `parent_arch`) so that both compute the same
    logits at inference. `rng` picks the filters (units) ``widen`` copies."""
    module = _module(space, "inherit")
    if module is None:
        _nasrl_inherit(space, parent_arch, parent, m, child, rng)
    else:
        module.inherit(space, parent_arch, parent, m, child, rng)


# -- nasrl ---------------------------------------------------------------------------------


def _outputs(layers: list[dict]) -> list[int]:
    consumed = {j for layer in layers for j in layer["inputs"]}
    return [j for j in range(len(layers)) if j not in consumed]


def _nasrl_morphisms(space, arch: Mapping[str, Any], image_hw: tuple[int, int]) -> list[Morphism]:
    layers = space.layers(arch)
    sizes = _sizes(layers, image_hw)
    heads = set(_outputs(layers))
    found: list[Morphism] = []
    for n, layer in enumerate(layers):
        for f in space.filters:
            if f > layer["filters"]:
                found.append(Morphism("widen", n, f))
        h0, w0 = layer["filter_height"], layer["filter_width"]
        if layer["inputs"]:
            ih = max(sizes[j][0] for j in layer["inputs"])
            iw = max(sizes[j][1] for j in layer["inputs"])
        else:
            ih, iw = image_hw
        for h in space.filter_heights:
            for w in space.filter_widths:
                grow = (h, w) != (h0, w0) and h >= h0 and w >= w0
                even = (h - h0) % 2 == 0 and (w - w0) % 2 == 0
                s = layer["stride"]
                if grow and even and _aligned(ih, s, h0, h) and _aligned(iw, s, w0, w):
                    found.append(Morphism("kernel", n, (h, w)))
        if layer["inputs"] and space.skip_connections:
            h = max(sizes[j][0] for j in layer["inputs"])
            w = max(sizes[j][1] for j in layer["inputs"])
            for j in range(n):
                fits = sizes[j][0] <= h and sizes[j][1] <= w
                if j not in layer["inputs"] and j not in heads and fits:
                    found.append(Morphism("skip", n, j))
    if _can_deepen(space, len(layers)):
        found.extend(Morphism("deepen", n) for n in range(len(layers)))
    return found


def _identity_kernel(space) -> int | None:
    odd = sorted(set(space.filter_heights) & set(space.filter_widths))
    odd = [k for k in odd if k % 2 == 1]
    return odd[0] if odd else None


def _can_deepen(space, depth: int) -> bool:
    if depth + 1 not in space.values("num_layers") or _identity_kernel(space) is None:
        return False
    return space.strides is None or 1 in space.strides


def _child_layers(space, arch: Mapping[str, Any], m: Morphism) -> list[dict]:
    layers = [dict(layer, inputs=list(layer["inputs"])) for layer in space.layers(arch)]
    n = m.layer
    if m.kind == "widen":
        layers[n]["filters"] = m.value
    elif m.kind == "kernel":
        layers[n]["filter_height"], layers[n]["filter_width"] = m.value
    elif m.kind == "skip":
        layers[n]["inputs"] = sorted([*layers[n]["inputs"], m.value])
    elif m.kind == "deepen":
        k = _identity_kernel(space)
        new = {
            "filter_height": k,
            "filter_width": k,
            "filters": layers[n]["filters"],
            "stride": 1,
            "inputs": [n],
        }
        for layer in layers:
            layer["inputs"] = [j + 1 if j >= n else j for j in layer["inputs"]]
        layers.insert(n + 1, new)
        layers[n + 1]["inputs"] = [n]
    else:
        raise ValueError(f"morphism kind must be one of {KINDS}, got {m.kind!r}")
    return layers


def _nasrl_apply(space, arch: Mapping[str, Any], m: Morphism) -> dict[str, Any]:
    layers = _child_layers(space, arch, m)
    return space.from_description({"space": space.name, "layers": layers})


# -- weights -----------------------------------------------------------------------------------


def _layout(layers: list[dict], sources: list[int]) -> list[tuple[int, int, int]]:
    """(source layer, first channel, channels) of a concatenation of `sources`' outputs."""
    out, start = [], 0
    for j in sources:
        out.append((j, start, layers[j]["filters"]))
        start += layers[j]["filters"]
    return out


def _remap_rows(
    kernel: np.ndarray,
    parent_layout: list[tuple[int, int, int]],
    child_layout: list[tuple[int, int, int]],
    source_map: dict[int, int],
    widen: tuple[int, np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    """A consumer's kernel (input channels on axis -2) for the child's input layout: each
    child source's rows come from its parent source (`source_map`: child -> parent layer;
    missing: a new source, zero rows); `widen` = (child layer, g, counts) replicates that
    source's rows by g and divides them by their copies."""
    parent_rows = {j: (start, c) for j, start, c in parent_layout}
    blocks = []
    for j, _, c in child_layout:
        shape = (*kernel.shape[:-2], c, kernel.shape[-1])
        pj = source_map.get(j)
        if pj is None or pj not in parent_rows:
            blocks.append(np.zeros(shape, kernel.dtype))
            continue
        start, pc = parent_rows[pj]
        rows = kernel[..., start : start + pc, :]
        if widen is not None and widen[0] == j:
            _, g, counts = widen
            rows = rows[..., g, :] / counts[g][:, None]
        blocks.append(rows)
    return np.concatenate(blocks, axis=-2)


def _searched(name: str) -> bool:
    return name == "classifier" or (name.startswith("L") and "_" in name and name[1].isdigit())


def _nasrl_inherit(
    space,
    parent_arch: Mapping[str, Any],
    parent,
    m: Morphism,
    child,
    rng: np.random.Generator,
) -> None:
    p_layers = space.layers(parent_arch)
    c_layers = _child_layers(space, parent_arch, m)
    # child layer -> parent layer (None: the new layer of deepen)
    origin: dict[int, int | None] = {k: k for k in range(len(c_layers))}
    if m.kind == "deepen":
        for k in range(m.layer + 1, len(c_layers)):
            origin[k] = None if k == m.layer + 1 else k - 1
    # whose output a child layer's output equals (the new identity layer: layer n's)
    same = {k: m.layer if pk is None else pk for k, pk in origin.items()}
    widen = None
    if m.kind == "widen":
        old = p_layers[m.layer]["filters"]
        g = np.concatenate([np.arange(old), rng.integers(0, old, m.value - old)])
        widen = (m.layer, g, np.bincount(g, minlength=old).astype(np.float32))

    # unsearched layers (preprocessing): same order in both models
    p_fixed = [la for la in parent.layers if la.weights and not _searched(la.name)]
    c_fixed = [la for la in child.layers if la.weights and not _searched(la.name)]
    for a, b in zip(p_fixed, c_fixed, strict=True):
        b.set_weights(a.get_weights())

    for k, layer in enumerate(c_layers):
        conv = child.get_layer(f"L{k}_conv")
        bn = child.get_layer(f"L{k}_bn")
        pk = origin[k]
        if pk is None:  # deepen: identity conv and batch norm
            kernel = np.zeros(conv.kernel.shape, np.float32)
            c = layer["filters"]
            kernel[layer["filter_height"] // 2, layer["filter_width"] // 2] = np.eye(c)
            conv.set_weights([kernel])
            eps = bn.epsilon
            ones = np.ones(c, np.float32)
            bn.set_weights([np.sqrt(ones + eps), 0 * ones, 0 * ones, ones])
            continue
        kernel = parent.get_layer(f"L{pk}_conv").get_weights()[0]
        if layer["inputs"]:
            source_map = {j: same[j] for j in layer["inputs"]}
            kernel = _remap_rows(
                kernel,
                _layout(p_layers, p_layers[pk]["inputs"]),
                _layout(c_layers, layer["inputs"]),
                source_map,
                widen if widen and widen[0] in layer["inputs"] else None,
            )
        bn_weights = parent.get_layer(f"L{pk}_bn").get_weights()
        if widen is not None and k == widen[0]:
            kernel = kernel[..., widen[1]]
            bn_weights = [w[widen[1]] for w in bn_weights]
        if m.kind == "kernel" and k == m.layer:
            h, w = m.value
            dh = (h - kernel.shape[0]) // 2
            dw = (w - kernel.shape[1]) // 2
            kernel = np.pad(kernel, ((dh, dh), (dw, dw), (0, 0), (0, 0)))
        conv.set_weights([kernel])
        bn.set_weights(bn_weights)

    dense_kernel, bias = parent.get_layer("classifier").get_weights()
    c_heads = _outputs(c_layers)
    dense_kernel = _remap_rows(
        dense_kernel,
        _layout(p_layers, _outputs(p_layers)),
        _layout(c_layers, c_heads),
        {j: same[j] for j in c_heads},
        widen if widen and widen[0] in c_heads else None,
    )
    child.get_layer("classifier").set_weights([dense_kernel, bias])
