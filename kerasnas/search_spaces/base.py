"""The contract of the discrete search spaces searched by trial-based strategies.

An architecture is a dict ``{decision name: value}``. A space is an ordered list of
categorical decisions (values all ints, floats or strings), exposed to keras-tuner as one
``hp.Choice(name, values, ordered=False)`` per decision, in a fixed order. Every assignment
of those Choices is either a valid architecture or is mapped to one deterministically by
:meth:`DiscreteSpace.validate` (``repair=True``), so any strategy can search any space.

The space alone decides what the strategies need to know:

- structure, *declared* per decision (:class:`Decision`): the chain layer it belongs to and,
  for an anchor-point skip, the layer it reads from; and the space's depth decision, if any
  (``depth_decision``; the layers at or past its value are inactive);
- which decisions are active (:meth:`~DiscreteSpace.active_decisions`): decisions the built
  model does not depend on (the layers past ``num_layers`` of the chain space, the layers
  after the terminal of the MetaQNN space) are *inactive*: kept as given by
  :meth:`~DiscreteSpace.validate`, set to their defaults by
  :meth:`~DiscreteSpace.canonical`, never changed by :meth:`~DiscreteSpace.mutate`;
- which assignments are the same architecture (:meth:`~DiscreteSpace.key`: equal exactly
  when the built models have the same structure);
- the search operators: :meth:`~DiscreteSpace.sample`, :meth:`~DiscreteSpace.mutate` /
  :meth:`~DiscreteSpace.apply`, the index encoding of the controllers
  (:meth:`~DiscreteSpace.to_indices`, :meth:`~DiscreteSpace.from_indices`) and the MDP of
  Q-learning (:meth:`~DiscreteSpace.initial_state`, ...; by default a chain of the decisions).

keras_tuner is imported only when a method needs it (``hyperparameters``, ``declare``,
``from_hyperparameters``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from kerasnas.errors import SettingError
from kerasnas.resource import Cost, network_cost
from kerasnas.wording import count

if TYPE_CHECKING:
    import keras_tuner

Value = int | float | str
Arch = dict[str, Value]

__all__ = [
    "Arch",
    "Decision",
    "DiscreteSpace",
    "SpaceError",
    "check_shape",
    "check_reduction",
    "int_values",
    "scale_width",
]

_EXACT_SIZE_LIMIT = 100_000  # size(): enumerate spaces of at most this many assignments


class SpaceError(SettingError):
    """An invalid architecture or description; ``decision`` names the offending decision
    (None when the problem is not one decision's)."""

    def __init__(self, message: str, decision: str | None = None):
        super().__init__(message)
        self.decision = decision


@dataclasses.dataclass(frozen=True)
class Decision:
    """One categorical decision: its values (all ints, floats or strings) and default, the
    chain layer it belongs to (None: not a layer's) and, for an anchor-point skip connection
    into that layer, the earlier layer it reads from (`skip_from`; values 0 = off, 1 = on)."""

    name: str
    values: tuple[Value, ...]
    default: Value
    layer: int | None = None
    skip_from: int | None = None


class DiscreteSpace:
    """Base class of the discrete spaces (``nasrl``, ``metaqnn``, ``cell``, and
    :class:`~kerasnas.search_spaces.hyperparameters.HyperParameterSpace`).

    Subclasses set ``name`` and ``model_name``, declare their decisions with
    :meth:`_declare` (and ``depth_decision``) in ``__init__``, then call
    :meth:`_finish_init`; they implement :meth:`_body` (the model), :meth:`describe`,
    :meth:`from_description` and :meth:`get_config`, and override :meth:`_check` (rule
    checks / repairs), :meth:`active_decisions`, :meth:`key`, :meth:`sample` and the MDP
    methods as needed.
    """

    name: str = "discrete"
    model_name: str = "child"

    def __init__(self) -> None:
        self._decisions: list[Decision] = []
        self._index: dict[str, int] = {}
        self._defaults: dict[str, Value] = {}
        self.depth_decision: str | None = None
        self._cost_cache: dict[tuple, Cost] = {}

    def _declare(
        self,
        name: str,
        values: Sequence[Value],
        default: Value | None = None,
        layer: int | None = None,
        skip_from: int | None = None,
    ) -> None:
        """Appends a decision (`default` None: its first value)."""
        values = tuple(values)
        if default is None and values:
            default = values[0]
        self._decisions.append(Decision(name, values, default, layer, skip_from))

    def _finish_init(self) -> None:
        """Checks the declared decisions; call at the end of a subclass ``__init__``."""
        self._index = {}
        for i, d in enumerate(self._decisions):
            where = f"{self.name}: decision {d.name!r}"
            if d.name in self._index:
                raise ValueError(f"{where} declared twice")
            if not d.values:
                raise ValueError(f"{where} has no values")
            if {type(v) for v in d.values} not in ({int}, {float}, {str}):
                raise ValueError(f"{where} needs all-int, all-float or all-str values")
            if len(set(d.values)) != len(d.values):
                raise ValueError(f"{where} lists a value twice: {d.values}")
            if d.default not in d.values:
                raise ValueError(f"{self.name}: default of {d.name!r} is not one of its values")
            if d.layer is not None and (not isinstance(d.layer, int) or d.layer < 0):
                raise ValueError(f"{where}: layer must be an int >= 0, got {d.layer!r}")
            if d.skip_from is not None:
                if sorted(d.values) != [0, 1]:
                    raise ValueError(f"{d.name!r} must have the values [0, 1], got {d.values}")
                if d.layer is None or not 0 <= d.skip_from < d.layer:
                    raise ValueError(f"{d.name!r}: a skip must come from an earlier layer")
            self._index[d.name] = i
        self._defaults = {d.name: d.default for d in self._decisions}
        if self.depth_decision is not None:
            self._check_name(self.depth_decision)
            depths = self.values(self.depth_decision)
            if not all(isinstance(v, int) and v >= 0 for v in depths):
                raise ValueError(
                    f"{self.depth_decision} values must be non-negative ints, got {depths}"
                )

    # -- the decisions -----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._decisions)

    def decisions(self) -> list[tuple[str, tuple[Value, ...]]]:
        """Every decision as (name, values), in the fixed order the Choices are declared."""
        return [(d.name, d.values) for d in self._decisions]

    def decision(self, which: int | str) -> Decision:
        """The declared :class:`Decision` at position `which` or called `which`."""
        if isinstance(which, str):
            self._check_name(which)
            which = self._index[which]
        return self._decisions[which]

    def index(self, name: str) -> int:
        """The position of decision `name`."""
        self._check_name(name)
        return self._index[name]

    def values(self, name: str) -> tuple[Value, ...]:
        """The values of decision `name`."""
        return self.decision(name).values

    def defaults(self) -> Arch:
        """The default value of every decision (a valid architecture)."""
        return dict(self._defaults)

    @property
    def depth_index(self) -> int | None:
        """The position of the depth decision (None without one)."""
        return None if self.depth_decision is None else self._index[self.depth_decision]

    def hyperparameters(self) -> keras_tuner.HyperParameters:
        """A fresh ``HyperParameters`` with one ``Choice(name, values, ordered=False,
        default=...)`` per decision, in :meth:`decisions` order."""
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        self.declare(hp)
        return hp

    def declare(self, hp: keras_tuner.HyperParameters) -> Arch:
        """Declares every decision's Choice in `hp` (registering it when missing) and
        returns the validated architecture of its current values."""
        raw = {
            d.name: hp.Choice(d.name, list(d.values), ordered=False, default=d.default)
            for d in self._decisions
        }
        return self.validate(raw)

    def from_hyperparameters(self, hp: keras_tuner.HyperParameters | Mapping[str, Any]) -> Arch:
        """The validated (repaired) architecture of a ``HyperParameters`` or of its
        ``.values`` dict; names that are not decisions (e.g. ``tuner/epochs``) are ignored."""
        import keras_tuner

        values = hp.values if isinstance(hp, keras_tuner.HyperParameters) else dict(hp)
        return self.validate({k: v for k, v in values.items() if k in self._index})

    # -- validity ----------------------------------------------------------------------------

    def validate(self, arch: Mapping[str, Any], repair: bool = True) -> Arch:
        """The architecture as a complete dict in decision order.

        Missing decisions take their defaults; numpy scalars become Python ones. An unknown
        name or a value outside a decision's values raises :class:`SpaceError` naming the
        decision. An assignment that breaks the space's rules is mapped to a valid one
        deterministically when `repair`, else raises :class:`SpaceError` naming the first
        decision at fault.
        """
        if not isinstance(arch, Mapping):
            raise SpaceError(
                f"{self.name}: an architecture is a dict of decisions, got {type(arch).__name__}"
            )
        for key in arch:
            if key not in self._index:
                raise SpaceError(f"{self.name}: unknown decision {key!r}", decision=str(key))
        out: Arch = {}
        for d in self._decisions:
            value = arch[d.name] if d.name in arch else d.default
            out[d.name] = self._coerce(d.name, value, d.values)
        return self._check(out, repair)

    def is_valid(self, arch: Mapping[str, Any]) -> bool:
        """Whether `arch` is complete and valid as it is (needs no repair)."""
        try:
            return self.validate(arch, repair=False) == dict(arch)
        except SpaceError:
            return False

    def _coerce(self, name: str, value: Any, values: tuple[Value, ...]) -> Value:
        if isinstance(values[0], int):
            if isinstance(value, (bool, np.bool_, np.integer)):
                value = int(value)
        elif isinstance(values[0], float):
            if isinstance(value, np.floating):
                value = float(value)
        elif isinstance(value, np.str_):
            value = str(value)
        if type(value) is not type(values[0]) or value not in values:
            shown = ", ".join(repr(v) for v in values)
            raise SpaceError(
                f"{self.name}: decision {name!r} must be one of [{shown}], got {value!r}",
                decision=name,
            )
        return value

    def _check(self, arch: Arch, repair: bool) -> Arch:
        """Applies the space's rules to a complete arch of legal values (default: none)."""
        return arch

    def active_decisions(self, arch: Mapping[str, Any]) -> list[str]:
        """Names of the decisions the model built from `arch` (a complete assignment)
        depends on. Default: every decision but those of layers >= the depth's value."""
        depth = None if self.depth_decision is None else arch[self.depth_decision]
        return [
            d.name for d in self._decisions if depth is None or d.layer is None or d.layer < depth
        ]

    def active_mask(self, arch: Mapping[str, Any]) -> list[bool]:
        """Per decision, in order: whether it is active in `arch` (validated first)."""
        active = set(self.active_decisions(self.validate(arch)))
        return [d.name in active for d in self._decisions]

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The validated `arch` with every inactive decision set to its default. Equal
        canonical forms give the same model; the converse is :meth:`key`'s (e.g. the two
        (input, op) pairs of a cell node listed in either order are one architecture)."""
        arch = self.validate(arch)
        active = set(self.active_decisions(arch))
        return {k: (v if k in active else self._defaults[k]) for k, v in arch.items()}

    def key(self, arch: Mapping[str, Any]) -> str:
        """A string identifying the model of `arch`: two assignments have the same key
        exactly when their models have the same structure. Default: the JSON of
        :meth:`describe`; spaces whose descriptions can differ for one model override it."""
        return json.dumps(self.describe(arch), sort_keys=True, separators=(",", ":"))

    # -- index encoding (the controllers') ---------------------------------------------------

    def to_indices(self, arch: Mapping[str, Any]) -> list[int]:
        """The index of each decision's value in its values, in decision order."""
        arch = self.validate(arch)
        return [d.values.index(arch[d.name]) for d in self._decisions]

    def from_indices(self, indices: Sequence[Any]) -> Arch:
        """The canonical architecture of value indices (one per decision, in order)."""
        if len(indices) != len(self._decisions):
            raise SpaceError(
                f"{self.name}: {count(len(indices), 'index', 'indices')} for "
                f"{count(len(self._decisions), 'decision')}"
            )
        return self.canonical(
            {d.name: d.values[int(i)] for d, i in zip(self._decisions, indices, strict=True)}
        )

    # -- search operators --------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Arch:
        """A random valid architecture: each decision uniformly, then repaired."""
        arch = {d.name: d.values[int(rng.integers(len(d.values)))] for d in self._decisions}
        return self.validate(arch)

    def moves(self, arch: Mapping[str, Any], index: int) -> list[int]:
        """The value indices decision `index` may take in a mutation of `arch`: other values
        that keep the architecture valid without repair and change its model (key); [] for
        an inactive decision. Checked on the canonical form of `arch`."""
        base = self.canonical(arch)
        return self._moves(base, set(self.active_decisions(base)), self.key(base), index)

    def _moves(
        self, base: Arch, active: set[str], base_key: str, index: int, first: bool = False
    ) -> list[int]:
        d = self._decisions[index]
        out = []
        if d.name not in active:
            return out
        for k, value in enumerate(d.values):
            if value == base[d.name]:
                continue
            child = dict(base)
            child[d.name] = value
            if self.is_valid(child) and self.key(child) != base_key:
                out.append(k)
                if first:
                    break
        return out

    def mutable(self, arch: Mapping[str, Any]) -> list[int]:
        """Positions of the decisions a mutation of `arch` may change: the active ones with
        at least one of :meth:`moves`."""
        base = self.canonical(arch)
        active, base_key = set(self.active_decisions(base)), self.key(base)
        return [
            i
            for i in range(len(self._decisions))
            if self._moves(base, active, base_key, i, first=True)
        ]

    def apply(
        self, arch: Mapping[str, Any], index: int, value_index: int, rng: np.random.Generator
    ) -> Arch:
        """`arch` (validated) with decision `index` set to its value `value_index`.

        Decisions the change switches on (e.g. the layers a larger ``num_layers`` adds, the
        layer after a MetaQNN ``softmax`` replaced by a conv) get uniformly random values,
        in decision order and again for those these switch on: their values in `arch` were
        never searched (defaults in a canonical parent), so keeping them would bias every
        grown part towards the defaults. The result is validated with repair: a change that
        breaks a rule (a controller's proposal; :meth:`mutate` proposes none) is repaired
        like any assignment, and so are random values that break one (a MetaQNN layer not
        allowed where it lands ends the network there). Decisions inactive in the result
        keep their values in `arch`.
        """
        arch = self.validate(arch)
        d = self._decisions[int(index)]
        child = dict(arch)
        child[d.name] = d.values[int(value_index)]
        known = set(self.active_decisions(arch)) | {d.name}
        while True:
            fresh = [n for n in self.active_decisions(child) if n not in known]
            if not fresh:
                break
            for name in fresh:
                values = self._decisions[self._index[name]].values
                child[name] = values[int(rng.integers(len(values)))]
            known.update(fresh)
        child = self.validate(child)
        active = set(self.active_decisions(child))
        return self.validate({k: (v if k in active else arch[k]) for k, v in child.items()})

    def mutate(self, arch: Mapping[str, Any], rng: np.random.Generator) -> Arch:
        """`arch` (validated) with exactly one active decision changed to another value such
        that the result is valid without repair and builds another model: the decision
        uniformly among :meth:`mutable`, the value uniformly among its :meth:`moves`, then
        :meth:`apply` (decisions the change switches on get random values)."""
        arch = self.validate(arch)
        candidates = self.mutable(arch)
        if not candidates:
            raise SpaceError(f"{self.name}: no decision of this architecture can be mutated")
        index = candidates[int(rng.integers(len(candidates)))]
        moves = self.moves(arch, index)
        return self.apply(arch, index, moves[int(rng.integers(len(moves)))], rng)

    # -- the MDP of Q-learning (default: a chain of the decisions) ---------------------------

    def initial_state(self) -> Any:
        """The state before the first action. Default chain: ``[position, last action,
        depth]``, the next decision to make (``len(space)`` at the end), the last value made
        (a string; None at the start) and the depth chosen (None before it or without a
        depth decision); JSON-serialisable, as every state must be (states key Q tables)."""
        return [0, None, None]

    def is_terminal(self, state: Any) -> bool:
        """Whether `state` ends a walk."""
        return state[0] >= len(self._decisions)

    def actions(self, state: Any) -> list[str]:
        """The actions allowed in `state` (strings; [] when terminal). Default chain: the
        values of the next decision as strings."""
        if self.is_terminal(state):
            return []
        return [str(v) for v in self._decisions[state[0]].values]

    def next_state(self, state: Any, action: str) -> Any:
        """The state after `action`. Default chain: the next decision, skipping the layers
        at or past a depth already chosen (they would be inactive)."""
        position, _, depth = state
        value = self._action_value(position, action)
        if position == self.depth_index:
            depth = value
        position += 1
        while position < len(self._decisions) and self._skipped(position, depth):
            position += 1
        return [position, action, depth]

    def arch_from_actions(self, actions: Sequence[str]) -> Arch:
        """The canonical architecture of a walk (decisions not walked take defaults)."""
        state, arch = self.initial_state(), {}
        for i, action in enumerate(actions):
            if self.is_terminal(state):
                raise SpaceError(f"{self.name}: action {i} ({action!r}) comes after the end")
            arch[self._decisions[state[0]].name] = self._action_value(state[0], action)
            state = self.next_state(state, action)
        return self.canonical(arch)

    def _skipped(self, position: int, depth: int | None) -> bool:
        layer = self._decisions[position].layer
        return depth is not None and layer is not None and layer >= depth

    def _action_value(self, position: int, action: str) -> Value:
        d = self._decisions[position]
        for v in d.values:
            if str(v) == action:
                return v
        raise SpaceError(f"{self.name}: {action!r} is not a value of {d.name!r}", d.name)

    # -- counting ----------------------------------------------------------------------------

    def enumerate(self) -> Iterator[Arch]:
        """Every distinct architecture (by :meth:`key`) once, canonical, in the order of
        the walks of the MDP (actions in order); for small spaces."""
        seen: set[str] = set()
        stack = [(self.initial_state(), [])]
        while stack:
            state, actions = stack.pop()
            if self.is_terminal(state):
                arch = self.arch_from_actions(actions)
                key = self.key(arch)
                if key not in seen:
                    seen.add(key)
                    yield arch
                continue
            for action in reversed(self.actions(state)):
                stack.append((self.next_state(state, action), [*actions, action]))

    def size(self) -> int:
        """The number of distinct architectures: counted by :meth:`enumerate` when the space
        has at most 100,000 assignments with inactive decisions at their defaults, else that
        number of assignments (an upper bound when several build the same model)."""
        count = self._count_assignments()
        if count <= _EXACT_SIZE_LIMIT:
            return sum(1 for _ in self.enumerate())
        return count

    def _count_assignments(self) -> int:
        depths = [None] if self.depth_decision is None else self.values(self.depth_decision)
        total = 0
        for depth in set(depths):
            sizes = [
                len(d.values)
                for d in self._decisions
                if d.name != self.depth_decision
                and (depth is None or d.layer is None or d.layer < depth)
            ]
            total += int(np.prod(sizes, dtype=object))
        return total

    # -- models ------------------------------------------------------------------------------

    def build(
        self,
        arch: Mapping[str, Any],
        input_shape: Sequence[int],
        num_classes: int,
        preprocessing: keras.layers.Layer | None = None,
    ) -> keras.Model:
        """The model of `arch` (validated and repaired first), called ``model_name``: raw
        images (B, H, W, C) -> logits (B, num_classes). Its layers: the input ``image``,
        `preprocessing` (e.g. normalisation) when given, then the space's (``_body``)."""
        shape = check_shape(input_shape, num_classes, f"{type(self).__name__}.build")
        arch = self.validate(arch)
        inputs = keras.Input(shape, name="image")
        image = preprocessing(inputs) if preprocessing is not None else inputs
        logits = self._body(arch, image, int(num_classes))
        return keras.Model(inputs, logits, name=self.model_name)

    def _body(self, arch: Arch, image: Any, num_classes: int) -> Any:
        """The logits tensor (B, num_classes) of the validated `arch` on the preprocessed
        image tensor (B, H, W, C)."""
        raise NotImplementedError(f"{type(self).__name__} builds no models")

    def cost(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Cost:
        """Params, mult-adds and memory access of the model of `arch` for one example,
        without preprocessing: ``resource.network_cost(self.build(arch, ...))``."""
        shape = tuple(int(d) for d in input_shape)
        cache_key = (self.key(arch), shape, int(num_classes))
        if cache_key not in self._cost_cache:
            if len(self._cost_cache) >= 1024:
                self._cost_cache.clear()
            self._cost_cache[cache_key] = network_cost(self.build(arch, shape, num_classes))
        return self._cost_cache[cache_key]

    def describe(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON-serialisable description of the model of `arch` (what is written to disk)."""
        raise NotImplementedError

    def from_description(self, description: Mapping[str, Any]) -> Arch:
        """The canonical architecture of a :meth:`describe` dict."""
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments plus ``name``: ``get_space(**config)`` rebuilds the space."""
        raise NotImplementedError

    def reduce(
        self,
        arch: Mapping[str, Any],
        width: float = 1.0,
        depth: float = 1.0,
        image_size: int | None = None,
    ) -> tuple[DiscreteSpace, Arch]:
        """A smaller model of `arch` for a lower-fidelity estimate: ``(space, arch)`` of it,
        `self` and the validated `arch` when nothing is reduced. The trial keeps the full
        `arch`; this one is only trained for the estimate.

        Args:
          width: multiplier of every filter / channel / unit count, in (0, 1]; each count
            becomes ``max(1, round(count * width))``.
          depth: multiplier of the number of cells, in (0, 1], where the space has a depth
            separate from the architecture (the cell space); a chain space's depth is part
            of the architecture.
          image_size: the side (pixels, the shorter one) of the images the reduced model
            will see, for spaces whose rules depend on it; None: the data's.

        The base class reduces nothing: any `width` or `depth` below 1 raises
        :class:`SpaceError`.
        """
        check_reduction(width, depth, image_size)
        if width != 1.0 or depth != 1.0:
            raise SpaceError(f"{self.name}: this space has no width or depth reduction")
        return self, self.validate(arch)

    def _check_name(self, name: str) -> None:
        if name not in self._index:
            raise SpaceError(f"{self.name}: unknown decision {name!r}", decision=name)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def int_values(values: Sequence[int], what: str, owner: str, minimum: int = 1) -> tuple[int, ...]:
    """`values` as a tuple of distinct ints >= `minimum`; ValueError naming `owner`'s `what`."""
    out = tuple(values)
    if not out or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in out):
        raise SettingError(f"{owner}: {{{what}}} must be a non-empty list of ints >= {minimum}")
    if len(set(out)) != len(out):
        raise SettingError(f"{owner}: {{{what}}} lists a value twice: {out}")
    return out


def check_shape(input_shape: Sequence[int], num_classes: int, where: str) -> tuple[int, ...]:
    """`input_shape` as an (H, W, C) tuple of ints >= 1; ValueError naming `where` when it
    is not one or `num_classes` is not an int >= 1."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{where}: input_shape must be (H, W, C), got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes!r}")
    return shape


def check_reduction(width: float, depth: float, image_size: int | None) -> None:
    """ValueError naming `width`, `depth` or `image_size` when it is not a multiplier in
    (0, 1] (an int >= 1 for `image_size`, or None)."""
    for name, value in (("width", width), ("depth", depth)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise ValueError(f"reduce: {name} must be a number in (0, 1], got {value!r}")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"reduce: image_size must be an int >= 1 or None, got {image_size!r}")


def scale_width(count_: int, width: float) -> int:
    """``count_ * width`` rounded half up, at least 1 (a reduced filter / unit count)."""
    return max(1, int(math.floor(count_ * width + 0.5)))
