"""Any ``keras_tuner.HyperParameters`` of ``hp.Choice`` entries as a discrete space, so the
strategies can search users' own spaces with a stock ``keras_tuner.Tuner``.

This adapter is the one place where structure is read from decision names: a decision named
``num_layers`` (non-negative ints) is the depth of a chain space, decisions ``L{n}/...``
belong to layer n (inactive when ``n >= num_layers``), and ``L{n}/skip{j}`` (values 0 and
1, ``j < n``) is an anchor-point skip connection from layer j into layer n. Inactive
decisions take their Choice's default in canonical form. The space describes decisions
only: it builds no model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kerasnas.search_spaces.base import Arch, DiscreteSpace, SpaceError

if TYPE_CHECKING:
    import keras_tuner

__all__ = ["DEPTH", "HyperParameterSpace"]

DEPTH = "num_layers"
_LAYER = re.compile(r"^L(\d+)/")
_SKIP = re.compile(r"^L(\d+)/skip(\d+)$")


class HyperParameterSpace(DiscreteSpace):
    """The ``hp.Choice`` entries of `hyperparameters`, in their order (see the module doc).

    Raises ValueError naming the entry for anything but an unconditional ``hp.Choice``, a
    skip decision without the values [0, 1] or from a later layer, and a ``num_layers``
    with values other than non-negative ints.
    """

    name = "hyperparameters"

    def __init__(self, hyperparameters: keras_tuner.HyperParameters):
        import keras_tuner

        super().__init__()
        for hp in hyperparameters.space:
            if not isinstance(hp, keras_tuner.engine.hyperparameters.Choice):
                raise ValueError(
                    f"only hp.Choice entries can be searched, {hp.name!r} is {type(hp).__name__}"
                )
            if hp.conditions:
                raise ValueError(f"conditional hyperparameters are not supported: {hp.name!r}")
            layer, skip = _LAYER.match(hp.name), _SKIP.match(hp.name)
            self._declare(
                hp.name,
                hp.values,
                default=hp.default,
                layer=int(layer.group(1)) if layer else None,
                skip_from=int(skip.group(2)) if skip else None,
            )
        if not self._decisions:
            raise ValueError("the search space has no hp.Choice entries")
        if DEPTH in {d.name for d in self._decisions}:
            self.depth_decision = DEPTH
        self._hyperparameters = hyperparameters.copy()
        self._finish_init()

    def hyperparameters(self) -> keras_tuner.HyperParameters:
        """A copy of the HyperParameters the space was made from."""
        return self._hyperparameters.copy()

    def describe(self, arch: Mapping[str, Any]) -> dict[str, Any]:
        """``{"space": "hyperparameters", "values": {name: value}}`` of the active
        decisions."""
        arch = self.validate(arch)
        active = self.active_decisions(arch)
        return {"space": self.name, "values": {name: arch[name] for name in active}}

    def from_description(self, description: Mapping[str, Any]) -> Arch:
        values = description.get("values") if isinstance(description, Mapping) else None
        if not isinstance(values, Mapping):
            raise SpaceError("hyperparameters description: expected an object with 'values'")
        return self.canonical(values)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "hyperparameters": self._hyperparameters.get_config()}

    def __repr__(self) -> str:
        return f"HyperParameterSpace({', '.join(d.name for d in self._decisions)})"
