"""Trainers. :class:`Trainer` holds the loop every trainer shares (epochs, schedules,
evaluation, TensorBoard, checkpoints, resume); :class:`OneShotTrainer` adds architecture
logits for one-shot search (SNAS, DARTS; ENAS and random search with weight sharing
sample children of the supernet instead); :class:`RetrainTrainer` trains a fixed
network from scratch."""

from kerasnas.trainers.base import (
    CheckpointError,
    LoopConfig,
    OneShotTrainer,
    Trainer,
    TrainerConfig,
)
from kerasnas.trainers.darts import DARTSConfig, DARTSTrainer
from kerasnas.trainers.enas import (
    ENASConfig,
    ENASTrainer,
    RandomWSTrainer,
    WeightSharingConfig,
)
from kerasnas.trainers.retrain import RetrainConfig, RetrainTrainer
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

__all__ = [
    "CheckpointError",
    "DARTSConfig",
    "DARTSTrainer",
    "ENASConfig",
    "ENASTrainer",
    "LoopConfig",
    "OneShotTrainer",
    "RandomWSTrainer",
    "RetrainConfig",
    "RetrainTrainer",
    "SNASConfig",
    "SNASTrainer",
    "Trainer",
    "TrainerConfig",
    "WeightSharingConfig",
]
