"""Trainers. One-shot trainers share :class:`OneShotTrainer`'s loop; SNAS is the first."""

from kerasnas.trainers.base import OneShotTrainer, TrainerConfig
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

__all__ = ["OneShotTrainer", "SNASConfig", "SNASTrainer", "TrainerConfig"]
