"""Retraining a fixed architecture from scratch, as DARTS and SNAS do for final numbers.

The network is usually :func:`kerasnas.build_network` of a genotype, optionally with an
auxiliary head (output ``[logits, aux_logits]``) and :class:`kerasnas.layers.DropPath`
layers. Per step: loss = CE(logits) + auxiliary_weight * CE(aux_logits); SGD with momentum
0.9, weight decay 3e-4, gradients clipped to norm 5, learning rate cosine from `w_lr` to 0.
Per epoch the drop-path rate is ``drop_path * epoch / epochs`` (DARTS' train.py; with a
time budget, ``drop_path`` times the fraction of it spent, set before every step); training
batches may get cutout (:func:`kerasnas.augment.cutout`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas.augment import cutout
from kerasnas.layers import DropPath
from kerasnas.trainers.base import Trainer
from kerasnas.trainers.config import RetrainConfig

__all__ = ["RetrainConfig", "RetrainTrainer", "copy_weights", "drop_path_layers"]


def drop_path_layers(model: keras.layers.Layer) -> list[DropPath]:
    """Every DropPath layer of `model`, nested models included, in layer order."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, DropPath):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(drop_path_layers(layer))
    return found


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copies weights layer by layer name from `source` into `target`.

    `target` may lack layers of `source` (an auxiliary head, DropPath layers), but each of
    its layers with weights must exist in `source` with weights of the same shapes;
    otherwise ValueError names the layer.
    """
    for layer in target.layers:
        if not layer.weights:
            continue
        try:
            src = source.get_layer(layer.name)
        except ValueError:
            msg = f"copy_weights: the source model has no layer {layer.name!r}"
            raise ValueError(msg) from None
        want = [tuple(w.shape) for w in layer.weights]
        have = [tuple(w.shape) for w in src.weights]
        if want != have:
            raise ValueError(f"copy_weights: layer {layer.name!r} has weights {have}, need {want}")
        layer.set_weights(src.get_weights())


def _epoch_seed(seed: int, epoch: int) -> int:
    """A 31-bit seed that depends only on (seed, epoch) (the cutout squares' seed)."""
    state = np.random.SeedSequence([seed, epoch, 0x63757420]).generate_state(1)[0]
    return int(state) & 0x7FFFFFFF


class RetrainTrainer(Trainer):
    """Trains a fixed network's weights from scratch (see the module doc).

    Args:
      model: a Keras model returning logits (B, K), or ``[logits, aux_logits]`` (an
        auxiliary head, trained with weight ``config.auxiliary_weight``).
      config: a :class:`RetrainConfig` (default: the papers' settings).
      output_dir: where ``tensorboard/`` and ``checkpoints/`` go; None keeps nothing.
      verbose: 0 silent, 1 a progress bar per epoch and an epoch summary line.
      run_info: JSON-able description of the run (genotype, sizes, dataset); a checkpoint
        resumes only into a run with the same description.
    """

    name = "retrain"

    def __init__(
        self,
        model: keras.Model,
        config: RetrainConfig | None = None,
        output_dir: str | None = None,
        verbose: int = 1,
        run_info: dict[str, Any] | None = None,
    ):
        config = config or RetrainConfig()
        super().__init__(model, config, output_dir, verbose)
        if len(model.outputs) not in (1, 2):
            raise ValueError(
                f"RetrainTrainer: the model must return logits or [logits, aux_logits], "
                f"it has {len(model.outputs)} outputs"
            )
        self.auxiliary = len(model.outputs) == 2
        self.drop_layers = drop_path_layers(model)
        if config.drop_path > 0 and not self.drop_layers:
            raise ValueError(
                "RetrainTrainer: drop_path > 0 but the model has no DropPath layer "
                "(build it with build_network(..., drop_path=...))"
            )
        self.run_info = dict(run_info) if run_info else {}

    def config_dict(self) -> dict[str, Any]:
        out = super().config_dict()
        if self.run_info:
            out["run"] = self.run_info
        return out

    def drop_rate(self, epoch: int, fraction: float | None = None) -> float:
        """Drop-path rate during `epoch` (0-based): drop_path * epoch / epochs; with a time
        budget, drop_path * the `fraction` of it spent."""
        if fraction is not None:
            return self.config.drop_path * min(max(fraction, 0.0), 1.0)
        return self.config.drop_path * epoch / self.config.epochs

    def set_schedules(self, epoch: int, fraction: float | None = None) -> dict[str, float]:
        logs = super().set_schedules(epoch, fraction)
        if self.drop_layers:
            rate = self.drop_rate(epoch, fraction)
            for layer in self.drop_layers:
                layer.rate.assign(rate)
            logs["drop_path"] = rate
        return logs

    def train_batches(self, data, epoch: int) -> tf.data.Dataset:
        batches = super().train_batches(data, epoch)
        length = self.config.cutout
        if not length:
            return batches
        base = tf.constant(_epoch_seed(self.config.seed, epoch), tf.int64)
        fill = np.asarray(data.mean, np.float32)  # raw mean: 0 after normalisation

        def augment(step, batch):
            x, y = batch
            return cutout(x, length, tf.stack([base, step]), fill), y

        return batches.enumerate().map(augment)

    def train_step(self, x, y):
        cfg = self.config
        with tf.GradientTape() as tape:
            outputs = self.model(x, training=True)
            if self.auxiliary:
                logits, aux_logits = outputs
            else:
                logits = self.logits_of(outputs)
            loss, acc = self.loss_and_accuracy(y, logits)
            total = loss
            logs = {"loss": loss, "accuracy": acc}
            if self.auxiliary:
                aux_loss, _ = self.loss_and_accuracy(y, aux_logits)
                total = total + cfg.auxiliary_weight * aux_loss
                logs["aux_loss"] = aux_loss
        grads = tape.gradient(total, self.weight_vars)
        self.apply_update(self.w_opt, grads, self.weight_vars, cfg.w_grad_clip, cfg.w_weight_decay)
        return logs
