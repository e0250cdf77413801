"""Network morphisms of the ``metaqnn`` space (Baker et al. 2017): a child that computes what
its trained parent computes, before its own training (Chen et al. 2016, Net2Net; Wei et al.
2016). Called through :mod:`kerasnas.estimation.morphism`, which dispatches on the space.

Layer ``i`` is the trajectory's ``layer{i}`` (a conv, pool, fc or gap string). Operators:

- ``widen`` conv ``i`` to more filters, or fc ``i`` to more units (Net2WiderNet): the new
  filters/units copy randomly chosen old ones (kernel, bias or batch norm); the consumer
  (the next conv or fc, or the classifier, across any pools and ``gap``) divides the input
  weights of each copied channel by its number of copies; behind a flatten every spatial
  position repeats the channel pattern (channels last). An fc may not become wider than an
  fc right before it (the space's rule).
- ``deepen`` after conv or pool ``i`` (whose output is a ReLU's, or a max of ReLU outputs,
  so non-negative): a new conv with ``i``'s channels and the space's smallest kernel,
  initialised to the identity (centre tap, no bias; with ``batch_norm`` a batch norm that
  is the identity at inference); its ReLU is the identity on non-negative inputs. After
  fc ``i``: a new fc of the same units with an identity kernel, where the run of FC layers
  stays within ``max_fc``. Needs room under ``max_layers`` and the kernel < R rule.
- ``kernel``: grow conv ``i``'s kernel by an even amount (zero-padded around the old one);
  metaqnn convs are stride 1 with 'same' padding, so the taps stay aligned; the new kernel
  must stay below the representation size R.

Pools have no weights and their sizes change the output ('valid' padding): no operator
changes them. Every proposed child passes the space's transition rules
(:meth:`~kerasnas.search_spaces.metaqnn.MetaQNNSpace.arch_from_actions`). "Function-
preserving" is at inference (``training=False``, batch norm on its moving statistics).
``tests/test_morphism_metaqnn.py`` checks every operator on random inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kerasnas.errors import SettingError
from kerasnas.estimation.morphism import Morphism

__all__ = ["KINDS", "apply", "inherit", "morphisms"]

KINDS = ("widen", "deepen", "kernel")


def _kind(layer: str) -> str:
    return layer.split("_", 1)[0]


def _layers(space, arch: Mapping[str, Any]) -> list[str]:
    """The layer strings of `arch`, without the terminal ``softmax``."""
    return space.arch_to_actions(arch)[:-1]


def _new_layers(space, layers: list[str], m: Morphism) -> list[str]:
    """The child's layer strings (no ``softmax``); ValueError for a malformed `m`."""
    if m.kind not in KINDS:
        raise ValueError(f"metaqnn morphism kind must be one of {KINDS}, got {m.kind!r}")
    if not 0 <= m.layer < len(layers):
        raise ValueError(f"metaqnn morphism: no layer {m.layer} (the network has {len(layers)})")
    out = list(layers)
    layer = layers[m.layer]
    kind, *args = layer.split("_")
    if m.kind == "widen":
        if kind == "conv":
            out[m.layer] = f"conv_{int(m.value)}_{args[1]}"
        elif kind == "fc":
            out[m.layer] = f"fc_{int(m.value)}"
        else:
            raise ValueError(f"metaqnn morphism: cannot widen {layer!r} (conv or fc only)")
    elif m.kind == "kernel":
        if kind != "conv":
            raise ValueError(f"metaqnn morphism: {layer!r} has no kernel to grow")
        out[m.layer] = f"conv_{args[0]}_{int(m.value[0])}"
    else:  # deepen
        out.insert(m.layer + 1, _identity_layer(space, layers, m.layer))
    return out


def _identity_layer(space, layers: list[str], n: int) -> str:
    kind = _kind(layers[n])
    if kind == "fc":
        return layers[n]
    if kind not in ("conv", "pool"):
        raise ValueError(f"metaqnn morphism: cannot deepen after {layers[n]!r}")
    channels = next(
        int(la.split("_")[1]) for la in reversed(layers[: n + 1]) if _kind(la) == "conv"
    )
    return f"conv_{channels}_{min(space.conv_kernels)}"


def morphisms(space, arch: Mapping[str, Any], image_hw: tuple[int, int]) -> list[Morphism]:
    """Every operator that applies to `arch` within `space` (a ``MetaQNNSpace``) and yields
    a valid architecture, for inputs of (height, width) `image_hw` (at least the space's
    ``image_size``, as :meth:`~MetaQNNSpace.build` needs)."""
    if min(image_hw) < space.image_size:
        raise ValueError(
            f"morphisms: image_hw {tuple(image_hw)} is smaller than the metaqnn space's "
            f"image_size {space.image_size}"
        )
    layers = _layers(space, arch)
    candidates = []
    for n, layer in enumerate(layers):
        kind, *args = layer.split("_")
        if kind == "conv":
            f, k = int(args[0]), int(args[1])
            candidates += [Morphism("widen", n, v) for v in space.conv_filters if v > f]
            grown = [v for v in space.conv_kernels if v > k and (v - k) % 2 == 0]
            candidates += [Morphism("kernel", n, (v, v)) for v in grown]
        elif kind == "fc":
            u = int(args[0])
            candidates += [Morphism("widen", n, v) for v in space.fc_units if v > u]
        if kind in ("conv", "pool", "fc"):
            candidates.append(Morphism("deepen", n))
    found = []
    for m in candidates:
        try:
            space.arch_from_actions([*_new_layers(space, layers, m), "softmax"])
        except SettingError:  # the space's SpaceError: a rule broken
            continue
        found.append(m)
    return found


