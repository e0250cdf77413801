"""The trial runner every black-box strategy shares: a ``keras_tuner.Tuner`` that builds the
child of a trial's hyperparameters, trains it on the train split and reports its reward.

A trial: the architecture of ``space.from_hyperparameters(trial.hyperparameters)`` is built
through :class:`~kerasnas.multitrial.hypermodel.SpaceHyperModel` (``space.build`` with the data's
normalisation as first layer, compiled with Adam or SGD with momentum 0.9), trained for
``epochs`` epochs (``tuner/epochs`` when a Hyperband oracle sets it; always from scratch)
on ``bundle.train(epoch, batch_size)``, and scored on the validation split. The reward is
the validation accuracy, or MnasNet's resource-aware reward
``acc * (cost / target) ** w`` (w = `alpha` when cost <= target, else `beta`). The trial's
metrics hold ``reward``, ``val_accuracy``, ``params``, ``flops`` (``space.cost``) and
``seconds``; ``trial_<id>/result.json`` holds them exactly plus the architecture, the tuner
that ran it and wall-clock times. A model that is at least as good as every trial completed
before it is saved as ``trial_<id>/model.keras``, so the best trial's model always exists;
with an estimator whose ``keeps_models`` is set (``morphism``), or with ``keep_models``,
every trial's model is saved,
and :meth:`ArchTuner.load_model` reads a completed trial's back.

Determinism: each trial resets Keras' session and seeds from ``(seed, trial_id)``, and the
data order is a function of the data seed and the epoch, so a trial gives the same reward
whichever process runs it, and a resumed search the same history as an uninterrupted one
(with ``tf.config.experimental.enable_op_determinism()``).

Distributed mode (keras-tuner's ``KERASTUNER_*`` variables, with timeouts so that no process
waits forever): see :mod:`kerasnas.multitrial.distributed`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
import zlib
from typing import Any

import grpc
import keras
import keras_tuner

from kerasnas import io
from kerasnas.data import DataBundle
from kerasnas.errors import KerasNASError
from kerasnas.estimation.base import Estimator, FullTraining, TrialContext
from kerasnas.evaluate import accuracy
from kerasnas.multitrial import distributed
from kerasnas.multitrial.distributed import ChiefUnreachable
from kerasnas.multitrial.hypermodel import SpaceHyperModel
from kerasnas.multitrial.settings import TrialConfig
from kerasnas.names import TRIAL_OPTIMIZERS, TRIAL_RESOURCES
from kerasnas.search_spaces.base import DiscreteSpace

__all__ = [
    "ArchTuner",
    "TrialConfig",
    "arch_summary",
    "resource_aware_reward",
    "trial_seed",
]

REWARD = "reward"
RESULT_FILE = "result.json"
MODEL_FILE = "model.keras"
RESOURCES = TRIAL_RESOURCES
# what each trial's estimate adds to its record (Estimate.record, less the curve)
ESTIMATE_FIELDS = (
    "estimator",
    "epochs_trained",
    "stopped_early",
    "predicted_accuracy",
    "predicted_std",
    "inherited_from",
)
OPTIMIZERS = TRIAL_OPTIMIZERS


def resource_aware_reward(
    accuracy_value: float, cost: float, target: float, alpha: float = 0.0, beta: float = -0.07
) -> float:
    """MnasNet's reward ``acc * (cost / target) ** w``, w = `alpha` if cost <= target else
    `beta` (MnasNet: alpha = beta = -0.07 soft, alpha = 0, beta = -1 hard constraint)."""
    if not target > 0 or cost < 0:
        raise ValueError(f"need target > 0 and cost >= 0, got {target}, {cost}")
    ratio = max(float(cost), 1e-12) / float(target)
    return float(accuracy_value) * ratio ** (alpha if cost <= target else beta)


def trial_seed(seed: int, trial_id: str) -> int:
    """The seed of one trial: a function of the search seed and the trial id only."""
    return zlib.crc32(f"{int(seed)}/{trial_id}".encode()) % (2**31 - 1)


def arch_summary(space: DiscreteSpace, arch: dict[str, Any], width: int = 70) -> str:
    """A one-line description of an architecture for the per-trial progress line, cut to
    `width` characters (ending in ``...``); ``space.describe(arch)`` has it in full.

    - ``nasrl``: one ``HxW:F`` per layer, layers numbered from 0: filter height x width,
      then filters; ``/S`` follows when the stride S is not 1, and ``<i,j`` lists the
      layers that feed it (concatenated) when that is not just the layer before
      (``<img``: the image). E.g. ``3x1:24 7x7:48<img 5x5:36<0,1``: a 3x1 conv of 24
      filters and a 7x7 conv of 48, both on the image, then a 5x5 conv of 36 on both.
      The classifier concatenates the layers no other layer reads.
    - ``metaqnn``: MetaQNN's layer strings in order: ``conv_{filters}_{kernel}``,
      ``pool_{kernel}_{stride}``, ``fc_{units}``, ``gap``, ``softmax``.
    - ``cell``: ``n: ... | r: ...``, the normal then the reduction cell, one group per
      intermediate node, each its two ``op<input`` pairs; inputs 0 and 1 are the cell's
      inputs (the two previous cells' outputs), 2.. the earlier nodes; ops abbreviated
      (``sep_conv_3x3`` -> ``sep3``, ``dil_conv_5x5`` -> ``dil5``, ``max_pool_3x3`` ->
      ``max3``, ``skip_connect`` -> ``skip``).
    """
    desc = space.describe(arch)
    layers = desc.get("layers") if isinstance(desc, dict) else None
    if isinstance(layers, list) and all(isinstance(x, str) for x in layers):
        text = " ".join(layers)
    elif isinstance(layers, list) and all(isinstance(x, dict) for x in layers):
        parts = []
        for n, layer in enumerate(layers):
            h, w = layer.get("filter_height"), layer.get("filter_width")
            part = f"{h}x{w}:{layer.get('filters')}"
            if layer.get("stride", 1) != 1:
                part += f"/{layer['stride']}"
            inputs = layer.get("inputs", [])
            if inputs != ([n - 1] if n else []):
                part += "<" + (",".join(str(i) for i in inputs) or "img")
            parts.append(part)
        text = " ".join(parts)
    elif isinstance(desc, dict) and "normal" in desc and "reduce" in desc:
        text = " | ".join(
            f"{kind[0]}: "
            + " ".join(",".join(f"{_short(op)}<{i}" for op, i in node) for node in desc[kind])
            for kind in ("normal", "reduce")
        )
    else:
        text = json.dumps(desc, separators=(",", ":"))
    return text if len(text) <= width else text[: width - 3] + "..."


def _short(op: str) -> str:
    """``sep_conv_3x3`` -> ``sep3``, ``skip_connect`` -> ``skip``."""
    head, tail = op.split("_", 1)[0], op.rsplit("x", 1)[-1]
    return head + tail if tail.isdigit() else head


class _BudgetSpent(KerasNASError):
    """Raised before a new trial when the time budget is spent; ends :meth:`ArchTuner.search`."""


class ArchTuner(keras_tuner.Tuner):
    """Runs the trials of any oracle over a :class:`DiscreteSpace` (see the module doc).

    Args:
      oracle: any ``keras_tuner.Oracle`` whose objective is ``"reward"`` (max) and whose
        hyperparameters are ``space.hyperparameters()`` (declared here when missing).
      space: the discrete space.
      bundle: the data (train split for training, valid split for the reward).
      config: the :class:`TrialConfig`.
      verbose: 1 prints one line per trial, 0 nothing.
      directory, project_name, overwrite: keras-tuner's project directory.
      timeout: distributed mode: seconds a worker waits for the chief, and the chief's
        longest run.
      grace: seconds the chief waits, after the last trial ended, for workers still to be
        told that the search is over.
      poll: seconds between a worker's requests while the oracle answers IDLE.
      silence: distributed mode: seconds without word from a worker (a heartbeat after every
        epoch of its trial) before the chief hands its trial to another worker.
      estimator: how a trial's architecture is scored (:mod:`kerasnas.estimation`; default
        :class:`~kerasnas.estimation.base.FullTraining`).
      time_budget: seconds of trials (the sum of the completed trials' ``seconds``, read from
        their ``result.json``, so a resumed search counts the earlier ones) after which no new
        trial starts; None: no budget. ``budget_spent`` tells whether it ended the search.
      keep_models: save every trial's trained model, not only the best so far (a search
        that exports its Pareto front needs them).
    """

    def __init__(
        self,
        oracle: keras_tuner.Oracle,
        space: DiscreteSpace,
        bundle: DataBundle,
        config: TrialConfig,
        directory: str,
        verbose: int = 1,
        project_name: str = "tuner",
        overwrite: bool = False,
        timeout: float = 600.0,
        grace: float = 10.0,
        poll: float = 0.2,
        silence: float = 120.0,
        estimator: Estimator | None = None,
        time_budget: float | None = None,
        keep_models: bool = False,
    ):
        config.validate()
        self.keep_models = bool(keep_models)
        if time_budget is not None and not time_budget > 0:
            raise ValueError(f"ArchTuner: time_budget must be > 0 or None, got {time_budget!r}")
        self.time_budget = None if time_budget is None else float(time_budget)
        self.budget_spent = False
        if estimator is not None and not isinstance(estimator, Estimator):
            raise ValueError(f"ArchTuner: estimator must be an Estimator, got {estimator!r}")
        self.estimator = estimator or FullTraining()
        self.space = space
        self.bundle = bundle
        self.config = config
        self.verbose = verbose
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.poll = float(poll)
        self.silence = float(silence)
        self.timed_out = False
        self._best = float("-inf")
        hypermodel = SpaceHyperModel(
            space,
            bundle.input_shape,
            bundle.num_classes,
            bundle.normalization_layer(),
            optimizer=config.optimizer,
            learning_rate=config.lr,
        )
        super().__init__(
            oracle=oracle,
            hypermodel=hypermodel,
            directory=directory,
            project_name=project_name,
            overwrite=overwrite,
        )
        self.oracle = distributed.worker_client(self.oracle, self.timeout, self.poll)

    def _populate_initial_space(self) -> None:
        # the space's Choices, without building a model as keras-tuner's version does
        hp = self.oracle.get_space()
        self.space.declare(hp)
        self.oracle.update_space(hp)

    @property
    def is_worker(self) -> bool:
        """Whether this process is a worker of a distributed search."""
        return distributed.role() == "worker"

    # -- one trial ---------------------------------------------------------------------------

    def build_child(
        self,
        arch: dict[str, Any],
        trial_id: str,
        space: DiscreteSpace | None = None,
        resolution: tuple[int, int] | None = None,
    ) -> keras.Model:
        """A fresh compiled model of `arch`, seeded by the trial id (Keras' session cleared).
        `space`: the space `arch` belongs to (None: the search's; a proxy's reduced space);
        `resolution`: (H, W) the images are resized to inside the model (None: the data's)."""
        keras.backend.clear_session()
        keras.utils.set_random_seed(trial_seed(self.config.seed, trial_id))
        space = self.space if space is None else space
        hp = space.hyperparameters()
        hp.values.update(space.validate(arch))
        hypermodel = self.hypermodel
        if space is not self.space or resolution is not None:
            hypermodel = hypermodel.variant(space, resolution)
        return hypermodel.build(hp)

    def train_epoch(self, model: keras.Model, epoch: int, trial_id: str, dataset=None) -> None:
        """One epoch of `model` on the train split (or `dataset`), then a heartbeat to a
        distributed chief."""
        if dataset is None:
            dataset = self.bundle.train(epoch, self.config.batch_size)
        with warnings.catch_warnings():  # Keras: "shuffle=True ... ignored" for a Dataset
            warnings.simplefilter("ignore", UserWarning)
            model.fit(dataset, epochs=1, verbose=0)
        if self.is_worker:  # the chief may be gone: stop now, not after the trial
            self.oracle.heartbeat(trial_id)

    def train_child(self, hp: keras_tuner.HyperParameters, trial_id: str, epochs: int):
        """The model of `hp` trained for `epochs` epochs, seeded by the trial id."""
        model = self.build_child(self.space.from_hyperparameters(hp), trial_id)
        for epoch in range(epochs):
            self.train_epoch(model, epoch, trial_id)
        return model

    def load_model(self, trial_id: str) -> keras.Model | None:
        """The trained model of completed trial `trial_id` (None when it was not kept)."""
        trial_dir = os.path.join(self.project_dir, f"trial_{trial_id}")
        path = os.path.join(trial_dir, MODEL_FILE)
        if not (os.path.exists(path) and os.path.exists(os.path.join(trial_dir, RESULT_FILE))):
            return None
        return keras.models.load_model(path, compile=False)

    def trial_context(
        self,
        trial_id: str,
        arch: dict[str, Any],
        epochs: int,
        values: dict[str, Any] | None = None,
    ) -> TrialContext:
        """What the estimator sees of one trial (see :class:`TrialContext`); `values`: the
        trial's hyperparameter values."""
        batch = self.config.batch_size
        completed = self._completed_results()
        accuracies = [r["val_accuracy"] for r in completed if "val_accuracy" in r]
        return TrialContext(
            trial_id=trial_id,
            arch=arch,
            space=self.space,
            bundle=self.bundle,
            epochs=epochs,
            batch_size=batch,
            best_accuracy=max(accuracies, default=float("-inf")),
            completed=completed,
            build=lambda a, space=None, resolution=None: self.build_child(
                a, trial_id, space, resolution
            ),
            train_epoch=lambda m, e, dataset=None: self.train_epoch(m, e, trial_id, dataset),
            evaluate=lambda m: accuracy(m, self.bundle.valid(batch)),
            values=dict(values or {}),
            load_model=self.load_model,
            directory=self.project_dir,
        )

    def reward(self, val_accuracy: float, params: int, flops: int) -> float:
        """The trial's reward (see :class:`TrialConfig`)."""
        cfg = self.config
        if cfg.reward_target is None:
            return float(val_accuracy)
        cost = params if cfg.reward_resource == "params" else flops
        return resource_aware_reward(
            val_accuracy, cost, cfg.reward_target, cfg.reward_alpha, cfg.reward_beta
        )

    def run_trial(self, trial: keras_tuner.engine.trial.Trial, *args: Any, **kwargs: Any):
        start_wall, t0 = time.time(), time.perf_counter()
        hp = trial.hyperparameters
        arch = self.space.from_hyperparameters(hp)
        epochs = int(hp.values.get("tuner/epochs", self.config.epochs))
        context = self.trial_context(trial.trial_id, arch, epochs, dict(hp.values))
        estimate = self.estimator.estimate(context)
        model, val_acc = estimate.model, float(estimate.val_accuracy)
        cost = self.space.cost(arch, self.bundle.input_shape, self.bundle.num_classes)
        reward = self.reward(val_acc, int(cost.params), int(cost.flops))
        best = self._best_known()
        trial_dir = self.get_trial_dir(trial.trial_id)
        keep = self.keep_models or self.estimator.keeps_models
        saved = model is not None and (reward >= best or keep)
        if saved:
            with io.atomic_path(os.path.join(trial_dir, MODEL_FILE)) as tmp:
                model.save(tmp)
        seconds = time.perf_counter() - t0
        result = {
            "trial_id": trial.trial_id,
            "tuner_id": self.tuner_id,
            "architecture": self.space.describe(arch),
            REWARD: reward,
            "val_accuracy": val_acc,
            "params": int(cost.params),
            "flops": int(cost.flops),
            "seconds": round(seconds, 3),
            "epochs": epochs,
            "estimator": self.estimator.name,
            **estimate.record(),
            "start_time": start_wall,
            "end_time": time.time(),
            "model_saved": saved,
        }
        io.write_json(os.path.join(trial_dir, RESULT_FILE), result)
        self._best = max(self._best, reward)
        if self.verbose:
            total = self.oracle.max_trials
            print(
                f"trial {int(trial.trial_id) + 1}/{total} [{self.tuner_id}] "
                f"{arch_summary(self.space, arch)} | reward {reward:.4f} (val {val_acc:.4f}) | "
                f"{int(cost.params):,} params | {seconds:.1f} s | best {max(best, reward):.4f}",
                flush=True,
            )
        return {
            REWARD: reward,
            "val_accuracy": val_acc,
            "params": float(cost.params),
            "flops": float(cost.flops),
            "seconds": seconds,
        }

    def records(self) -> list[dict[str, Any]]:
        """One dict per trial of the oracle, in trial id order: trial_id, status, tuner_id,
        architecture (``space.describe``), epochs, start_time, end_time (wall clock, s),
        reward, val_accuracy, params, flops, seconds, and the estimator's estimator,
        epochs_trained, stopped_early, predicted_accuracy, predicted_std, inherited_from
        (None where unknown)."""
        records = []
        for trial_id in sorted(self.oracle.trials):
            trial = self.oracle.trials[trial_id]
            result = {}
            path = os.path.join(self.project_dir, f"trial_{trial_id}", RESULT_FILE)
            if trial.status == "COMPLETED" and os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    result = json.load(f)
            arch = self.space.from_hyperparameters(trial.hyperparameters)
            row: dict[str, Any] = {
                "trial_id": trial_id,
                "status": trial.status,
                "tuner_id": result.get("tuner_id", ""),
                "architecture": self.space.describe(arch),
                "epochs": result.get("epochs"),
                "start_time": result.get("start_time"),
                "end_time": result.get("end_time"),
                **{name: result.get(name) for name in ESTIMATE_FIELDS},
            }
            for name in ("reward", "val_accuracy", "params", "flops", "seconds"):
                value = result.get(name)
                if value is None and trial.metrics.exists(name):
                    value = trial.metrics.get_last_value(name)
                row[name] = value
            records.append(row)
        return records

    def _completed_results(self) -> list[dict[str, Any]]:
        """``result.json`` of every trial that has one in the project directory (shared by a
        distributed search's processes), oldest first."""
        results = []
        if os.path.isdir(self.project_dir):
            for name in os.listdir(self.project_dir):
                path = os.path.join(self.project_dir, name, RESULT_FILE)
                if name.startswith("trial_") and os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        results.append(json.load(f))
        return sorted(results, key=lambda r: (r.get("end_time") or 0.0, r["trial_id"]))

    def spent_seconds(self) -> float:
        """Seconds of the completed trials (the sum of their ``seconds``)."""
        return float(sum(r.get("seconds") or 0.0 for r in self._completed_results()))

    def pre_create_trial(self) -> None:
        if self.time_budget is not None and self.spent_seconds() >= self.time_budget:
            raise _BudgetSpent("the time budget is spent")

    def _best_known(self) -> float:
        best = self._best
        for trial in self.oracle.get_best_trials(1):
            if trial.status == "COMPLETED" and trial.score is not None:
                best = max(best, float(trial.score))
        return best

    # -- the search loop ---------------------------------------------------------------------

    def search(self, *args: Any, **kwargs: Any) -> None:
        """keras-tuner's search; in distributed mode with the timeouts of
        :mod:`~kerasnas.multitrial.distributed` (the chief serves the oracle)."""
        kwargs.setdefault("verbose", 0)
        if distributed.role() == "chief":
            self.oracle.verbose = kwargs["verbose"]
            self.timed_out = distributed.serve(
                self.oracle, self.save, self.timeout, self.grace, silence=self.silence
            )
            return
        try:
            super().search(*args, **kwargs)
        except _BudgetSpent:
            self.budget_spent = True
        except (grpc.RpcError, distributed.ChiefLost) as e:
            if not self.is_worker:
                raise
            status = e.code().name if isinstance(e, grpc.RpcError) else str(e)
            raise ChiefUnreachable(
                f"worker {self.tuner_id}: the chief at {distributed.chief_address()} did not "
                f"answer within {self.timeout:g} s ({status}); its trial is abandoned"
            ) from None
