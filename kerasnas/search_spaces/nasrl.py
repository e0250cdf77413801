"""The chain space of Zoph & Le (NAS with reinforcement learning, ICLR 2017).

A network is ``num_layers`` convolutional layers (conv, batch norm, ReLU; 'same' padding),
each with a searched filter height, filter width, number of filters and optionally stride,
and skip connections chosen by anchor points: layer n takes the outputs of every earlier
layer j with ``L{n}/skip{j} == 1``. The paper's rules make every sample a valid network:

- a layer with no input takes the image;
- inputs of different spatial size are zero-padded (centred) to the largest;
- several inputs are concatenated along the channels;
- every layer output no later layer consumes is concatenated (padded likewise) into the
  classifier: global average pooling + dense, giving logits.

Decisions, in order: ``num_layers``; then per layer n = 0 .. max_layers-1:
``L{n}/filter_height``, ``L{n}/filter_width``, ``L{n}/stride`` (when strides are searched),
``L{n}/filters``, ``L{n}/skip{j}`` for j = 0 .. n-1 (values [0, 1]), declared with their
layer (and a skip's source layer); ``num_layers`` is the depth decision. Layers >=
num_layers are inactive. The default architecture is a plain chain (``skip{n-1} = 1``) of
3x3 convs. Layer order is not part of :meth:`NASRLSpace.key` (the network read from the
classifier), so assignments that number one network's layers differently are one
architecture.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import keras

from kerasnas import ops as ops_lib
from kerasnas.errors import SettingError
from kerasnas.search_spaces.base import (
    Arch,
    DiscreteSpace,
    SpaceError,
    check_reduction,
    int_values,
    scale_width,
)
from kerasnas.wording import count

__all__ = ["NASRLSpace"]


def _ints(values: Sequence[int], what: str, minimum: int = 1) -> tuple[int, ...]:
    return int_values(values, what, "NASRLSpace", minimum)


class NASRLSpace(DiscreteSpace):
    """Zoph & Le's chain of convolutions with anchor-point skip connections.

    Args:
      max_layers: largest depth (decisions exist for layers 0 .. max_layers-1).
      min_layers: smallest depth; ``num_layers`` takes the values min_layers..max_layers.
      filter_heights, filter_widths: kernel sizes in pixels (paper: 1, 3, 5, 7).
      filters: output channels per layer (paper: 24, 36, 48, 64).
      strides: stride values to search (paper's option: 1, 2, 3); None = stride 1, no decision.
      skip_connections: search anchor-point inputs; False = a plain chain, no skip decisions.
    """

    name = "nasrl"
    model_name = "nasrl_child"

    def __init__(
        self,
        max_layers: int = 6,
        min_layers: int = 2,
        filter_heights: Sequence[int] = (1, 3, 5, 7),
        filter_widths: Sequence[int] = (1, 3, 5, 7),
        filters: Sequence[int] = (24, 36, 48, 64),
        strides: Sequence[int] | None = None,
        skip_connections: bool = True,
    ):
        super().__init__()
        for what, v in (("max_layers", max_layers), ("min_layers", min_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SettingError(f"NASRLSpace: {{{what}}} must be an int >= 1, got {v!r}")
        if min_layers > max_layers:
            raise SettingError(
                f"NASRLSpace: {{min_layers}} ({min_layers}) must be <= {{max_layers}} "
                f"({max_layers})"
            )
        self.max_layers = max_layers
        self.min_layers = min_layers
        self.filter_heights = _ints(filter_heights, "filter_heights")
        self.filter_widths = _ints(filter_widths, "filter_widths")
        self.filters = _ints(filters, "filters")
        self.strides = None if strides is None else _ints(strides, "strides")
        self.skip_connections = bool(skip_connections)

        self._declare("num_layers", range(min_layers, max_layers + 1), default=max_layers)
        self.depth_decision = "num_layers"
        for n in range(max_layers):
            heights, widths = self.filter_heights, self.filter_widths
            self._declare(f"L{n}/filter_height", heights, _prefer(heights, 3), n)
            self._declare(f"L{n}/filter_width", widths, _prefer(widths, 3), n)
            if self.strides is not None:
                self._declare(f"L{n}/stride", self.strides, _prefer(self.strides, 1), n)
            self._declare(f"L{n}/filters", self.filters, layer=n)
            if self.skip_connections:
                for j in range(n):
                    self._declare(f"L{n}/skip{j}", (0, 1), int(j == n - 1), n, skip_from=j)
        self._finish_init()

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_layers": self.max_layers,
            "min_layers": self.min_layers,
            "filter_heights": list(self.filter_heights),
            "filter_widths": list(self.filter_widths),
            "filters": list(self.filters),
            "strides": None if self.strides is None else list(self.strides),
            "skip_connections": self.skip_connections,
        }

    def reduce(self, arch, width=1.0, depth=1.0, image_size=None):
        """Every layer's filters scaled by `width` (the space's filter values with them);
        kernels, strides and skips kept. No `depth`: the number of layers is part of a
        chain architecture. Any image size builds ('same' padding)."""
        check_reduction(width, depth, image_size)
        if depth != 1.0:
            raise SpaceError(
                "nasrl: no depth reduction: a chain architecture's depth (num_layers) is "
                "part of the architecture; reduce the width, the resolution or the data"
            )
        arch = self.validate(arch)
        if width == 1.0:
            return self, arch
        scaled = {f: scale_width(f, width) for f in self.filters}
        config = {**self.get_config(), "filters": sorted(set(scaled.values()))}
        config.pop("name")
        space = NASRLSpace(**config)
        reduced = {k: scaled[v] if k.endswith("/filters") else v for k, v in arch.items()}
        return space, space.validate(reduced, repair=False)

    # -- structure ---------------------------------------------------------------------------

    def inputs(self, arch: Mapping[str, Any], n: int) -> list[int]:
        """Earlier layers feeding layer `n` of a validated arch ([] = the image)."""
        if not self.skip_connections:
            return [n - 1] if n > 0 else []
        return [j for j in range(n) if arch[f"L{n}/skip{j}"] == 1]

    def outputs(self, arch: Mapping[str, Any]) -> list[int]:
        """Layers (of the first num_layers) whose output no later layer consumes: the
        classifier's inputs, in layer order."""
        depth = arch["num_layers"]
        consumed = {j for n in range(depth) for j in self.inputs(arch, n)}
        return [j for j in range(depth) if j not in consumed]

    def layers(self, arch: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The active layers of `arch`: filter_height, filter_width, filters, stride, inputs."""
        arch = self.validate(arch)
        out = []
        for n in range(arch["num_layers"]):
            out.append(
                {
                    "filter_height": arch[f"L{n}/filter_height"],
                    "filter_width": arch[f"L{n}/filter_width"],
                    "filters": arch[f"L{n}/filters"],
                    "stride": arch[f"L{n}/stride"] if self.strides is not None else 1,
                    "inputs": self.inputs(arch, n),
                }
            )
        return out

    # -- description -------------------------------------------------------------------------

    def describe(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``{"space": "nasrl", "layers": [{"filter_height", "filter_width", "filters",
        "stride", "inputs"}, ...], "outputs": [...]}``; ``inputs`` [] means the image,
        ``outputs`` lists the layers concatenated into the classifier."""
        arch = self.validate(arch)
        return {"space": self.name, "layers": self.layers(arch), "outputs": self.outputs(arch)}

    def key(self, arch: Mapping[str, Any]) -> str:
        """The network as a graph read from the classifier: each layer's settings and its
        inputs (in concatenation order) by the number a depth-first walk from the
        classifier's inputs gives it. Layer order is not part of the key: assignments that
        list independent layers in another order, their consumers rewired to match (e.g.
        two layers on the image swapped), build the same network and get the same key."""
        layers = self.layers(arch)
        number: dict[int, int] = {}
        nodes: list[list] = []

        def visit(n: int) -> int:
            if n not in number:
                inputs = [visit(j) for j in layers[n]["inputs"]]
                layer = layers[n]
                settings = [layer[k] for k in ("filter_height", "filter_width", "filters")]
                nodes.append([*settings, layer["stride"], inputs])
                number[n] = len(nodes) - 1
            return number[n]

        head = [visit(j) for j in self.outputs(self.validate(arch))]
        return json.dumps({"space": self.name, "layers": nodes, "outputs": head})

    def from_description(self, description: Mapping[str, Any]) -> Arch:
        if not isinstance(description, Mapping) or "layers" not in description:
            raise SpaceError("nasrl description: expected an object with a 'layers' list")
        if description.get("space", self.name) != self.name:
            raise SpaceError(f"nasrl description: 'space' is {description['space']!r}")
        layers = description["layers"]
        if not isinstance(layers, list):
            raise SpaceError("nasrl description: 'layers' must be a list")
        depths = self.values("num_layers")
        if len(layers) not in depths:
            raise SpaceError(
                f"nasrl description: {count(len(layers), 'layer')}, "
                f"the space allows {list(depths)}",
                decision="num_layers",
            )
        arch: dict[str, Any] = dict(self.defaults())
        arch["num_layers"] = len(layers)
        for n, layer in enumerate(layers):
            if not isinstance(layer, Mapping):
                raise SpaceError(f"nasrl description: layer {n} must be an object")
            for key in ("filter_height", "filter_width", "filters"):
                if key not in layer:
                    raise SpaceError(f"nasrl description: layer {n} has no {key!r}")
                arch[f"L{n}/{key}"] = layer[key]
            stride = layer.get("stride", 1)
            if self.strides is not None:
                arch[f"L{n}/stride"] = stride
            elif stride != 1:
                raise SpaceError(
                    f"nasrl description: layer {n} has stride {stride!r}; this space has no "
                    f"stride decision (stride 1)",
                    decision=f"L{n}/stride",
                )
            inputs = list(layer.get("inputs", [n - 1] if n else []))
            bad = [j for j in inputs if not isinstance(j, int) or not 0 <= j < n]
            if bad:
                raise SpaceError(
                    f"nasrl description: layer {n} input {bad[0]!r} is not an earlier layer",
                    decision=f"L{n}/skip{bad[0]}",
                )
            if self.skip_connections:
                for j in range(n):
                    arch[f"L{n}/skip{j}"] = int(j in inputs)
            elif inputs != ([n - 1] if n else []):
                raise SpaceError(
                    f"nasrl description: layer {n} inputs {inputs}; this space is a plain chain"
                )
        return self.canonical(arch)

    # -- model -------------------------------------------------------------------------------

    def _body(self, arch: Arch, image: Any, num_classes: int) -> Any:
        """Layer names: ``L{n}_conv``, ``L{n}_bn``, ``L{n}_relu``, ``L{n}_pad{j}``,
        ``L{n}_concat``, ``head_pad{j}``, ``head_concat``, ``global_pool``, ``classifier``."""
        outputs = []
        for n, layer in enumerate(self.layers(arch)):
            sources = layer["inputs"]
            if sources:
                x = _merge([outputs[j] for j in sources], sources, f"L{n}")
            else:
                x = image
            x = keras.layers.Conv2D(
                layer["filters"],
                (layer["filter_height"], layer["filter_width"]),
                strides=layer["stride"],
                padding="same",
                use_bias=False,
                name=f"L{n}_conv",
            )(x)
            x = ops_lib.BatchNorm(affine=True, name=f"L{n}_bn")(x)
            outputs.append(keras.layers.ReLU(name=f"L{n}_relu")(x))
        heads = self.outputs(arch)
        x = _merge([outputs[j] for j in heads], heads, "head")
        x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
        return keras.layers.Dense(num_classes, name="classifier")(x)


def _prefer(values: tuple[int, ...], wanted: int) -> int:
    return wanted if wanted in values else values[0]


def _merge(tensors: list, sources: list[int], prefix: str):
    """Zero-pads (centred) every tensor to the largest height and width, then concatenates
    along the channels; a single tensor is returned as it is."""
    height = max(int(t.shape[1]) for t in tensors)
    width = max(int(t.shape[2]) for t in tensors)
    padded = []
    for t, j in zip(tensors, sources, strict=True):
        dh, dw = height - int(t.shape[1]), width - int(t.shape[2])
        if dh or dw:
            pad = ((dh // 2, dh - dh // 2), (dw // 2, dw - dw // 2))
            t = keras.layers.ZeroPadding2D(pad, name=f"{prefix}_pad{j}")(t)
        padded.append(t)
    if len(padded) == 1:
        return padded[0]
    return keras.layers.Concatenate(axis=-1, name=f"{prefix}_concat")(padded)
