"""Trainers. :class:`Trainer` holds the loop every trainer shares (epochs, schedules,
evaluation, TensorBoard, checkpoints, resume); :class:`OneShotTrainer` adds architecture
logits for one-shot search (SNAS is the first); :class:`RetrainTrainer` trains a fixed
network from scratch."""

from kerasnas.trainers.base import (
    CheckpointError,
    LoopConfig,
    OneShotTrainer,
    Trainer,
    TrainerConfig,
)
from kerasnas.trainers.retrain import RetrainConfig, RetrainTrainer
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

__all__ = [
    "CheckpointError",
    "LoopConfig",
    "OneShotTrainer",
    "RetrainConfig",
    "RetrainTrainer",
    "SNASConfig",
    "SNASTrainer",
    "Trainer",
    "TrainerConfig",
]
