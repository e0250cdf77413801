"""Batch-norm statistics of one-shot children: batch statistics and recalibration.

A child of a weight-sharing supernet runs a sub-network whose batch norms were averaged
over many other children: their moving statistics describe none of them. Two remedies:

- ``batch`` statistics: normalise each evaluated batch with its own mean and variance, the
  moving averages left alone (what ENAS' and DARTS' search code do when they score a child);
- recalibration (single-path one-shot NAS, Guo et al. 2020): recompute the moving
  statistics of the child on a few training batches before it is scored
  (:class:`Recalibrator`).

Both act on :class:`kerasnas.ops.BatchNorm` layers (every batch norm of the cell spaces),
through what a training-mode call does to the moving averages (``BatchNorm.statistics``,
read when a call is traced): ``update`` (the default: exponential moving average),
``frozen`` (batch statistics, averages untouched), ``replace`` (averages := this batch's).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import keras
import tensorflow as tf

from kerasnas.graph_options import lean_graph_optimization
from kerasnas.ops import BatchNorm

__all__ = ["STATISTICS", "Recalibrator", "batch_norms", "statistics_mode", "saved_statistics"]

STATISTICS = ("update", "frozen", "replace")


def batch_norms(model: keras.layers.Layer) -> list[BatchNorm]:
    """Every :class:`~kerasnas.ops.BatchNorm` inside `model`, in creation order."""
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, BatchNorm)
    ]


@contextlib.contextmanager
def statistics_mode(model: keras.layers.Layer, mode: str) -> Iterator[list[BatchNorm]]:
    """Within the block, training-mode calls traced through `model`'s batch norms treat
    the moving averages as `mode` says (one of :data:`STATISTICS`); restored after."""
    if mode not in STATISTICS:
        raise ValueError(f"statistics_mode: mode must be one of {STATISTICS}, got {mode!r}")
    layers = batch_norms(model)
    before = [layer.statistics for layer in layers]
    for layer in layers:
        layer.statistics = mode
    try:
        yield layers
    finally:
        for layer, old in zip(layers, before, strict=True):
            layer.statistics = old


@contextlib.contextmanager
def saved_statistics(model: keras.layers.Layer) -> Iterator[None]:
    """Restores every batch norm's moving mean and variance of `model` when the block ends
    (an evaluation that recalibrates leaves the training state as it found it)."""
    variables = [v for bn in batch_norms(model) for v in (bn.moving_mean, bn.moving_variance)]
    values = [v.numpy() for v in variables]
    try:
        yield
    finally:
        for v, value in zip(variables, values, strict=True):
            v.assign(value)


class Recalibrator:
    """Recomputes the moving statistics of `model`'s batch norms on training batches.

    Args:
      model: a Keras model with :class:`~kerasnas.ops.BatchNorm` layers.
      forward: ``forward(x, *extra)`` runs `model` in training mode on images ``x``
        (default ``model(x, training=True)``); `extra` lets a supernet set its child first.
      input_signature: the ``tf.TensorSpec`` of ``x`` and of each extra argument.

    A call ``recalibrator(batches, *extra)`` runs `forward` on each batch ``(x, y)`` without
    gradients and sets each batch norm's moving mean and variance to the mean over the
    batches of the batch means and (unbiased) variances, as PyTorch's cumulative average
    (``momentum=None``) does. Batch norms that the forward pass does not run (ops off a
    child) keep their statistics. Trainable weights are not touched. Traced once.
    """

    def __init__(
        self,
        model: keras.layers.Layer,
        input_signature: Iterable[tf.TensorSpec],
        forward: Callable | None = None,
    ):
        self.model = model
        self.layers = batch_norms(model)
        if not self.layers:
            raise ValueError(f"Recalibrator: model {model.name!r} has no kerasnas BatchNorm layers")
        forward = forward or (lambda x: model(x, training=True))
        stats = [v for bn in self.layers for v in (bn.moving_mean, bn.moving_variance)]

        def step(*args):
            forward(*args)
            return [v.value for v in stats]

        fn = tf.function(step, input_signature=list(input_signature))
        with statistics_mode(model, "replace"), lean_graph_optimization():
            self._step = fn.get_concrete_function()
        self._stats = stats

    def __call__(self, batches: Iterable, *extra) -> int:
        """Recalibrates on `batches` (``(x, y)`` pairs); returns how many were used."""
        total = None
        count = 0
        for batch in batches:
            with lean_graph_optimization():
                values = self._step(batch[0], *extra)
            arrays = [v.numpy() for v in values]
            total = arrays if total is None else [t + a for t, a in zip(total, arrays, strict=True)]
            count += 1
        if count == 0:
            raise ValueError("Recalibrator: no batches to recalibrate on")
        for v, t in zip(self._stats, total, strict=True):
            v.assign(t / count)
        return count
