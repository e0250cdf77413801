"""The loop every trainer shares: epochs of compiled steps, learning-rate schedules,
evaluation, TensorBoard, progress output, checkpoints and resume.

:class:`Trainer` trains any Keras model whose (first) output is logits; it knows nothing of
architecture search. :class:`OneShotTrainer` adds what a one-shot search needs: the
MixedOp layers, their architecture logits and an optimizer for them. A subclass provides
``train_step(*batch) -> dict of scalars`` (compiled here with ``tf.function``; by default a
batch is ``(x, y)``) and may override ``step_signature``/``train_batches``/``steps_per_epoch``
together (steps that read more than one batch, e.g. DARTS' train and validation batches),
``on_epoch_begin``, ``on_epoch_end`` (work after the epoch's steps, e.g. ENAS' controller),
``epoch_extras`` and ``should_stop`` (end the run after an epoch, e.g. the collapse guard);
``extra_variables``/``extra_state``/``set_extra_state`` put more state into checkpoints.
Weight updates follow the authors' PyTorch code: gradients are clipped by global norm,
then coupled L2 weight decay is added, then the optimizer step (SGD with momentum for
weights, Adam for architecture logits).

With a ``tf.distribute`` strategy (``strategy=``; the model must have been built in its
scope) the step runs in every replica on its share of the global batch (``batch_size``);
losses are per-replica sums over the GLOBAL batch size, gradients are summed over the
replicas before clipping, decay and the step (see :mod:`kerasnas.distribute`).

Budgets: by default a run trains ``epochs`` epochs and every schedule is indexed by the
epoch. With ``time_budget`` (seconds) it trains until that many seconds of training are
spent, ``epochs`` being an upper bound; see :class:`LoopConfig`. Such a run is not
deterministic: how many steps fit depends on the machine and its load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import time
import zipfile
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas import distribute, io, progress
from kerasnas.errors import RunError, SettingError
from kerasnas.evaluate import top1
from kerasnas.graph_options import lean_function
from kerasnas.layers import arch_variables, mixed_ops, set_inference, weight_variables
from kerasnas.trainers.collapse import EIGENVALUE, CollapseWatch
from kerasnas.trainers.config import LoopConfig, TrainerConfig
from kerasnas.trainers.optim import MomentumSGD

_ARRAYS = re.compile(r"ckpt-\d+\.npz")  # a checkpoint's array file
# epoch-record names of older versions (a resumed history is renamed; see rename_legacy)
LEGACY_KEYS = {"loss": "train_loss", "accuracy": "train_acc"}
ARGMAX_CHILD = "argmax_child_valid_acc"  # OneShotTrainer.validate


class DivergedError(RunError):
    """The training loss became NaN or infinite (exit code 1)."""

    exit_code = 1


class CheckpointError(SettingError):
    """A checkpoint cannot be resumed from: unreadable, or written by other settings."""


def cosine(epoch: int, epochs: int, start: float, end: float) -> float:
    """Cosine annealing from `start` (epoch 0) towards `end` (PyTorch's CosineAnnealingLR)."""
    return end + (start - end) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def linear(epoch: int, epochs: int, start: float, end: float) -> float:
    """Linear from `start` at epoch 0 to `end` at the last epoch."""
    if epochs <= 1:
        return start
    return start + (end - start) * epoch / (epochs - 1)


def cosine_at(fraction: float, start: float, end: float) -> float:
    """Cosine annealing by the `fraction` (0..1) of a time budget spent: `start` at 0,
    `end` at 1 (:func:`cosine` with epoch / epochs replaced by the fraction)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return end + (start - end) * (1 + math.cos(math.pi * fraction)) / 2


def linear_at(fraction: float, start: float, end: float) -> float:
    """Linear by the `fraction` (0..1) of a time budget spent: `start` at 0, `end` at 1."""
    fraction = min(max(fraction, 0.0), 1.0)
    return start + (end - start) * fraction


def entropy(p: np.ndarray) -> float:
    p = np.clip(p, 1e-12, 1.0)
    return float(-(p * np.log(p)).sum())


class Trainer:
    """Trains the weights of any Keras model whose output is logits (see the module doc).

    Holds the epoch loop, the weight optimizer and its cosine schedule, evaluation,
    TensorBoard logging, progress output, checkpoints and resume; nothing here needs
    MixedOp layers. Subclasses implement :meth:`train_step`.

    Args:
      model: a Keras model; its output is logits (B, num_classes), or a list whose first
        entry is (e.g. ``[logits, aux_logits]``).
      config: a :class:`LoopConfig` (or subclass).
      output_dir: where ``tensorboard/`` and ``checkpoints/`` go; None keeps nothing.
      verbose: 0 silent; 1 progress (a live line on a terminal, else one line per epoch);
        2 one line per epoch (see :mod:`kerasnas.progress`).
      strategy: a ``tf.distribute.Strategy`` whose scope `model` was built in, or None.
    """

    name = "trainer"
    step_name = "training step"  # what the compiling message calls the compiled step
    # how long compiling the step takes, for that message
    compile_note = "tracing and graph optimisation, once per run"

    def __init__(
        self,
        model: keras.Model,
        config: LoopConfig,
        output_dir: str | None = None,
        verbose: int = 1,
        strategy: tf.distribute.Strategy | None = None,
    ):
        config.validate()
        if strategy is not None:
            if config.jit_compile:
                raise SettingError(
                    "{jit_compile} (XLA) has not been tried under a tf.distribute strategy "
                    "({distribution}); use one or the other"
                )
            if not all(
                strategy.extended.variable_created_in_scope(v.value) for v in model.variables
            ):
                raise ValueError(f"{type(self).__name__}: build the model in strategy.scope()")
        self.model = model
        self.config = config
        self.output_dir = output_dir
        self.verbose = verbose
        self.strategy = strategy
        self.weight_vars = self.select_weights()
        with self.scope():
            self.w_opt = MomentumSGD(config.w_lr, momentum=config.w_momentum, name="w_opt")
            self.w_opt.build(self.weight_vars)
        self.history: list[dict[str, Any]] = []
        self.seconds = 0.0  # training time of every epoch so far, resumed runs included
        # the part of it a time budget counts (see LoopConfig), and the steps made
        self.budget_seconds = 0.0
        # start-up: seconds of first calls of compiled functions (see startup), all runs
        self.setup_seconds = 0.0
        self._started: set[str] = set()
        self._validated: set[str] = set()  # validation passes run (traced) in this process
        self.steps_done: int | None = 0
        # (name, message) once :meth:`should_stop` ended the run (kept by checkpoints)
        self.stop: tuple[str, str] | None = None
        self.clock = time.perf_counter  # what the loop times with (tests may replace it)
        self._step_fn = None
        self._eval_fns: dict[str, object] = {}
        self._writer = None
        self.progress: progress.Progress | None = None  # during fit

    @property
    def valid_key(self) -> str:
        """The epoch record's name of the per-epoch validation accuracy."""
        return "valid_acc"

    def startup(self, key: str, what: str | None = None, note: str | None = None):
        """Context manager around a call of a compiled function (or work that makes its
        first call); the first time in this process that `key` runs, its seconds are
        start-up (tracing, graph optimisation and the one call): added to
        :attr:`setup_seconds` and not counted by a time budget (nor by the progress
        output's step times). Later runs count. With `what`, the first run prints
        ``compiling <what> (<note>) ...`` before and its seconds after (`note` default:
        :attr:`compile_note`)."""
        if key in self._started:
            return contextlib.nullcontext()
        self._started.add(key)
        return self._timed_setup(what, self.compile_note if note is None else note)

    @contextlib.contextmanager
    def _timed_setup(self, what: str | None = None, note: str = ""):
        t = self.clock()
        shown = (
            self.progress.compiling(what, note)
            if what and self.progress is not None
            else contextlib.nullcontext()
        )
        try:
            with shown:
                yield
        finally:
            seconds = self.clock() - t
            self.setup_seconds += seconds
            if self.progress is not None:
                self.progress.exclude(seconds)

    def scope(self):
        """The strategy's scope (create variables in it), or a no-op without a strategy."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def select_weights(self) -> list:
        """The variables the weight optimizer trains (default: all trainable ones)."""
        return list(self.model.trainable_variables)

    def optimizers(self) -> list:
        """Every optimizer whose state is checkpointed, in a fixed order."""
        return [self.w_opt]

    # -- pieces subclasses use --------------------------------------------------------------
    @staticmethod
    def loss_and_accuracy(y, logits):
        """Mean sparse cross-entropy of `logits` (B, K) against labels `y` (B,), and accuracy,
        in float32 at least (half-precision logits of mixed precision are cast); in a replica
        of several: its shares of the global batch's, see :func:`kerasnas.distribute.batch_mean`."""
        if keras.backend.standardize_dtype(logits.dtype) in ("float16", "bfloat16"):
            logits = keras.ops.cast(logits, "float32")
        loss = distribute.batch_mean(
            keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
        )
        acc = distribute.batch_mean(
            keras.ops.cast(
                keras.ops.equal(keras.ops.argmax(logits, -1), keras.ops.cast(y, "int64")), "float32"
            )
        )
        return loss, acc

    @staticmethod
    def apply_update(
        optimizer, grads, variables, clip: float, weight_decay: float, active=None
    ) -> None:
        """Sum over the replicas (if several), clip by global norm, add coupled L2 decay,
        step. Variables without a gradient are left alone. `active` (a :class:`MomentumSGD`
        only): per variable None or a boolean scalar tensor; where False, the variable and
        its optimizer state are left alone too (inside a ``tf.function``, ops in an untaken
        ``switch`` branch get zero gradients, not None, so decay and momentum would still
        move them)."""
        if active is None:
            active = [None] * len(variables)
        triples = [
            (g, v, a) for g, v, a in zip(grads, variables, active, strict=True) if g is not None
        ]
        if not triples:
            return
        gs, vs, acts = zip(*triples, strict=True)
        gs, _ = tf.clip_by_global_norm(distribute.sum_over_replicas(list(gs)), clip)
        if weight_decay:
            gs = [g + weight_decay * v.value for g, v in zip(gs, vs, strict=True)]
        if not isinstance(optimizer, MomentumSGD):  # it steps each replica's own copies
            optimizer.apply(distribute.for_keras_optimizer(gs), list(vs))
        elif all(a is None for a in acts):
            optimizer.apply(gs, list(vs))
        else:
            optimizer.apply(gs, list(vs), active=list(acts))

    @staticmethod
    def logits_of(outputs):
        """The logits among a model's outputs (the first one of a list)."""
        return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    def train_step(self, x, y) -> dict:
        raise NotImplementedError

    def budget_fraction(self, spent: float | None = None) -> float | None:
        """The fraction (0..1) of ``config.time_budget`` that `spent` seconds are (default:
        :attr:`budget_seconds`, the seconds counted so far); None without a time budget."""
        budget = self.config.time_budget
        if budget is None:
            return None
        spent = self.budget_seconds if spent is None else spent
        return min(max(spent / budget, 0.0), 1.0)

    def set_schedules(self, epoch: int, fraction: float | None = None) -> dict[str, float]:
        """Sets every schedule for `epoch` (`fraction` None: an epoch budget) or, with a
        time budget, for the `fraction` of it spent; returns the values to log. Here the
        weights' learning rate: cosine from ``w_lr`` to ``w_lr_min`` over the epochs or the
        budget. Subclasses with more schedules extend it (call ``super()``)."""
        c = self.config
        if fraction is None:
            lr = cosine(epoch, c.epochs, c.w_lr, c.w_lr_min)
        else:
            lr = cosine_at(fraction, c.w_lr, c.w_lr_min)
        self.w_opt.learning_rate = lr
        return {"w_lr": lr}

    def on_epoch_begin(self, epoch: int) -> dict[str, float]:
        """Work before `epoch`'s steps, by default :meth:`set_schedules` (with a time
        budget the loop sets them again before every step); returns values to log."""
        return self.set_schedules(epoch, self.budget_fraction())

    def step_signature(self) -> tuple[tf.TensorSpec, ...]:
        """Specs of the arguments of :meth:`train_step`: images (B, H, W, C), labels (B,)."""
        return (
            tf.TensorSpec((None, *self.model.inputs[0].shape[1:])),
            tf.TensorSpec((None,), tf.int32),
        )

    def train_batches(self, data, epoch: int) -> tf.data.Dataset:
        """The step arguments of `epoch`, by default batches ``(x, y)`` of the training split:
        a pure function of (seed, epoch)."""
        return data.train(epoch, self.config.batch_size)

    def steps_per_epoch(self, data) -> int:
        """How many steps :meth:`train_batches` yields (for the progress bar)."""
        return math.ceil(data.num_train / self.config.batch_size)

    def after_step(self) -> None:
        """Python work after every compiled step (e.g. a cost target's dual step); counted
        by a time budget."""

    def on_epoch_end(self, data, epoch: int) -> dict[str, float]:
        """Work after the epoch's steps, before validation; returns values to log."""
        return {}

    def extra_variables(self) -> list:
        """Variables outside the model and optimizers that checkpoints keep."""
        return []

    def extra_state(self) -> dict[str, Any]:
        """JSON-able Python state that checkpoints keep (see :meth:`set_extra_state`)."""
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`extra_state` returned."""

    def epoch_extras(self) -> dict[str, float]:
        """Figures added to every epoch's record after validation."""
        return {}

    def should_stop(self, record: dict[str, Any]) -> tuple[str, str] | None:
        """Called with each epoch's complete record, before its checkpoint: None to go on,
        or (name, message) to end the run after this epoch (e.g. ``("collapse_guard",
        "...")``); the loop prints the message, checkpoints and stops, and
        :meth:`budget_summary` reports it (``stopped_by``: the name, ``stop_reason``: the
        message). A resumed run that had stopped stays stopped."""
        return None

    # -- evaluation ---------------------------------------------------------------------------
    def _inference_fn(self, key: str):
        if key not in self._eval_fns:
            self._eval_fns[key] = lean_function(
                tf.function(
                    lambda x: self.logits_of(self.model(x, training=False)),
                    input_signature=[tf.TensorSpec((None, *self.model.inputs[0].shape[1:]))],
                )
            )
        return self._eval_fns[key]

    def evaluate(self, dataset: tf.data.Dataset) -> float:
        """Top-1 accuracy of the model on batches ``(x, y)``, in inference mode."""
        return top1(self._inference_fn("inference"), dataset)

    def validate(self, data, epoch: int, last: bool) -> dict[str, float]:
        """The per-epoch validation figures of `epoch` (0-based; `last`: the run's last
        epoch), by default :attr:`valid_key`: :meth:`evaluate` on the validation split."""
        with self.first_pass(self.valid_key, "the validation pass"):
            return {self.valid_key: self.evaluate(data.valid(self.config.batch_size))}

    @contextlib.contextmanager
    def first_pass(self, key: str, what: str):
        """Context manager around a validation pass; the first one of `key` in this process
        traces its function: the progress output says so (``compiling <what> ...``) and
        leaves its seconds out of its estimates. Validation is not start-up: a time budget
        does not count it either way, and :attr:`setup_seconds` does not include it."""
        if key in self._validated or self.progress is None:
            yield
            return
        self._validated.add(key)
        t = self.clock()
        try:
            with self.progress.compiling(what, "tracing, once per run"):
                yield
        finally:
            if self.progress is not None:
                self.progress.exclude(self.clock() - t)

    def rename_legacy(self, record: dict[str, Any]) -> dict[str, Any]:
        """An epoch record of an older version (a resumed checkpoint's history) with the
        names records have now."""
        legacy = {**LEGACY_KEYS, "valid_accuracy": self.valid_key}
        return {legacy.get(k, k): v for k, v in record.items()}

    # -- the loop -----------------------------------------------------------------------------
    def fit(self, data, resume: bool = False) -> list[dict[str, Any]]:
        """Trains on `data` (a :class:`kerasnas.data.DataBundle`) for ``config.epochs``, or
        until ``config.time_budget`` seconds are spent (see :class:`LoopConfig`).

        With `resume`, continues from the last checkpoint in ``output_dir`` (the seconds
        already spent restored: a time-budgeted run gets what is left of its budget; the
        part of an epoch a stop interrupted is redone and its seconds are not counted);
        with an epoch budget the result is the same as an uninterrupted run with the same
        seed. Returns one dict per epoch; with a time budget each also has ``steps`` (of
        that epoch, fewer in the last one), ``budget_seconds`` (counted so far) and
        ``budget_fraction``, and the schedules' values logged are those of its last step.
        """
        cfg = self.config
        budget = cfg.time_budget
        steps = self.steps_per_epoch(data)
        self.progress = progress.Progress(
            cfg.epochs,
            steps,
            progress.choose_mode(self.verbose),
            time_budget=budget,
            clock=self.clock,
        )
        try:
            return self._fit(data, resume, steps)
        finally:
            if self.progress is not None:
                self.progress.clear()
            self.progress = None

    def _fit(self, data, resume: bool, steps: int) -> list[dict[str, Any]]:
        cfg, show = self.config, self.progress
        budget = cfg.time_budget
        start_epoch = 0
        if resume:
            start_epoch = self.restore()
            if self.verbose:
                print(
                    f"resumed after epoch {start_epoch} of {cfg.epochs}"
                    if start_epoch
                    else f"nothing to resume in {self.output_dir}: starting at epoch 1",
                    flush=True,
                )
        if self._step_fn is None and self.strategy is None:
            self._step_fn = lean_function(
                tf.function(
                    self.train_step,
                    jit_compile=cfg.jit_compile,
                    input_signature=self.step_signature(),
                )
            )
        if self.steps_done is None:  # a checkpoint older than the step count
            self.steps_done = start_epoch * steps
        for epoch in range(start_epoch, cfg.epochs):
            if self.stop is not None or (budget is not None and self.budget_seconds >= budget):
                break
            t0 = self.clock()
            spent = self.budget_seconds  # counted before this epoch
            setup0 = self.setup_seconds

            def counted(spent=spent, t0=t0, setup0=setup0) -> float:
                # budget seconds so far: this epoch's start-up excluded
                return spent + self.clock() - t0 - (self.setup_seconds - setup0)

            sched = self.on_epoch_begin(epoch)
            show.begin_epoch(epoch)
            sums: dict[str, float] = {}
            n = 0
            with self.startup("train_batches"):
                batches = iter(self._batches(data, epoch))
            for batch in batches:
                if budget is not None:
                    sched = self.set_schedules(epoch, self.budget_fraction(counted()))
                traced = "train_step" not in self._started
                with self.startup("train_step", f"the {self.step_name}"):
                    logs = {k: float(v) for k, v in self._step_fn(*batch).items()}
                if not math.isfinite(logs.get("loss", 0.0)):
                    kept = f"the checkpoint of epoch {epoch} is kept" if epoch else "no epoch ended"
                    raise DivergedError(
                        f"the training loss became {logs['loss']} at epoch {epoch + 1}, step "
                        f"{n + 1}: the run stopped ({kept}); lower the learning rate "
                        f"({{w_lr}} is {cfg.w_lr:g})"
                    )
                self.after_step()
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
                used = counted() if budget is not None else None
                means = {k: v / n for k, v in sums.items()}
                show.step(n, means, timed=not traced, budget_spent=used)
                if used is not None and used >= budget:
                    break
            # running means over the epoch's steps, named for what they are (train_loss...)
            means = {progress.STEP_NAMES.get(k, k): v / max(n, 1) for k, v in sums.items()}
            record = {"epoch": epoch + 1, **means, **sched}
            record.update(self.on_epoch_end(data, epoch))
            self.steps_done += n
            self.budget_seconds = counted()
            if budget is not None:
                record["steps"] = n
                record["budget_seconds"] = self.budget_seconds
                record["budget_fraction"] = self.budget_fraction()
                record["setup_seconds"] = self.setup_seconds
            last = epoch + 1 == cfg.epochs or (budget is not None and self.budget_seconds >= budget)
            record.update(self.validate(data, epoch, last))
            seconds = self.clock() - t0
            self.seconds += seconds
            record["seconds"] = self.seconds
            record.update(self.epoch_extras())
            self.history.append(record)
            self._log(record)
            self.stop = self.should_stop(record)
            self.checkpoint(epoch + 1)
            of = f"/{cfg.epochs}" if budget is None else ""
            show.end_epoch(record, of, seconds)
            if self.stop is not None:
                if self.verbose:
                    print(f"stopped after epoch {epoch + 1}: {self.stop[1]}", flush=True)
                break
        if self._writer is not None:
            self._writer.flush()
        return self.history

    def budget_summary(self) -> dict[str, Any]:
        """How much training the run got (for its metrics): ``epochs_done``, ``steps``,
        ``budget_seconds`` (the seconds a time budget counts, see :class:`LoopConfig`;
        measured under either budget), ``setup_seconds`` (start-up, not counted),
        ``time_budget`` (None: an epoch budget), ``stopped_by`` (``time_budget``,
        ``epochs`` or the name :meth:`should_stop` gave) and ``stop_reason`` (its message,
        else None)."""
        budget = self.config.time_budget
        if self.stop is not None:
            stopped_by = self.stop[0]
        elif budget is not None and self.budget_seconds >= budget:
            stopped_by = "time_budget"
        else:
            stopped_by = "epochs"
        return {
            "epochs_done": len(self.history),
            "steps": self.steps_done,
            "budget_seconds": round(self.budget_seconds, 2),
            "setup_seconds": round(self.setup_seconds, 2),
            "time_budget": budget,
            "stopped_by": stopped_by,
            "stop_reason": None if self.stop is None else self.stop[1],
        }

    def _batches(self, data, epoch: int):
        """The step arguments of `epoch`; with a strategy, split over the replicas (and
        the compiled global step made for their spec)."""
        batches = self.train_batches(data, epoch)
        if self.strategy is None:
            return batches
        batches = self.strategy.experimental_distribute_dataset(batches)
        if self._step_fn is None:
            self._step_fn = distribute.distribute_step(
                self.strategy, self.train_step, self.config.jit_compile, batches.element_spec
            )
        return batches

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
                    tf.summary.scalar(progress.tensorboard_tag(k), v, step=record["epoch"])
        self._writer.flush()

    # -- checkpoints ----------------------------------------------------------------------------
    def _state_variables(self) -> list:
        seen, out = set(), []
        optimizer_vars = [v for opt in self.optimizers() for v in opt.variables]
        for v in [*self.model.variables, *optimizer_vars, *self.extra_variables()]:
            if id(v) not in seen:
                seen.add(id(v))
                out.append(v)
        return out

    @property
    def checkpoint_dir(self) -> str | None:
        return None if self.output_dir is None else os.path.join(self.output_dir, "checkpoints")

    def config_dict(self) -> dict[str, Any]:
        """What a checkpoint must have been written with to be resumed (JSON-able)."""
        return {"trainer": self.name, **dataclasses.asdict(self.config)}

    def checkpoint(self, epochs_done: int) -> None:
        """Writes every model and optimizer variable and the loop state as one unit: the
        arrays go to a new ``ckpt-<epochs>.npz``, then ``state.json`` (the manifest, written
        last) names it with its SHA-256, then older array files are deleted. Each file is
        written atomically, so a stop at any point leaves the last complete checkpoint."""
        if self.checkpoint_dir is None:
            return
        variables = self._state_variables()
        arrays = {f"v{i:05d}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(variables)}
        name = f"ckpt-{epochs_done:05d}.npz"
        with io.atomic_path(os.path.join(self.checkpoint_dir, name)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            digest = io.sha256(tmp)
        io.write_json(
            os.path.join(self.checkpoint_dir, "state.json"),
            {
                "arrays": name,
                "sha256": digest,
                "epochs_done": epochs_done,
                # the key predates the generic trainer: training seconds of any trainer
                "search_seconds": self.seconds,
                "budget_seconds": self.budget_seconds,
                "setup_seconds": self.setup_seconds,
                "steps_done": self.steps_done,
                "history": self.history,
                "config": self.config_dict(),
                "variables": [v.path for v in variables],
                "extra": self.extra_state(),
                "stop": self.stop,
            },
        )
        for old in os.listdir(self.checkpoint_dir):  # superseded array files
            if old != name and (old == "ckpt.npz" or _ARRAYS.fullmatch(old)):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.checkpoint_dir, old))

    def restore(self) -> int:
        """Loads the last checkpoint; returns the number of epochs it had completed (0 when
        there is none). Raises CheckpointError when it was written by a different configuration."""
        if self.checkpoint_dir is None:
            raise CheckpointError("{resume} needs an output_dir")
        state_path = os.path.join(self.checkpoint_dir, "state.json")
        if not os.path.exists(state_path):
            return 0
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(
                f"{{resume}}: the checkpoint manifest {state_path} is unreadable ({e}); "
                "{overwrite} starts afresh"
            ) from e
        # checkpoints before the manifest: one ckpt.npz, no checksum
        arrays_path = os.path.join(self.checkpoint_dir, state.get("arrays", "ckpt.npz"))
        if "sha256" in state:
            if not os.path.isfile(arrays_path):
                raise CheckpointError(
                    f"{{resume}}: {arrays_path}, named by {state_path}, is missing; "
                    "{overwrite} starts afresh"
                )
            if io.sha256(arrays_path) != state["sha256"]:
                raise CheckpointError(
                    f"{{resume}}: {arrays_path} does not match the checksum in {state_path} "
                    "(damaged or replaced); {overwrite} starts afresh"
                )
        try:
            with np.load(arrays_path) as npz:
                arrays = [npz[f"v{i:05d}"] for i in range(len(npz.files))]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise CheckpointError(
                f"{{resume}}: the checkpoint file {arrays_path} is unreadable ({e}); "
                "{overwrite} starts afresh"
            ) from e
        saved, now = state.get("config", {}), self.config_dict()
        changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        if changed:
            detail = ", ".join(f"{{{k}}}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise CheckpointError(
                f"{{resume}}: the checkpoint was written with other settings ({detail})"
            )
        variables = self._state_variables()
        if len(arrays) != len(variables):
            raise CheckpointError(
                f"{{resume}}: the checkpoint has {len(arrays)} variables, "
                f"the model has {len(variables)}"
            )
        for v, a in zip(variables, arrays, strict=True):
            if tuple(v.shape) != a.shape:
                raise CheckpointError(
                    f"{{resume}}: variable {v.path} has shape {tuple(v.shape)}, "
                    f"checkpoint {a.shape}"
                )
            v.assign(a)
        self.history = [self.rename_legacy(r) for r in state["history"]]
        self.seconds = float(state["search_seconds"])
        self.budget_seconds = float(state.get("budget_seconds", self.seconds))
        self.setup_seconds = float(state.get("setup_seconds", 0.0))
        self.steps_done = state.get("steps_done")
        self.set_extra_state(state.get("extra", {}))
        stop = state.get("stop")
        self.stop = None if stop is None else (stop[0], stop[1])
        return int(state["epochs_done"])


class OneShotTrainer(Trainer):
    """Trains a Keras model that contains MixedOp layers: the loop of :class:`Trainer` plus
    the architecture logits, their Adam optimizer and a per-epoch summary of the
    architecture distribution.

    Args:
      model: any Keras model with at least one :class:`kerasnas.layers.MixedOp`; its output
        must be logits (B, num_classes).
      config: a :class:`TrainerConfig` (or subclass); a plain :class:`LoopConfig` for
        trainers that do not learn the logits (no ``a_opt``).
      output_dir: where ``tensorboard/`` and ``checkpoints/`` go; None keeps nothing.
      verbose: as :class:`Trainer`.
      strategy: a ``tf.distribute.Strategy`` whose scope `model` was built in, or None.

    Per epoch it validates the supernet as it searches (:attr:`valid_key`:
    ``sampled_supernet_valid_acc``, one pass with new samples per batch, or
    ``softmax_supernet_valid_acc`` for a softmax mixture) and, every :attr:`argmax_every`
    epochs and at the last one (0: never), the argmax child (``argmax_child_valid_acc``:
    the supernet with every edge's most likely op, its batch-norm averages as they are).
    """

    name = "oneshot"
    step_name = "search step"
    compile_note = "tracing and graph optimisation, once per run: 1-3 min for a supernet on 2 cores"
    relaxations: tuple[str, ...] = ()  # the MixedOp relaxations a subclass trains (): any)
    argmax_every = 0  # epochs between argmax-child validations (0: none)

    def __init__(self, model: keras.Model, config: LoopConfig, *args: Any, **kwargs: Any):
        self.mixed = mixed_ops(model)
        if not self.mixed:
            raise ValueError(f"{type(self).__name__}: the model has no MixedOp layer to search")
        bad = [m for m in self.mixed if self.relaxations and m.relaxation not in self.relaxations]
        if bad:
            allowed = " or ".join(repr(r) for r in self.relaxations)
            raise ValueError(
                f"{type(self).__name__} needs MixedOps with relaxation {allowed}; "
                f"{bad[0].name} uses relaxation {bad[0].relaxation!r}"
            )
        super().__init__(model, config, *args, **kwargs)
        self.arch_vars = arch_variables(model)
        self.a_opt = None  # trainers that sample children (ENAS) do not learn the logits
        # the collapse figures and guard (kerasnas.trainers.collapse); see watch_collapse
        self.collapse: CollapseWatch | None = None
        if isinstance(config, TrainerConfig):
            with self.scope():
                self.a_opt = keras.optimizers.Adam(
                    config.a_lr, beta_1=config.a_beta_1, beta_2=config.a_beta_2, name="a_opt"
                )
                self.a_opt.build(self.arch_vars)
            self.collapse = CollapseWatch(self)

    def watch_collapse(self, space: Any, rule: str = "argmax") -> None:
        """Measures the parameter-free share of the child that `space` (a
        :class:`~kerasnas.search_spaces.cell.CellSpace`) derives from the model with `rule`
        every epoch (without a space only the eigenvalue is measured; the search job calls
        this). A no-op for trainers that do not learn logits."""
        if self.collapse is not None:
            self.collapse.space, self.collapse.rule = space, rule

    @classmethod
    def create(cls, supernet: keras.Model, space: Any, *args: Any, **kwargs: Any) -> OneShotTrainer:
        """The trainer of a cell-space `supernet` built from `space` (a
        :class:`~kerasnas.search_spaces.cell.CellSpace`; most trainers need only the
        supernet), as the search job makes it; the other arguments are the constructor's."""
        return cls(supernet, *args, **kwargs)

    def select_weights(self) -> list:
        """Network weights only: every trainable variable except the architecture logits."""
        return weight_variables(self.model)

    def candidate_masks(self, chosen) -> list:
        """Which weights a step that runs one op per edge trains, as ``apply_update``'s
        `active`: per weight variable None (outside the candidate ops: always trained) or a
        boolean scalar tensor, True when its candidate op is the one `chosen(layer)` picks
        (an int scalar tensor per MixedOp, or None: all its candidates train). The others
        keep their values and optimizer state, as PyTorch's SGD leaves parameters without
        a gradient alone."""
        if not hasattr(self, "_candidate_slots"):
            slot: dict[int, tuple[int, int]] = {}
            for m, layer in enumerate(self.mixed):
                for k, candidate in enumerate(layer.candidates):
                    for v in candidate.trainable_variables:
                        slot[id(v)] = (m, k)
            self._candidate_slots = [slot.get(id(v)) for v in self.weight_vars]
        index: dict[int, tf.Tensor | None] = {}
        masks: dict[tuple[int, int], tf.Tensor | None] = {}
        out = []
        for s in self._candidate_slots:
            if s is not None and s not in masks:
                if s[0] not in index:
                    i = chosen(self.mixed[s[0]])
                    index[s[0]] = None if i is None else tf.cast(i, tf.int32)
                masks[s] = None if index[s[0]] is None else tf.equal(index[s[0]], s[1])
            out.append(None if s is None else masks[s])
        return out

    def optimizers(self) -> list:
        return [self.w_opt] + ([self.a_opt] if self.a_opt is not None else [])

    def config_dict(self) -> dict[str, Any]:
        config = super().config_dict()
        if not config.get("collapse_guard") and not config.get("hessian_every"):
            # neither guard nor eigenvalue: the run is the same, and checkpoints from
            # before the guard resume
            for name in [k for k in config if k.startswith(("collapse_", "hessian_"))]:
                config.pop(name)
        return config

    @property
    def search_seconds(self) -> float:
        """Seconds of search so far (:attr:`seconds`)."""
        return self.seconds

    @search_seconds.setter
    def search_seconds(self, value: float) -> None:
        self.seconds = value

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

    def epoch_extras(self) -> dict[str, float]:
        return self.arch_summary()

    @property
    def valid_key(self) -> str:
        if all(m.relaxation == "softmax" for m in self.mixed):
            return "softmax_supernet_valid_acc"  # deterministic: the mixture
        return "sampled_supernet_valid_acc"  # one pass, new samples (children) per batch

    def validate(self, data, epoch: int, last: bool) -> dict[str, float]:
        out = super().validate(data, epoch, last)
        every = self.argmax_every
        if every and (last or (epoch + 1) % every == 0):
            with self.first_pass(ARGMAX_CHILD, "the argmax child's validation pass"):
                out[ARGMAX_CHILD] = self.evaluate(data.valid(self.config.batch_size), "argmax")
        if self.collapse is not None:
            first = (
                self.first_pass(EIGENVALUE, "the Hessian eigenvalue's products")
                if self.collapse.measures_eigenvalue(epoch, last)
                else contextlib.nullcontext()
            )
            with first:
                out.update(self.collapse.figures(data, epoch, last))
        return out

    def should_stop(self, record: dict[str, Any]) -> tuple[str, str] | None:
        reason = None if self.collapse is None else self.collapse.should_stop(record)
        return None if reason is None else ("collapse_guard", reason)

    def extra_state(self) -> dict[str, Any]:
        guard = None if self.collapse is None else self.collapse.guard
        return {} if guard is None else {"collapse_guard": guard.state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        guard = None if self.collapse is None else self.collapse.guard
        if guard is not None and "collapse_guard" in state:
            guard.set_state(state["collapse_guard"])

    def evaluate(self, dataset: tf.data.Dataset, mode: str = "sample", repeats: int = 1) -> float:
        """Accuracy of the supernet on `dataset` with batch norm in inference mode and
        MixedOps in `mode` (``sample``: a Gumbel sample per batch at the current
        temperature, the stochastic supernet SNAS reports; ``argmax``; ``softmax``).
        With `repeats` > 1 the accuracy is the mean over that many passes (new samples)."""
        if mode != "sample" or all(m.relaxation == "softmax" for m in self.mixed):
            repeats = 1  # deterministic: every pass would give the same accuracy
        fn = self._inference_fn(mode)
        set_inference(self.model, mode)  # read when the function is traced (once per mode)
        try:
            return top1(fn, dataset, repeats)
        finally:
            set_inference(self.model, "argmax")
