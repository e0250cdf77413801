"""Trainers. One-shot trainers share :class:`OneShotTrainer`'s loop; SNAS is the first."""

from kerasnas.trainers.base import CheckpointError, OneShotTrainer, TrainerConfig
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

__all__ = ["CheckpointError", "OneShotTrainer", "SNASConfig", "SNASTrainer", "TrainerConfig"]
