"""Trainers. :class:`Trainer` holds the loop every trainer shares (epochs, schedules,
evaluation, TensorBoard, checkpoints, resume); :class:`OneShotTrainer` adds architecture
logits for one-shot search (SNAS, DARTS; ENAS and random search with weight sharing
sample children of the supernet instead); :class:`RetrainTrainer` trains a fixed
network from scratch. Their settings (``*Config``) live in :mod:`kerasnas.trainers.config`,
which imports no TensorFlow; every name here is imported on first access."""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it
_NAMES = {
    "CheckpointError": "base",
    "DivergedError": "base",
    "OneShotTrainer": "base",
    "Trainer": "base",
    "DARTSTrainer": "darts",
    "ENASTrainer": "enas",
    "RandomWSTrainer": "enas",
    "RetrainTrainer": "retrain",
    "SNASTrainer": "snas",
    "DARTSConfig": "config",
    "ENASConfig": "config",
    "LoopConfig": "config",
    "RetrainConfig": "config",
    "SNASConfig": "config",
    "TrainerConfig": "config",
    "WeightSharingConfig": "config",
}


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"kerasnas.trainers.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'kerasnas.trainers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


__all__ = sorted(_NAMES)
