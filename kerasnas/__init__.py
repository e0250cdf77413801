"""kerasnas: Neural Architecture Search for TensorFlow / Keras 3, with SNAS at the core.

Importing the package registers its layers with Keras, so saved models that contain them
load with ``keras.models.load_model``.
"""

import os as _os

_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kerasnas import ops  # noqa: E402
from kerasnas.derive import choices, derive_model  # noqa: E402
from kerasnas.genotype import Genotype  # noqa: E402
from kerasnas.layers import (  # noqa: E402
    DropPath,
    MixedOp,
    arch_variables,
    mixed_ops,
    set_inference,
    set_temperature,
    weight_variables,
)
from kerasnas.search_spaces.cell import CellSpace, build_network  # noqa: E402
from kerasnas.trainers import RetrainConfig, RetrainTrainer, SNASConfig, SNASTrainer  # noqa: E402

__version__ = "0.1.0"

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