def apply(space, arch: Mapping[str, Any], m: Morphism) -> dict[str, Any]:
    """The child architecture of `arch` under `m` (canonical); SpaceError when the child
    breaks the space's rules."""
    return space.arch_from_actions([*_new_layers(space, _layers(space, arch), m), "softmax"])


# -- weights -----------------------------------------------------------------------------------


def _spread(kernel: np.ndarray, g: np.ndarray, counts: np.ndarray, spatial: bool) -> np.ndarray:
    """A consumer's kernel (input channels on axis -2) reading the widened layer: rows
    replicated by `g` and divided by their copies. `spatial`: a dense kernel behind a
    flatten, its rows (position, channel) with the channel fastest."""
    if spatial:
        c = counts.shape[0]
        rows = kernel.reshape(kernel.shape[0] // c, c, kernel.shape[1])
        rows = rows[:, g, :] / counts[g][:, None]
        return rows.reshape(-1, kernel.shape[1])
    return kernel[..., g, :] / counts[g][:, None]


def _searched(name: str) -> bool:
    return name == "classifier" or (name.startswith("layer") and name[5:6].isdigit())


def _weighted(layers: list[str], start: int) -> tuple[int | None, bool]:
    """The first layer at or after `start` with weights (None: the classifier) and whether
    it reads a flattened spatial map (no ``gap`` before it and the input was spatial)."""
    spatial = True
    for k in range(start, len(layers)):
        kind = _kind(layers[k])
        if kind == "gap":
            spatial = False
        elif kind in ("conv", "fc"):
            return k, spatial and kind == "fc"
    return None, spatial


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
    logits at inference. `rng` picks the filters/units ``widen`` copies."""
    p_layers = _layers(space, parent_arch)
    c_layers = _new_layers(space, p_layers, m)
    n = m.layer
    # child layer -> parent layer (None: the new layer of deepen)
    origin: dict[int, int | None] = {k: k for k in range(len(c_layers))}
    if m.kind == "deepen":
        for k in range(n + 1, len(c_layers)):
            origin[k] = None if k == n + 1 else k - 1

    p_fixed = [la for la in parent.layers if la.weights and not _searched(la.name)]
    c_fixed = [la for la in child.layers if la.weights and not _searched(la.name)]
    for a, b in zip(p_fixed, c_fixed, strict=True):
        b.set_weights(a.get_weights())

    widen = None
    consumer, spatial = None, False
    if m.kind == "widen":
        old = int(p_layers[n].split("_")[1])
        g = np.concatenate([np.arange(old), rng.integers(0, old, int(m.value) - old)])
        widen = (g, np.bincount(g, minlength=old).astype(np.float32))
        consumer, spatial = _weighted(c_layers, n + 1)
        spatial = spatial and _kind(p_layers[n]) == "conv"

    for k, layer in enumerate(c_layers):
        kind = _kind(layer)
        if kind not in ("conv", "fc"):
            continue
        main = child.get_layer(f"layer{k}_{kind}")
        bn = child.get_layer(f"layer{k}_bn") if kind == "conv" and space.batch_norm else None
        pk = origin[k]
        if pk is None:  # deepen: the identity
            weights = [np.zeros(w.shape, np.float32) for w in main.get_weights()]
            c = int(layer.split("_")[1])
            if kind == "conv":
                size = weights[0].shape[0]
                weights[0][(size - 1) // 2, (size - 1) // 2] = np.eye(c)
            else:
                weights[0][...] = np.eye(c)
            main.set_weights(weights)
            if bn is not None:
                ones = np.ones(c, np.float32)
                bn.set_weights([np.sqrt(ones + bn.epsilon), 0 * ones, 0 * ones, ones])
            continue
        weights = parent.get_layer(f"layer{pk}_{kind}").get_weights()
        bn_weights = parent.get_layer(f"layer{pk}_bn").get_weights() if bn is not None else None
        if widen is not None and k == n:  # the widened layer: copy output channels
            g = widen[0]
            weights = [w[..., g] for w in weights]
            if bn_weights is not None:
                bn_weights = [w[g] for w in bn_weights]
        if widen is not None and k == consumer:
            weights[0] = _spread(weights[0], *widen, spatial)
        if m.kind == "kernel" and k == n:
            d = (int(m.value[0]) - weights[0].shape[0]) // 2
            weights[0] = np.pad(weights[0], ((d, d), (d, d), (0, 0), (0, 0)))
        main.set_weights(weights)
        if bn is not None:
            bn.set_weights(bn_weights)

    weights = parent.get_layer("classifier").get_weights()
    if widen is not None and consumer is None:
        weights[0] = _spread(weights[0], *widen, spatial)
    child.get_layer("classifier").set_weights(weights)
