"""The trial runner every black-box strategy shares: a ``keras_tuner.Tuner`` that builds the
child of a trial's hyperparameters, trains it on the train split and reports its reward.

A trial: the architecture of ``space.from_hyperparameters(trial.hyperparameters)`` is built
through :class:`~kerasnas.search_spaces.SpaceHyperModel` (``space.build`` with the data's
normalisation as first layer, compiled with Adam or SGD with momentum 0.9), trained for
``epochs`` epochs (``tuner/epochs`` when a Hyperband oracle sets it; always from scratch)
on ``bundle.train(epoch, batch_size)``, and scored on the validation split. The reward is
the validation accuracy, or MnasNet's resource-aware reward
``acc * (cost / target) ** w`` (w = `alpha` when cost <= target, else `beta`). The trial's
metrics hold ``reward``, ``val_accuracy``, ``params``, ``flops`` (``space.cost``) and
``seconds``; ``trial_<id>/result.json`` holds them exactly plus the architecture, the tuner
that ran it and wall-clock times. A model that is at least as good as every trial completed
before it is saved as ``trial_<id>/model.keras``, so the best trial's model always exists.

Determinism: each trial resets Keras' session and seeds from ``(seed, trial_id)``, and the
data order is a function of the data seed and the epoch, so a trial gives the same reward
whichever process runs it, and a resumed search the same history as an uninterrupted one
(with ``tf.config.experimental.enable_op_determinism()``).

Distributed mode (keras-tuner's ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``,
``KERASTUNER_TUNER_ID``) with timeouts, so that no process waits forever: the chief serves
the oracle over gRPC until every trial has ended and every worker that asked for trials has
been told the search is over (at most `grace` seconds after the last trial ended), or until
`timeout` seconds have passed (``ArchTuner.timed_out``); a worker gives up with
:class:`ChiefUnreachable` when a call to the chief gets no answer within `timeout` seconds
(a worker whose chief vanishes mid-trial exits within 2 x `timeout`: its result and its
end-of-trial calls each time out), and waits `poll` seconds between requests the oracle
answers with IDLE (keras-tuner's own loop asks again at once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
import zlib
from concurrent import futures
from typing import Any

import grpc
import keras
import keras_tuner
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_chief, oracle_client
from keras_tuner.src.distribute import utils as dist_utils

from kerasnas import io
from kerasnas.data import DataBundle
from kerasnas.multitrial.hypermodel import SpaceHyperModel
from kerasnas.search_spaces.base import DiscreteSpace
from kerasnas.trainers.base import accuracy

__all__ = [
    "ArchTuner",
    "ChiefUnreachable",
    "DistributedError",
    "TrialConfig",
    "arch_summary",
    "resource_aware_reward",
    "trial_seed",
]

REWARD = "reward"
RESULT_FILE = "result.json"
MODEL_FILE = "model.keras"
RESOURCES = ("params", "flops")


@dataclasses.dataclass
class TrialConfig:
    """The budget and reward of one trial.

    Attributes:
      epochs: training epochs per child (Hyperband sets its own, up to this).
      batch_size: minibatch size.
      optimizer: "adam" or "sgd" (momentum 0.9).
      learning_rate: None: 1e-3 for Adam, 0.05 for SGD.
      seed: seeds each trial with ``trial_seed(seed, trial_id)``.
      reward_target: MnasNet's target cost T (None: reward = validation accuracy).
      reward_resource: the cost compared with T: "params" or "flops" (mult-adds).
      reward_alpha, reward_beta: the exponent w when cost <= T and when cost > T.
      verbose: 1 prints one line per trial, 0 nothing.
    """

    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float | None = None
    seed: int = 0
    reward_target: float | None = None
    reward_resource: str = "params"
    reward_alpha: float = 0.0
    reward_beta: float = -0.07
    verbose: int = 1

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("trial epochs and batch_size must be >= 1")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"trial optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"trial learning rate must be > 0, got {self.learning_rate}")
        if self.reward_target is not None and not self.reward_target > 0:
            raise ValueError(f"reward target must be > 0, got {self.reward_target}")
        if self.reward_resource not in RESOURCES:
            raise ValueError(f"reward resource must be one of {RESOURCES}")

    @property
    def lr(self) -> float:
        """The learning rate in use."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 1e-3 if self.optimizer == "adam" else 0.05


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
    """A short one-line description of an architecture for progress output."""
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


class DistributedError(RuntimeError):
    """A distributed search could not finish: the message says which process and why."""


class ChiefUnreachable(DistributedError):
    """A worker got no answer from the chief oracle within its timeout."""


class _TimeoutStub:
    """The chief's gRPC stub with every call's timeout replaced by ours."""

    def __init__(self, stub: Any, timeout: float):
        self._stub = stub
        self._timeout = timeout

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        def call(request: Any, **kwargs: Any) -> Any:
            kwargs["timeout"] = self._timeout
            return method(request, **kwargs)

        return call


class _WorkerClient(oracle_client.OracleClient):
    """keras-tuner's ``OracleClient`` with a timeout per call (instead of an hour) and a
    pause after an IDLE answer (keras-tuner asks again at once, in a busy loop)."""

    def __init__(self, oracle: keras_tuner.Oracle, timeout: float, poll: float):
        super().__init__(oracle)
        self.stub = _TimeoutStub(self.stub, timeout)
        self._poll = poll

    def create_trial(self, tuner_id: str) -> keras_tuner.engine.trial.Trial:
        trial = super().create_trial(tuner_id)
        if trial.status == keras_tuner.engine.trial.TrialStatus.IDLE:
            time.sleep(self._poll)
        return trial


