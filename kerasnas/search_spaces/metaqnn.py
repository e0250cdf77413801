"""MetaQNN's layer space (Baker et al., "Designing Neural Network Architectures using
Reinforcement Learning", ICLR 2017).

A network is a sequence of layers, each a string:

- ``conv_{filters}_{kernel}``: conv (kernel x kernel, stride 1, 'same' padding), ReLU
  (batch norm before the ReLU when ``batch_norm``);
- ``pool_{kernel}_{stride}``: max pooling, 'valid' padding, size -> ceil((R - kernel + 1) / stride);
- ``fc_{units}``: (flatten,) dense, ReLU;
- ``gap``: global average pooling;
- ``softmax``: terminate; the classifier (flatten when spatial, dense to logits) follows.

Transition rules (the paper's, as in the authors' code): a layer may be added only while
depth < ``max_layers``, and ``softmax`` is allowed from every non-terminal state; conv and
``gap`` follow the image, a conv or a pool; pooling follows a conv only (no pool after pool,
none on the image); a conv or pool kernel must be smaller than the representation size R;
an FC layer follows the image, a conv or a pool only when R <= ``fc_max_size`` (default 4),
and another FC layer while fewer than ``max_fc`` (default 2) FC layers are in a row, with at
most as many units as the one before; after ``gap`` only ``softmax``; after FC only FC or
``softmax``. A state carries its depth, layer and R; its representation-size bin is that of
the paper, (inf, 8], (8, 4], (4, 1], named 8, 4, 1.

Two views of the same space:

- decisions ``layer0`` .. ``layer{max_layers-1}`` (Choices of layer strings, each listing
  the layers reachable at that depth); the layers after the first ``softmax`` are inactive,
  and without a ``softmax`` the network terminates after ``max_layers`` layers. ``validate``
  repairs an assignment that breaks a rule by terminating at the first invalid layer.
- the MDP of the Q-learning agent: :meth:`MetaQNNSpace.initial_state`,
  :meth:`~MetaQNNSpace.actions`, :meth:`~MetaQNNSpace.next_state`,
  :meth:`~MetaQNNSpace.is_terminal`, :meth:`~MetaQNNSpace.arch_from_actions`.

Representation sizes are tracked for images of side ``image_size`` (default 8, the digits);
:meth:`~MetaQNNSpace.build` accepts larger images too (the rules then stay satisfied).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import keras
import numpy as np

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

__all__ = ["MetaQNNSpace", "MetaQNNState"]

TERMINAL = "softmax"
START = "start"


class MetaQNNState(NamedTuple):
    """A state of the MetaQNN MDP: a named tuple, so hashable and JSON-serialisable (as the
    list [depth, layer, size, fc_run]).

    Attributes:
      depth: layers so far (0 at the start).
      layer: the last layer's string, ``"start"`` before the first, ``"softmax"`` when terminal.
      size: representation size R (side in pixels; 1 after ``gap`` or FC).
      fc_run: FC layers in a row ending here.
    """

    depth: int
    layer: str
    size: int
    fc_run: int = 0

    @property
    def kind(self) -> str:
        """``start``, ``conv``, ``pool``, ``fc``, ``gap`` or ``softmax``."""
        return self.layer.split("_", 1)[0]

    @property
    def terminal(self) -> bool:
        return self.layer == TERMINAL

    @property
    def bin(self) -> int:
        """The paper's representation-size bin: 8 for R >= 8, 4 for 4 <= R < 8, else 1."""
        return 8 if self.size >= 8 else 4 if self.size >= 4 else 1

    def key(self) -> tuple[int, str, int, int]:
        """(depth, layer, bin, fc_run): the state as the paper's Q table sees it."""
        return (self.depth, self.layer, self.bin, self.fc_run)


def _as_state(state: Any) -> MetaQNNState:
    if isinstance(state, MetaQNNState):
        return state
    try:
        depth, layer, size, fc_run = state
        return MetaQNNState(int(depth), str(layer), int(size), int(fc_run))
    except (TypeError, ValueError):
        raise SpaceError(
            f"metaqnn: a state is [depth, layer, size, fc_run], got {state!r}"
        ) from None


