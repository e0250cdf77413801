"""The loop every one-shot trainer shares: epochs of compiled steps, learning-rate and
temperature schedules, evaluation, TensorBoard, progress output, checkpoints and resume.

A trainer subclass provides ``train_step(x, y) -> dict of scalars`` (compiled here with
``tf.function``) and may override ``on_epoch_begin``. Weight updates follow the authors'
PyTorch code: gradients are clipped by global norm, then coupled L2 weight decay is added,
then the optimizer step (SGD with momentum for weights, Adam for architecture logits).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas import io
from kerasnas.layers import arch_variables, mixed_ops, set_inference, weight_variables
from kerasnas.trainers.optim import MomentumSGD


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed from: unreadable, or written by other settings."""


@dataclasses.dataclass
class TrainerConfig:
    """Hyper-parameters shared by one-shot trainers (defaults: the SNAS/DARTS code).

    Learning rates are per step; the weight learning rate follows a cosine from `w_lr` to
    `w_lr_min` over `epochs`, set once per epoch.
    """

    epochs: int = 50
    batch_size: int = 64
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    w_grad_clip: float = 5.0
    a_lr: float = 3e-4
    a_beta_1: float = 0.5
    a_beta_2: float = 0.999
    a_weight_decay: float = 1e-3
    a_grad_clip: float = 10.0
    jit_compile: bool = False
    seed: int = 0

    def validate(self) -> None:
        """Raises ValueError naming the first invalid field."""
        positive_ints = ("epochs", "batch_size")
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("w_lr", "a_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("w_lr_min", "w_weight_decay", "a_weight_decay", "w_momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("w_grad_clip", "a_grad_clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


def cosine(epoch: int, epochs: int, start: float, end: float) -> float:
    """Cosine annealing from `start` (epoch 0) towards `end` (PyTorch's CosineAnnealingLR)."""
    return end + (start - end) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def linear(epoch: int, epochs: int, start: float, end: float) -> float:
    """Linear from `start` at epoch 0 to `end` at the last epoch."""
    if epochs <= 1:
        return start
    return start + (end - start) * epoch / (epochs - 1)


def entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum())


class OneShotTrainer:
    """Trains a Keras model that contains MixedOp layers (see the module doc).

    Args:
      model: any Keras model with at least one :class:`kerasnas.layers.MixedOp`; its output
        must be logits (B, num_classes).
      config: a :class:`TrainerConfig` (or subclass).
      output_dir: where ``tensorboard/`` and ``checkpoints/`` go; None keeps nothing.
      verbose: 0 silent, 1 a progress bar per epoch and an epoch summary line.
    """

    name = "oneshot"

    def __init__(
        self,
        model: keras.Model,
        config: TrainerConfig,
        output_dir: str | None = None,
        verbose: int = 1,
    ):
        config.validate()
        self.model = model
        self.config = config
        self.output_dir = output_dir
        self.verbose = verbose
        self.mixed = mixed_ops(model)
        if not self.mixed:
            raise ValueError(f"{type(self).__name__}: the model has no MixedOp layer to search")
        self.arch_vars = arch_variables(model)
        self.weight_vars = weight_variables(model)
        self.w_opt = MomentumSGD(config.w_lr, momentum=config.w_momentum, name="w_opt")
        self.a_opt = keras.optimizers.Adam(
            config.a_lr, beta_1=config.a_beta_1, beta_2=config.a_beta_2, name="a_opt"
        )
        self.w_opt.build(self.weight_vars)
        self.a_opt.build(self.arch_vars)
        self.history: list[dict[str, Any]] = []
        self.search_seconds = 0.0
        self._step_fn = None
        self._eval_fns: dict[str, object] = {}
        self._writer = None

    # -- pieces subclasses use --------------------------------------------------------------
    @staticmethod
    def loss_and_accuracy(y, logits):
        loss = keras.ops.mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
        acc = keras.ops.mean(
            keras.ops.cast(
                keras.ops.equal(keras.ops.argmax(logits, -1), keras.ops.cast(y, "int64")), "float32"
            )
        )
        return loss, acc

    @staticmethod
    def apply_update(optimizer, grads, variables, clip: float, weight_decay: float) -> None:
        """Clip by global norm, add coupled L2 decay, step. Variables without a gradient
        (ops not sampled this step) are left alone."""
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        if not pairs:
            return
        gs, vs = zip(*pairs, strict=True)
        gs, _ = tf.clip_by_global_norm(list(gs), clip)
        if weight_decay:
            gs = [g + weight_decay * v.value for g, v in zip(gs, vs, strict=True)]
        optimizer.apply(gs, list(vs))

    def train_step(self, x, y) -> dict:
        raise NotImplementedError

    def on_epoch_begin(self, epoch: int) -> dict[str, float]:
        """Schedules for `epoch`; returns values to log."""
        lr = cosine(epoch, self.config.epochs, self.config.w_lr, self.config.w_lr_min)
        self.w_opt.learning_rate = lr
        return {"w_lr": lr}

    def arch_summary(self) -> dict[str, float]:
        """Mean per-edge entropy and op probabilities of each owner of logits."""
        out = {}
        ents = []
        seen = set()
        for layer in self.mixed:
            owner = layer.owner()
            if id(owner) in seen:
                continue
            seen.add(id(owner))
            p = keras.ops.convert_to_numpy(owner.probabilities())
            e = entropy(p)
            ents.append(e)
            out[f"entropy/{owner.name}"] = e
            for name, value in zip(owner.candidate_names, p, strict=True):
                out[f"prob/{owner.name}/{name}"] = float(value)
        out["entropy"] = float(np.mean(ents))  # mean over edges, nats
        return out

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, dataset: tf.data.Dataset, mode: str = "sample", repeats: int = 1) -> float:
        """Accuracy of the supernet on `dataset` with batch norm in inference mode and
        MixedOps in `mode` (``sample``: a Gumbel sample per batch at the current
        temperature, the stochastic supernet SNAS reports; ``argmax``; ``softmax``).
        With `repeats` > 1 the accuracy is the mean over that many passes (new samples)."""
        if mode not in self._eval_fns:
            self._eval_fns[mode] = tf.function(
                lambda x: self.model(x, training=False),
                input_signature=[tf.TensorSpec((None, *self.model.inputs[0].shape[1:]))],
            )
        set_inference(self.model, mode)  # read when the function is traced (once per mode)
        try:
            correct = total = 0
            for _ in range(repeats):
                for x, y in dataset:
                    pred = np.argmax(self._eval_fns[mode](x).numpy(), axis=-1)
                    correct += int((pred == y.numpy()).sum())
                    total += int(y.shape[0])
        finally:
            set_inference(self.model, "argmax")
        return correct / max(total, 1)

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, data, resume: bool = False) -> list[dict[str, Any]]:
        """Runs the search on `data` (a :class:`kerasnas.data.DataBundle`).

        With `resume`, continues from the last checkpoint in ``output_dir``; the result is
        the same as an uninterrupted run with the same seed. Returns one dict per epoch.
        """
        cfg = self.config
        start_epoch = 0
        if resume:
            start_epoch = self.restore()
        if self._step_fn is None:
            spec = (
                tf.TensorSpec((None, *self.model.inputs[0].shape[1:])),
                tf.TensorSpec((None,), tf.int32),
            )
            self._step_fn = tf.function(
                self.train_step, jit_compile=cfg.jit_compile, input_signature=spec
            )
        steps = math.ceil(data.num_train / cfg.batch_size)
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            sched = self.on_epoch_begin(epoch)
            bar = keras.utils.Progbar(steps, verbose=self.verbose, unit_name="step")
            sums: dict[str, float] = {}
            n = 0
            for x, y in data.train(epoch, cfg.batch_size):
                logs = {k: float(v) for k, v in self._step_fn(x, y).items()}
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                bar.update(n, list(logs.items()))
            record = {"epoch": epoch + 1, **{k: v / max(n, 1) for k, v in sums.items()}, **sched}
            record["valid_accuracy"] = self.evaluate(data.valid(cfg.batch_size))
            self.search_seconds += time.perf_counter() - t0
            record["seconds"] = self.search_seconds
            record.update(self.epoch_extras())
            self.history.append(record)
            self._log(record)
            if self.verbose:
                shown = ", ".join(
                    f"{k} {v:.4g}"
                    for k, v in record.items()
                    if "/" not in k and k not in ("epoch",)
                )
                print(f"epoch {epoch + 1}/{cfg.epochs}: {shown}", flush=True)
            self.checkpoint(epoch + 1)
        if self._writer is not None:
            self._writer.flush()
        return self.history

    def epoch_extras(self) -> dict[str, float]:
        return self.arch_summary()

    def _log(self, record: dict[str, Any]) -> None:
        if self.output_dir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.output_dir, "tensorboard")
            )
        with self._writer.as_default():
            for k, v in record.items():
                if k != "epoch" and isinstance(v, (int, float)):
                    tf.summary.scalar(k, v, step=record["epoch"])
        self._writer.flush()

    # -- checkpoints ----------------------------------------------------------------------------
    def _state_variables(self) -> list:
        seen, out = set(), []
        for v in [*self.model.variables, *self.w_opt.variables, *self.a_opt.variables]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def checkpoint_dir(self) -> str | None:
        return None if self.output_dir is None else os.path.join(self.output_dir, "checkpoints")

    def config_dict(self) -> dict[str, Any]:
        return {"trainer": self.name, **dataclasses.asdict(self.config)}

    def checkpoint(self, epochs_done: int) -> None:
        """Writes every model and optimizer variable and the loop state, atomically."""
        if self.checkpoint_dir is None:
            return
        variables = self._state_variables()
        arrays = {f"v{i:05d}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(variables)}
        with io.atomic_path(os.path.join(self.checkpoint_dir, "ckpt.npz")) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        io.write_json(
            os.path.join(self.checkpoint_dir, "state.json"),
            {
                "epochs_done": epochs_done,
                "search_seconds": self.search_seconds,
                "history": self.history,
                "config": self.config_dict(),
                "variables": [v.path for v in variables],
            },
        )

    def restore(self) -> int:
        """Loads the last checkpoint; returns the number of epochs it had completed (0 when
        there is none). Raises CheckpointError when it was written by a different configuration."""
        if self.checkpoint_dir is None:
            raise CheckpointError("resume needs an output_dir")
        state_path = os.path.join(self.checkpoint_dir, "state.json")
        if not os.path.exists(state_path):
            return 0
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            with np.load(os.path.join(self.checkpoint_dir, "ckpt.npz")) as npz:
                arrays = [npz[f"v{i:05d}"] for i in range(len(npz.files))]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"cannot resume: checkpoint in {self.checkpoint_dir} is unreadable ({e})"
            ) from e
        saved, now = state.get("config", {}), self.config_dict()
        changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if changed:
            detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise CheckpointError(
                f"cannot resume: the checkpoint was written with other settings ({detail})"
            )
        variables = self._state_variables()
        if len(arrays) != len(variables):
            raise CheckpointError(
                f"cannot resume: checkpoint has {len(arrays)} variables, "
                f"the model has {len(variables)}"
            )
        for v, a in zip(variables, arrays, strict=True):
            if tuple(v.shape) != a.shape:
                raise CheckpointError(
                    f"cannot resume: variable {v.path} has shape {tuple(v.shape)}, "
                    f"checkpoint {a.shape}"
                )
            v.assign(a)
        self.history = list(state["history"])
        self.search_seconds = float(state["search_seconds"])
        return int(state["epochs_done"])
