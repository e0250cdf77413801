"""Accuracy of a classifier, the one evaluation helper jobs, trainers and trials share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import keras
import numpy as np
import tensorflow as tf

__all__ = ["accuracy", "top1"]


def top1(fn: Callable, batches: Iterable, repeats: int = 1) -> float:
    """Top-1 accuracy of `fn` (images (B, H, W, C) -> logits (B, K)) over batches
    ``(x, y)``; with `repeats` > 1 the mean over that many passes (for stochastic `fn`)."""
    correct = total = 0
    for _ in range(repeats):
        for x, y in batches:
            pred = np.argmax(keras.ops.convert_to_numpy(fn(x)), axis=-1)
            correct += int((pred == keras.ops.convert_to_numpy(y)).sum())
            total += int(y.shape[0])
    return correct / max(total, 1)


def accuracy(model: keras.Model, dataset: tf.data.Dataset) -> float:
    """Top-1 accuracy of a logits model on batches ``(x, y)``, in inference mode."""
    return top1(tf.function(lambda x: model(x, training=False), reduce_retracing=True), dataset)