def _ints(values: Sequence[int], what: str, minimum: int = 1) -> tuple[int, ...]:
    return int_values(values, what, "MetaQNNSpace", minimum)


class MetaQNNSpace(DiscreteSpace):
    """MetaQNN's conv / pool / FC / GAP / softmax layer space with its transition rules.

    Args:
      max_layers: most layers before the classifier (paper: 12 to 18; default 6 for 8x8).
      image_size: side R of the input images the rules are evaluated for (smallest side).
      conv_filters: conv output channels (paper: 64, 128, 256, 512).
      conv_kernels: conv kernel sizes (paper: 1, 3, 5).
      pools: (kernel, stride) of the max pools (paper: (5, 3), (3, 2), (2, 2)).
      fc_units: FC widths (paper: 512, 256, 128).
      max_fc: most FC layers in a row (paper: 2).
      fc_max_size: FC layers may follow a conv / pool / the image only at R <= this (code: 4).
      batch_norm: batch norm between each conv and its ReLU (the paper's CIFAR runs: off).
    """

    name = "metaqnn"
    model_name = "metaqnn_child"

    def __init__(
        self,
        max_layers: int = 6,
        image_size: int = 8,
        conv_filters: Sequence[int] = (16, 32, 64),
        conv_kernels: Sequence[int] = (1, 3, 5),
        pools: Sequence[Sequence[int]] = ((5, 3), (3, 2), (2, 2)),
        fc_units: Sequence[int] = (64, 32),
        max_fc: int = 2,
        fc_max_size: int = 4,
        batch_norm: bool = False,
    ):
        super().__init__()
        for what, v in (
            ("max_layers", max_layers),
            ("image_size", image_size),
            ("max_fc", max_fc),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SettingError(f"MetaQNNSpace: {{{what}}} must be an int >= 1, got {v!r}")
        if isinstance(fc_max_size, bool) or not isinstance(fc_max_size, int) or fc_max_size < 0:
            raise ValueError(f"MetaQNNSpace: fc_max_size must be an int >= 0, got {fc_max_size!r}")
        self.max_layers = max_layers
        self.image_size = image_size
        self.conv_filters = _ints(conv_filters, "conv_filters")
        self.conv_kernels = _ints(conv_kernels, "conv_kernels")
        self.pools = tuple(tuple(p) for p in pools)
        for p in self.pools:
            if len(p) != 2 or not all(isinstance(v, int) and v >= 1 for v in p) or p[1] > p[0]:
                raise ValueError(
                    f"MetaQNNSpace: pools must be (kernel, stride) int pairs with "
                    f"1 <= stride <= kernel, got {p!r}"
                )
        if len(set(self.pools)) != len(self.pools):
            raise ValueError(f"MetaQNNSpace: pools lists a pair twice: {self.pools}")
        self.fc_units = _ints(fc_units, "fc_units")
        self.max_fc = max_fc
        self.fc_max_size = fc_max_size
        self.batch_norm = bool(batch_norm)

        convs = [f"conv_{f}_{k}" for f in self.conv_filters for k in self.conv_kernels]
        self.layer_types: tuple[str, ...] = (
            *convs,
            *(f"pool_{k}_{s}" for k, s in self.pools),
            *(f"fc_{u}" for u in self.fc_units),
            "gap",
            TERMINAL,
        )
        self._order = {layer: i for i, layer in enumerate(self.layer_types)}
        self._states_cache: dict[MetaQNNState, list[str]] = {}

        first = [a for a in self.actions(self.initial_state()) if a.startswith("conv_")]
        by_kernel = sorted(first, key=lambda a: (abs(int(a.rsplit("_", 1)[1]) - 3), a))
        reachable = {self.initial_state()}
        for i in range(max_layers):
            seen: set[str] = set()
            following = set()
            for state in reachable:
                for action in self.actions(state):
                    seen.add(action)
                    if action != TERMINAL:
                        following.add(self.next_state(state, action))
            values = tuple(sorted(seen or {TERMINAL}, key=self._order.__getitem__))
            default = by_kernel[0] if i == 0 and by_kernel else TERMINAL
            self._declare(f"layer{i}", values, default, layer=i)
            reachable = following
        self._finish_init()

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "max_layers": self.max_layers,
            "image_size": self.image_size,
            "conv_filters": list(self.conv_filters),
            "conv_kernels": list(self.conv_kernels),
            "pools": [list(p) for p in self.pools],
            "fc_units": list(self.fc_units),
            "max_fc": self.max_fc,
            "fc_max_size": self.fc_max_size,
            "batch_norm": self.batch_norm,
        }

    def reduce(self, arch, width=1.0, depth=1.0, image_size=None):
        """Conv filters and FC units scaled by `width` (FC widths stay non-increasing);
        with `image_size` below the space's, the layers must obey the rules at that size
        (kernels and pools smaller than the representation), else :class:`SpaceError`
        naming the first layer that does not. No `depth`: the layers are the architecture."""
        check_reduction(width, depth, image_size)
        if depth != 1.0:
            raise SpaceError(
                "metaqnn: no depth reduction: the layer sequence is the architecture; "
                "reduce the width or the data"
            )
        arch = self.validate(arch)
        size = self.image_size if image_size is None else min(image_size, self.image_size)
        if width == 1.0 and size == self.image_size:
            return self, arch
        convs = {f: scale_width(f, width) for f in self.conv_filters}
        units = {u: scale_width(u, width) for u in self.fc_units}
        layers = []
        for layer in self.arch_to_actions(arch):
            kind, *args = layer.split("_")
            if kind == "conv":
                layer = f"conv_{convs[int(args[0])]}_{args[1]}"
            elif kind == "fc":
                layer = f"fc_{units[int(args[0])]}"
            layers.append(layer)
        config = {
            **self.get_config(),
            "image_size": size,
            "conv_filters": sorted(set(convs.values())),
            "fc_units": sorted(set(units.values()), reverse=True),
        }
        config.pop("name")
        space = MetaQNNSpace(**config)
        try:
            return space, space.arch_from_actions(layers)
        except SpaceError as e:
            raise SpaceError(
                f"metaqnn: {' '.join(layers)} does not build at image size {size} "
                f"(the space's rules hold for {self.image_size}): {e}",
                decision=e.decision,
            ) from None

    # -- the MDP -----------------------------------------------------------------------------

    def initial_state(self) -> MetaQNNState:
        """The state before the first layer: the image, depth 0, R = image_size."""
        return MetaQNNState(0, START, self.image_size, 0)

    def is_terminal(self, state: MetaQNNState) -> bool:
        """True after ``softmax``."""
        return _as_state(state).terminal

    def actions(self, state: MetaQNNState) -> list[str]:
        """The layer strings allowed after `state` (``softmax`` last; [] when terminal).
        States given as lists (e.g. read back from JSON) are accepted everywhere."""
        state = _as_state(state)
        if state.terminal:
            return []
        cached = self._states_cache.get(state)
        if cached is not None:
            return list(cached)
        allowed = [a for a in self.layer_types if self._reason(state, a) is None]
        self._states_cache[state] = allowed
        return list(allowed)

    def _reason(self, state: MetaQNNState, action: str) -> str | None:
        """Why `action` may not follow `state`, or None when it may."""
        state = _as_state(state)
        if action not in self._order:
            return f"{action!r} is not a layer of this space"
        if state.terminal:
            return "the network has already terminated"
        if action == TERMINAL:
            return None
        if state.depth >= self.max_layers:
            return f"at most {count(self.max_layers, 'layer')}"
        kind, size, prev = action.split("_", 1)[0], state.size, state.kind
        if kind == "conv":
            if prev not in (START, "conv", "pool"):
                return f"conv cannot follow {prev}"
            kernel = int(action.rsplit("_", 1)[1])
            if kernel >= size:
                return f"kernel {kernel} is not smaller than the representation size {size}"
        elif kind == "pool":
            if prev == "pool":
                return "no pool after pool"
            if prev != "conv":
                return f"pooling cannot follow {prev}"
            kernel = int(action.split("_")[1])
            if kernel >= size:
                return f"pool kernel {kernel} is not smaller than the representation size {size}"
        elif kind == "gap":
            if prev not in (START, "conv", "pool"):
                return f"gap cannot follow {prev}"
        elif kind == "fc":
            if prev == "fc":
                if state.fc_run >= self.max_fc:
                    return f"at most {self.max_fc} FC layers in a row"
                if int(action.split("_")[1]) > int(state.layer.split("_")[1]):
                    return "an FC layer cannot be wider than the FC layer before it"
            elif prev in (START, "conv", "pool"):
                if size > self.fc_max_size:
                    return f"FC only from representation size <= {self.fc_max_size} (it is {size})"
            else:
                return f"FC cannot follow {prev}"
        return None

    def next_state(self, state: MetaQNNState, action: str) -> MetaQNNState:
        """The state after adding layer `action`; :class:`SpaceError` when not allowed."""
        state = _as_state(state)
        reason = self._reason(state, action)
        if reason is not None:
            raise SpaceError(f"metaqnn: {action!r} cannot follow {state.layer!r}: {reason}")
        kind = action.split("_", 1)[0]
        size, fc_run = state.size, 0
        if kind == "pool":
            _, kernel, stride = action.split("_")
            size = math.ceil((size - int(kernel) + 1) / int(stride))
        elif kind in ("gap", "fc"):
            size = 1
            fc_run = state.fc_run + 1 if kind == "fc" else 0
        elif kind == TERMINAL:
            fc_run = state.fc_run
        return MetaQNNState(state.depth + 1, action, size, fc_run)

    def arch_from_actions(self, actions: Sequence[str]) -> Arch:
        """The canonical architecture of a trajectory (layer strings, normally ending with
        ``softmax``; without it the network terminates after its last layer). Raises
        :class:`SpaceError` naming ``layer{i}`` for a disallowed action."""
        state = self.initial_state()
        arch = self.defaults()
        for i, action in enumerate(actions):
            if state.terminal:
                raise SpaceError(
                    f"metaqnn: action {i} ({action!r}) comes after the terminal 'softmax'",
                    decision=f"layer{i}",
                )
            reason = self._reason(state, action)
            if reason is not None:
                raise SpaceError(f"metaqnn: layer{i} = {action!r}: {reason}", decision=f"layer{i}")
            if i < self.max_layers:
                arch[f"layer{i}"] = action
            state = self.next_state(state, action)
        if not state.terminal and len(actions) < self.max_layers:
            arch[f"layer{len(actions)}"] = TERMINAL
        return self.canonical(arch)

    def arch_to_actions(self, arch: Mapping[str, Any]) -> list[str]:
        """The trajectory of `arch` (validated): its layers, ending with ``softmax``."""
        arch = self.validate(arch)
        out = []
        for i in range(self.max_layers):
            out.append(arch[f"layer{i}"])
            if out[-1] == TERMINAL:
                return out
        return [*out, TERMINAL]

    def states(self, arch: Mapping[str, Any]) -> list[MetaQNNState]:
        """The states visited by `arch`, from the initial state to the terminal one."""
        state = self.initial_state()
        visited = [state]
        for action in self.arch_to_actions(arch):
            state = self.next_state(state, action)
            visited.append(state)
        return visited

    # -- the Choice view ---------------------------------------------------------------------

    def _check(self, arch: Arch, repair: bool) -> Arch:
        state = self.initial_state()
        for i in range(self.max_layers):
            name = f"layer{i}"
            reason = self._reason(state, arch[name])
            if reason is not None:
                if not repair:
                    raise SpaceError(
                        f"metaqnn: {name} = {arch[name]!r} after {state.layer!r}: {reason}",
                        decision=name,
                    )
                arch[name] = TERMINAL
            state = self.next_state(state, arch[name])
            if state.terminal:
                break
        return arch

    def active_decisions(self, arch: Mapping[str, Any]) -> list[str]:
        names = []
        for i in range(self.max_layers):
            names.append(f"layer{i}")
            if arch[f"layer{i}"] == TERMINAL:
                break
        return names

    def sample(self, rng: np.random.Generator) -> Arch:
        """A random walk through the MDP: each layer uniformly among the allowed actions
        (MetaQNN's epsilon = 1 exploration)."""
        state, actions = self.initial_state(), []
        while not state.terminal:
            allowed = self.actions(state)
            action = allowed[int(rng.integers(len(allowed)))]
            actions.append(action)
            state = self.next_state(state, action)
        return self.arch_from_actions(actions)

    def size(self) -> int:
        """The number of architectures: walks of the MDP, counted state by state."""
        counts: dict[MetaQNNState, int] = {}

        def walks(state: MetaQNNState) -> int:
            if state.terminal:
                return 1
            if state not in counts:
                counts[state] = sum(walks(self.next_state(state, a)) for a in self.actions(state))
            return counts[state]

        return walks(self.initial_state())

    # -- description and model ---------------------------------------------------------------

    def describe(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``{"space": "metaqnn", "layers": [..., "softmax"]}`` (the trajectory)."""
        return {"space": self.name, "layers": self.arch_to_actions(arch)}

    def from_description(self, description: Mapping[str, Any]) -> Arch:
        if not isinstance(description, Mapping) or not isinstance(description.get("layers"), list):
            raise SpaceError("metaqnn description: expected an object with a 'layers' list")
        if description.get("space", self.name) != self.name:
            raise SpaceError(f"metaqnn description: 'space' is {description['space']!r}")
        layers = description["layers"]
        if any(not isinstance(layer, str) for layer in layers):
            raise SpaceError("metaqnn description: 'layers' must be layer strings")
        return self.arch_from_actions(layers)

    def _body(self, arch: Arch, image: Any, num_classes: int) -> Any:
        """Needs min(H, W) >= image_size. Layer names: ``layer{i}_conv``/``_bn``/``_relu``,
        ``layer{i}_pool``, ``layer{i}_flatten``, ``layer{i}_fc``/``_relu``, ``layer{i}_gap``,
        ``flatten``, ``classifier``."""
        size = tuple(int(d) for d in image.shape[1:3])
        if min(size) < self.image_size:
            raise ValueError(
                f"MetaQNNSpace.build: input {size} is smaller than the image_size "
                f"{self.image_size} the space's rules assume; make the space with "
                f"image_size={min(size)}"
            )
        layers = self.arch_to_actions(arch)
        x = image
        L = keras.layers
        for i, layer in enumerate(layers[:-1]):
            kind, *args = layer.split("_")
            p = f"layer{i}"
            if kind == "conv":
                filters, kernel = int(args[0]), int(args[1])
                x = L.Conv2D(
                    filters, kernel, padding="same", use_bias=not self.batch_norm, name=f"{p}_conv"
                )(x)
                if self.batch_norm:
                    x = ops_lib.BatchNorm(affine=True, name=f"{p}_bn")(x)
                x = L.ReLU(name=f"{p}_relu")(x)
            elif kind == "pool":
                x = L.MaxPooling2D(int(args[0]), int(args[1]), padding="valid", name=f"{p}_pool")(x)
            elif kind == "gap":
                x = L.GlobalAveragePooling2D(name=f"{p}_gap")(x)
            else:  # fc
                if len(x.shape) > 2:
                    x = L.Flatten(name=f"{p}_flatten")(x)
                x = L.Dense(int(args[0]), name=f"{p}_fc")(x)
                x = L.ReLU(name=f"{p}_relu")(x)
        if len(x.shape) > 2:
            x = L.Flatten(name="flatten")(x)
        return L.Dense(num_classes, name="classifier")(x)
