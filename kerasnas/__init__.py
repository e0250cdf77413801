"""kerasnas: Neural Architecture Search for TensorFlow / Keras 3, with SNAS at the core.

Importing the package registers its layers with Keras (so saved models that contain them
load with ``keras.models.load_model``) and imports only the public face: the candidate ops,
the mixed-op layers, genotypes and child derivation. Everything else is imported where it is
used; the names below that live elsewhere (``kerasnas.SNASTrainer``, ``kerasnas.data``, ...)
are imported on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from kerasnas import ops
from kerasnas.derive import choices, derive_model
from kerasnas.genotype import Genotype
from kerasnas.layers import (
    DropPath,
    MixedOp,
    arch_variables,
    mixed_ops,
    set_inference,
    set_temperature,
    weight_variables,
)

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY = {
    "CellSpace": "kerasnas.search_spaces.cell",
    "build_network": "kerasnas.search_spaces.cell",
    "RetrainConfig": "kerasnas.trainers.retrain",
    "RetrainTrainer": "kerasnas.trainers.retrain",
    "SNASConfig": "kerasnas.trainers.snas",
    "SNASTrainer": "kerasnas.trainers.snas",
}
_SUBMODULES = (
    "cli",
    "data",
    "errors",
    "export",
    "jobs",
    "latency",
    "multitrial",
    "plotting",
    "resource",
    "search_spaces",
    "strategies",
    "trainers",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"kerasnas.{name}")
    raise AttributeError(f"module 'kerasnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


__all__ = [
    "CellSpace",
    "DropPath",
    "Genotype",
    "MixedOp",
    "RetrainConfig",
    "RetrainTrainer",
    "SNASConfig",
    "SNASTrainer",
    "arch_variables",
    "build_network",
    "choices",
    "derive_model",
    "mixed_ops",
    "ops",
    "set_inference",
    "set_temperature",
    "weight_variables",
]
