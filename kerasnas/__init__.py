"""kerasnas: Neural Architecture Search for TensorFlow / Keras 3, with SNAS at the core.

Importing the package registers its layers with Keras (so saved models that contain them
load with ``keras.models.load_model``) and imports only the public face: the candidate ops,
the mixed-op layers, genotypes and child derivation. Everything else is imported where it is
used; the names below that live elsewhere (``kerasnas.SNASTrainer``, ``kerasnas.data``, ...)
are imported on first access. In a command process (``kerasnas-search``, ``python -m
kerasnas.cli...``) the public face is imported on first access too, so that the command
parses its flags before TensorFlow is imported; ``import kerasnas.layers`` registers the
layers there.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any


def _in_command() -> bool:
    """Whether this process is a kerasnas command (``kerasnas-search``, ``python -m
    kerasnas.cli.search``, ...): it parses its flags before TensorFlow is imported."""
    if sys.argv and os.path.basename(sys.argv[0]).startswith("kerasnas-"):
        return True
    argv = getattr(sys, "orig_argv", ())
    return any(
        a == "-m" and b.startswith("kerasnas.cli") for a, b in zip(argv, argv[1:], strict=False)
    )


# the public face: imported here, which registers the layers with Keras, except in a
# command, where the job imports them after the flags are parsed (and they load on first use)
_FACE = {
    "choices": "kerasnas.derive",
    "derive_model": "kerasnas.derive",
    "Genotype": "kerasnas.genotype",
    "DropPath": "kerasnas.layers",
    "MixedOp": "kerasnas.layers",
    "arch_variables": "kerasnas.layers",
    "mixed_ops": "kerasnas.layers",
    "set_inference": "kerasnas.layers",
    "set_temperature": "kerasnas.layers",
    "weight_variables": "kerasnas.layers",
}
if not _in_command():
    from kerasnas import ops  # noqa: F401
    from kerasnas.derive import choices, derive_model  # noqa: F401
    from kerasnas.genotype import Genotype  # noqa: F401
    from kerasnas.layers import (  # noqa: F401
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
    **_FACE,
    "CellSpace": "kerasnas.search_spaces.cell",
    "build_network": "kerasnas.search_spaces.cell",
    "RetrainConfig": "kerasnas.trainers.config",
    "RetrainTrainer": "kerasnas.trainers.retrain",
    "SNASConfig": "kerasnas.trainers.config",
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
    "ops",
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
