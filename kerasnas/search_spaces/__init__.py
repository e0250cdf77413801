"""Search spaces.

``cell``: the DARTS/SNAS cell space (supernet, children, evaluation nets). Discrete spaces
for trial-based strategies (:class:`DiscreteSpace`; keras-tuner Choices): ``nasrl`` (Zoph &
Le's chain), ``metaqnn`` (MetaQNN's layers) and ``cell`` (the cell space, one op per edge),
made by name with :func:`get_space`; :class:`HyperParameterSpace` makes any
``keras_tuner.HyperParameters`` of Choices one (keras_tuner is imported only when used).
"""

from __future__ import annotations

from typing import Any

from kerasnas.errors import SettingError
from kerasnas.search_spaces.base import Decision, DiscreteSpace, SpaceError
from kerasnas.search_spaces.cell import CellSpace, build_network, inherit_weights, reduction_cells
from kerasnas.search_spaces.cell_discrete import DiscreteCellSpace
from kerasnas.search_spaces.hyperparameters import HyperParameterSpace
from kerasnas.search_spaces.metaqnn import MetaQNNSpace, MetaQNNState
from kerasnas.search_spaces.nasrl import NASRLSpace

SPACES: dict[str, type[DiscreteSpace]] = {
    "nasrl": NASRLSpace,
    "metaqnn": MetaQNNSpace,
    "cell": DiscreteCellSpace,
}


def get_space(name: str, **kwargs: Any) -> DiscreteSpace:
    """The discrete space called `name` ("nasrl", "metaqnn" or "cell"), made with `kwargs`
    (its constructor's arguments; ``get_space(**space.get_config())`` rebuilds a space)."""
    if name not in SPACES:
        raise SettingError(
            f"{{search_space}}: unknown search space {name!r}; available: "
            f"{', '.join(sorted(SPACES))}"
        )
    try:
        return SPACES[name](**kwargs)
    except TypeError as e:
        raise SettingError(f"{{search_space}} {name!r}: {e}") from None


__all__ = [
    "SPACES",
    "CellSpace",
    "Decision",
    "DiscreteCellSpace",
    "DiscreteSpace",
    "HyperParameterSpace",
    "MetaQNNSpace",
    "MetaQNNState",
    "NASRLSpace",
    "SpaceError",
    "build_network",
    "get_space",
    "inherit_weights",
    "reduction_cells",
]