class ArchTuner(keras_tuner.Tuner):
    """Runs the trials of any oracle over a :class:`DiscreteSpace` (see the module doc).

    Args:
      oracle: any ``keras_tuner.Oracle`` whose objective is ``"reward"`` (max) and whose
        hyperparameters are ``space.hyperparameters()`` (declared here when missing).
      space: the discrete space.
      bundle: the data (train split for training, valid split for the reward).
      config: the :class:`TrialConfig`.
      directory, project_name, overwrite: keras-tuner's project directory.
      timeout: distributed mode: seconds a worker waits for the chief, and the chief's
        longest run.
      grace: seconds the chief waits, after the last trial ended, for workers still to be
        told that the search is over.
      poll: seconds between a worker's requests while the oracle answers IDLE.
    """

    def __init__(
        self,
        oracle: keras_tuner.Oracle,
        space: DiscreteSpace,
        bundle: DataBundle,
        config: TrialConfig,
        directory: str,
        project_name: str = "tuner",
        overwrite: bool = False,
        timeout: float = 600.0,
        grace: float = 10.0,
        poll: float = 0.2,
    ):
        config.validate()
        self.space = space
        self.bundle = bundle
        self.config = config
        self.timeout = float(timeout)
        self.grace = float(grace)
        self.poll = float(poll)
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
        if isinstance(self.oracle, oracle_client.OracleClient):
            self.oracle = _WorkerClient(self.oracle._oracle, self.timeout, self.poll)

    def _populate_initial_space(self) -> None:
        # the space's Choices, without building a model as keras-tuner's version does
        hp = self.oracle.get_space()
        self.space.declare(hp)
        self.oracle.update_space(hp)

    @property
    def is_worker(self) -> bool:
        """Whether this process is a worker of a distributed search."""
        return self._is_worker()

    # -- one trial ---------------------------------------------------------------------------

    def train_child(self, hp: keras_tuner.HyperParameters, trial_id: str, epochs: int):
        """The model of `hp` trained for `epochs` epochs, seeded by the trial id."""
        keras.backend.clear_session()
        keras.utils.set_random_seed(trial_seed(self.config.seed, trial_id))
        model = self.hypermodel.build(hp.copy())
        with warnings.catch_warnings():  # Keras: "shuffle=True ... ignored" for a Dataset
            warnings.simplefilter("ignore", UserWarning)
            for epoch in range(epochs):
                model.fit(self.bundle.train(epoch, self.config.batch_size), epochs=1, verbose=0)
        return model

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
        model = self.train_child(hp, trial.trial_id, epochs)
        val_acc = accuracy(model, self.bundle.valid(self.config.batch_size))
        cost = self.space.cost(arch, self.bundle.input_shape, self.bundle.num_classes)
        reward = self.reward(val_acc, int(cost.params), int(cost.flops))
        best = self._best_known()
        trial_dir = self.get_trial_dir(trial.trial_id)
        saved = reward >= best
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
            "start_time": start_wall,
            "end_time": time.time(),
            "model_saved": saved,
        }
        io.write_json(os.path.join(trial_dir, RESULT_FILE), result)
        self._best = max(self._best, reward)
        if self.config.verbose:
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

    def _best_known(self) -> float:
        best = self._best
        for trial in self.oracle.get_best_trials(1):
            if trial.status == "COMPLETED" and trial.score is not None:
                best = max(best, float(trial.score))
        return best

    # -- the search loop ---------------------------------------------------------------------

    def search(self, *args: Any, **kwargs: Any) -> None:
        """keras-tuner's search; in distributed mode with the timeouts of the module doc."""
        kwargs.setdefault("verbose", 0)
        if dist_utils.is_chief_oracle():
            self.oracle.verbose = kwargs["verbose"]
            self._serve()
            return
        try:
            super().search(*args, **kwargs)
        except grpc.RpcError as e:
            if not self.is_worker:
                raise
            address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
            raise ChiefUnreachable(
                f"worker {self.tuner_id}: the chief at {address} did not answer within "
                f"{self.timeout:g} s ({e.code().name})"
            ) from None

    def _search_done(self, servicer: Any) -> bool:
        oracle = self.oracle
        started_all = oracle.max_trials is not None and len(oracle.trials) >= oracle.max_trials
        return (
            (servicer.stop_triggered or started_all)
            and not oracle.ongoing_trials
            and not oracle._retry_queue
        )

    def _serve(self) -> None:
        """The chief: serve the oracle until the search is done and the workers are told."""
        address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
        servicer = oracle_chief.OracleServicer(self.oracle)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            raise DistributedError(f"chief: cannot listen on {address}")
        self.save()
        server.start()
        deadline = time.monotonic() + self.timeout
        done_at = None
        try:
            while True:
                time.sleep(0.1)
                now = time.monotonic()
                if self._search_done(servicer):
                    done_at = done_at or now
                    if not self.oracle.tuner_ids or now - done_at > self.grace:
                        break
                else:
                    done_at = None
                if now > deadline:
                    self.timed_out = True
                    break
        finally:
            server.stop(grace=1.0).wait()
            self.save()
