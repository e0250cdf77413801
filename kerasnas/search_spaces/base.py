"""The contract of the discrete search spaces searched by trial-based strategies.

An architecture is a dict ``{decision name: value}``. A space is an ordered list of
categorical decisions (values are ints or strings), exposed to keras-tuner oracles as one
``hp.Choice(name, values, ordered=False)`` per decision, in a fixed order. Every assignment
of those Choices is either a valid architecture or is mapped to one deterministically by
:meth:`DiscreteSpace.validate` (``repair=True``), so any oracle can search any space.

Decisions that the built model does not depend on (the layers past ``num_layers`` of the
chain space, the layers after the terminal of the MetaQNN space) are *inactive*: they are
kept as given by :meth:`~DiscreteSpace.validate`, set to their defaults by
:meth:`~DiscreteSpace.canonical`, and never chosen by :meth:`~DiscreteSpace.mutate`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import keras_tuner
import numpy as np

from kerasnas.resource import Cost, network_cost

Value = int | str
Arch = dict[str, Value]

__all__ = ["Arch", "DiscreteSpace", "SpaceError", "SpaceHyperModel"]


class SpaceError(ValueError):
    """An invalid architecture or description; ``decision`` names the offending decision
    (None when the problem is not one decision's)."""

    def __init__(self, message: str, decision: str | None = None):
        super().__init__(message)
        self.decision = decision


class DiscreteSpace:
    """Base class of the discrete spaces (``nasrl``, ``metaqnn``, ``cell``).

    Subclasses set ``name``, fill ``self._decisions`` (list of (name, values)) and
    ``self._defaults`` in ``__init__``, and implement :meth:`build`, :meth:`describe`,
    :meth:`from_description` and :meth:`get_config`; they override :meth:`_check`
    (rule checks / repairs), :meth:`active_decisions` and :meth:`sample` as needed.
    """

    name: str = "discrete"

    def __init__(self) -> None:
        self._decisions: list[tuple[str, tuple[Value, ...]]] = []
        self._defaults: dict[str, Value] = {}
        self._index: dict[str, int] = {}
        self._cost_cache: dict[tuple, Cost] = {}

    def _finish_init(self) -> None:
        """Checks the declared decisions; call at the end of a subclass ``__init__``."""
        self._index = {}
        for i, (name, values) in enumerate(self._decisions):
            if name in self._index:
                raise ValueError(f"{self.name}: decision {name!r} declared twice")
            if not values:
                raise ValueError(f"{self.name}: decision {name!r} has no values")
            kinds = {type(v) for v in values}
            if kinds not in ({int}, {str}):
                raise ValueError(f"{self.name}: decision {name!r} needs all-int or all-str values")
            if len(set(values)) != len(values):
                raise ValueError(f"{self.name}: decision {name!r} lists a value twice: {values}")
            if self._defaults.get(name, values[0]) not in values:
                raise ValueError(f"{self.name}: default of {name!r} is not one of its values")
            self._defaults.setdefault(name, values[0])
            self._index[name] = i

    # -- the decisions -----------------------------------------------------------------------

    def decisions(self) -> list[tuple[str, tuple[Value, ...]]]:
        """Every decision as (name, values), in the fixed order the Choices are declared."""
        return list(self._decisions)

    def values(self, name: str) -> tuple[Value, ...]:
        """The values of decision `name`."""
        self._check_name(name)
        return self._decisions[self._index[name]][1]

    def defaults(self) -> Arch:
        """The default value of every decision (a valid architecture)."""
        return {name: self._defaults[name] for name, _ in self._decisions}

    def hyperparameters(self) -> keras_tuner.HyperParameters:
        """A fresh ``HyperParameters`` with one ``Choice(name, values, ordered=False,
        default=...)`` per decision, in :meth:`decisions` order."""
        hp = keras_tuner.HyperParameters()
        self.declare(hp)
        return hp

    def declare(self, hp: keras_tuner.HyperParameters) -> Arch:
        """Declares every decision's Choice in `hp` (registering it when missing) and
        returns the validated architecture of its current values."""
        raw = {
            name: hp.Choice(name, list(values), ordered=False, default=self._defaults[name])
            for name, values in self._decisions
        }
        return self.validate(raw)

    def from_hyperparameters(self, hp: keras_tuner.HyperParameters | Mapping[str, Any]) -> Arch:
        """The validated (repaired) architecture of a ``HyperParameters`` or of its
        ``.values`` dict; names that are not decisions (e.g. ``tuner/epochs``) are ignored."""
        values = hp.values if isinstance(hp, keras_tuner.HyperParameters) else dict(hp)
        return self.validate({k: v for k, v in values.items() if k in self._index})

    # -- validity ----------------------------------------------------------------------------

    def validate(self, arch: Mapping[str, Any], repair: bool = True) -> Arch:
        """The architecture as a complete dict in decision order.

        Missing decisions take their defaults; numpy scalars become ints. An unknown name
        or a value outside a decision's values raises :class:`SpaceError` naming the
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
        for name, values in self._decisions:
            value = arch[name] if name in arch else self._defaults[name]
            out[name] = self._coerce(name, value, values)
        return self._check(out, repair)

    def is_valid(self, arch: Mapping[str, Any]) -> bool:
        """Whether `arch` is complete and valid as it is (needs no repair)."""
        try:
            return self.validate(arch, repair=False) == dict(arch)
        except SpaceError:
            return False

    def _coerce(self, name: str, value: Any, values: tuple[Value, ...]) -> Value:
        if isinstance(values[0], int):
            if isinstance(value, (bool, np.bool_)):
                value = int(value)
            if isinstance(value, np.integer):
                value = int(value)
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
        """Names of the decisions the model built from `arch` depends on (default: all)."""
        return [name for name, _ in self._decisions]

    def canonical(self, arch: Mapping[str, Any]) -> Arch:
        """The validated `arch` with every inactive decision set to its default: two
        architectures give the same model iff their canonical forms are equal."""
        arch = self.validate(arch)
        active = set(self.active_decisions(arch))
        return {k: (v if k in active else self._defaults[k]) for k, v in arch.items()}

    def key(self, arch: Mapping[str, Any]) -> str:
        """A hashable string identifying the model of `arch` (JSON of :meth:`describe`)."""
        return json.dumps(self.describe(arch), sort_keys=True, separators=(",", ":"))

    # -- search operators --------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Arch:
        """A random valid architecture: each decision uniformly, then repaired."""
        arch = {name: values[int(rng.integers(len(values)))] for name, values in self._decisions}
        return self.validate(arch)

    def mutate(self, arch: Mapping[str, Any], rng: np.random.Generator) -> Arch:
        """`arch` with exactly one active decision changed to another value such that the
        result is valid as it is (no repair). The decision is drawn uniformly among the
        active ones that have such a value, then the value uniformly."""
        arch = self.validate(arch)
        names = self.active_decisions(arch)
        for i in rng.permutation(len(names)):
            name = names[int(i)]
            others = [v for v in self.values(name) if v != arch[name]]
            for j in rng.permutation(len(others)):
                child = dict(arch)
                child[name] = others[int(j)]
                if self.is_valid(child):
                    return child
        raise SpaceError(f"{self.name}: no single-decision mutation of this architecture")

    # -- models ------------------------------------------------------------------------------

    def build(
        self,
        arch: Mapping[str, Any],
        input_shape: Sequence[int],
        num_classes: int,
        preprocessing: keras.layers.Layer | None = None,
    ) -> keras.Model:
        """The model of `arch` (validated and repaired first): raw images (B, H, W, C) ->
        logits (B, num_classes); `preprocessing` (e.g. normalisation) is its first layer."""
        raise NotImplementedError

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
        raise ValueError(f"{owner}: {what} must be a non-empty list of ints >= {minimum}")
    if len(set(out)) != len(out):
        raise ValueError(f"{owner}: {what} lists a value twice: {out}")
    return out


def _check_shape(input_shape: Sequence[int], num_classes: int, where: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{where}: input_shape must be (H, W, C), got {tuple(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"{where}: num_classes must be an int >= 1, got {num_classes!r}")
    return shape


class SpaceHyperModel(keras_tuner.HyperModel):
    """A discrete space as a keras-tuner ``HyperModel``, so stock tuners (``RandomSearch``,
    ``BayesianOptimization``, ``Hyperband``) search it.

    ``build(hp)`` declares the space's Choices, repairs the assignment and returns the model
    compiled with `optimizer` ("adam" or "sgd", momentum 0.9) at `learning_rate`, sparse
    categorical cross-entropy from logits and the ``accuracy`` metric. The model takes raw
    images of `input_shape` (H, W, C); pass e.g. ``data.normalization_layer()`` as
    `preprocessing` (it is copied for every model).
    """

    def __init__(
        self,
        space: DiscreteSpace,
        input_shape: Sequence[int],
        num_classes: int,
        preprocessing: keras.layers.Layer | None = None,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        name: str | None = None,
        tunable: bool = True,
    ):
        super().__init__(name=name, tunable=tunable)
        if not isinstance(space, DiscreteSpace):
            raise ValueError(f"SpaceHyperModel: space must be a DiscreteSpace, got {space!r}")
        if optimizer not in ("adam", "sgd"):
            raise ValueError(
                f"SpaceHyperModel: optimizer must be 'adam' or 'sgd', got {optimizer!r}"
            )
        if not learning_rate > 0:
            raise ValueError(f"SpaceHyperModel: learning_rate must be > 0, got {learning_rate}")
        self.space = space
        self.input_shape = _check_shape(input_shape, num_classes, "SpaceHyperModel")
        self.num_classes = int(num_classes)
        self.preprocessing = preprocessing
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        arch = self.space.declare(hp)
        preprocessing = _copy_layer(self.preprocessing, self.input_shape)
        model = self.space.build(arch, self.input_shape, self.num_classes, preprocessing)
        if self.optimizer == "adam":
            opt = keras.optimizers.Adam(self.learning_rate)
        else:
            opt = keras.optimizers.SGD(self.learning_rate, momentum=0.9)
        model.compile(
            optimizer=opt,
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        return model


def _copy_layer(
    layer: keras.layers.Layer | None, input_shape: tuple[int, ...]
) -> keras.layers.Layer | None:
    """A fresh copy of `layer` (config, and weights when it has any, e.g. an adapted
    ``Normalization``), so every model gets its own."""
    if layer is None:
        return None
    copy = layer.__class__.from_config(layer.get_config())
    if layer.weights:
        copy.build((None, *input_shape))
        copy.set_weights(layer.get_weights())
        copy.finalize_state()  # e.g. Normalization derives its mean from the weights
    return copy
