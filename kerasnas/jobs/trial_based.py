"""The black-box search job: a strategy (a ``keras_tuner.Oracle``) proposes architectures of
a discrete space, :class:`~kerasnas.multitrial.runner.ArchTuner` trains each one as a trial.

This is what ``kerasnas-search --strategy=<reinforce|metaqnn|evolution|renas|random|bayesian|
hyperband>`` runs; :func:`run_blackbox` is the Python entry point. Output directory (every
file written atomically, ``metrics.json`` last):

- ``architecture.json`` (``nasrl``, ``metaqnn``: ``space.describe`` of the best trial) or
  ``genotype.json`` (``cell``: a :class:`kerasnas.Genotype`);
- ``best.keras``: the best trial's trained child (loadable after ``import kerasnas``; raw
  images in, logits out);
- ``history.csv``: one row per trial (id, status, tuner, reward, validation accuracy,
  params, FLOPs, seconds, epochs, end time since the search began, architecture JSON);
- ``search_curve.png``: best reward so far against trials and against wall-clock time;
- ``metrics.json``: the best trial, its validation and test accuracy, costs, seconds,
  settings;
- ``search_settings.json`` and ``tuner/`` (keras-tuner's project: oracle state, trials):
  ``resume=True`` reloads the oracle and continues the stopped search (``max_trials`` may
  grow; other settings must not change). A search stopped after k trials, or killed during
  one (keras-tuner runs the interrupted trial again, with the same seed), ends with the
  ``history.csv`` of an uninterrupted one except the wall-clock columns (``seconds``,
  ``end_seconds``);
- ``export/`` when ``export`` formats are given (see :mod:`kerasnas.export`).

Distributed mode: with keras-tuner's ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``
and ``KERASTUNER_TUNER_ID`` set, the chief (an id containing ``chief``) serves the oracle
and writes the outputs, and every other process is a worker that runs trials (run the same
command, with the same output directory on a shared file system, in every process). Trial
rewards depend only on the seed and the trial id, so the history matches a one-process run
except for the ``tuner_id`` and wall-clock columns. See :mod:`kerasnas.multitrial.runner` for
the timeouts that make every process exit (exit code 1 after a timeout).
"""

from __future__ import annotations

import csv
import dataclasses
import io as std_io
import json
import math
import os
import shutil
import time
from typing import Any

import grpc
import keras
import keras_tuner
import tensorflow as tf
from keras_tuner.src.distribute import utils as dist_utils

from kerasnas import data as data_lib
from kerasnas import io
from kerasnas.export.exporter import ExportError, parse_formats
from kerasnas.genotype import Genotype
from kerasnas.jobs.one_shot import SearchError, export_child
from kerasnas.multitrial.oracles import (
    RandomSearchOracle,
    RegularizedEvolutionOracle,
    ReinforceOracle,
    RENASOracle,
)
from kerasnas.multitrial.qlearning import QLearningOracle
from kerasnas.multitrial.runner import (
    MODEL_FILE,
    RESULT_FILE,
    ArchTuner,
    ChiefUnreachable,
    DistributedError,
    TrialConfig,
)
from kerasnas.search_spaces import SPACES, DiscreteSpace, get_space
from kerasnas.trainers.base import accuracy

__all__ = [
    "STRATEGIES",
    "BlackBoxSettings",
    "ChiefUnreachable",
    "DistributedError",
    "make_oracle",
    "make_space",
    "run_blackbox",
]

STRATEGIES = ("reinforce", "metaqnn", "evolution", "renas", "random", "bayesian", "hyperband")
PROJECT = "tuner"
SETTINGS_FILE = "search_settings.json"
HISTORY_COLUMNS = (
    "trial_id",
    "status",
    "tuner_id",
    "reward",
    "val_accuracy",
    "params",
    "flops",
    "seconds",
    "epochs",
    "end_seconds",
    "architecture",
)
# settings a resumed search may change
_RESUMABLE = {"output_dir", "max_trials", "resume", "overwrite", "verbose", "distributed_timeout"}


@dataclasses.dataclass
class BlackBoxSettings:
    """Everything a black-box search needs.

    `space_args` are the space's constructor arguments (``get_space(search_space,
    **space_args)``; the metaqnn space's ``image_size`` defaults to the data's). Strategy
    arguments: `population_size`, `sample_size` (evolution, renas), `controller_batch_size`
    (m architectures per REINFORCE step: reinforce, renas), `controller_learning_rate`,
    `entropy_weight`, `epsilon_explore` (metaqnn: trials at epsilon 1 before epsilon falls
    from 0.9 to 0.1 in 9 equal stages over the remaining trials; None: half of max_trials),
    `hyperband_factor` (Hyperband's max epochs are ``trial.epochs``). The seed is
    ``trial.seed`` (data split, oracle, every trial).
    """

    output_dir: str
    strategy: str = "random"
    search_space: str = "nasrl"
    dataset: str = "digits"
    max_trials: int = 20
    trial: TrialConfig = dataclasses.field(default_factory=TrialConfig)
    space_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    population_size: int = 10
    sample_size: int = 3
    controller_batch_size: int = 5
    controller_learning_rate: float = 6e-4
    entropy_weight: float = 0.0
    epsilon_explore: int | None = None
    hyperband_factor: int = 3
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    export: tuple[str, ...] = ()
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1
    distributed_timeout: float = 600.0


def _check(settings: BlackBoxSettings) -> None:
    if settings.strategy not in STRATEGIES:
        raise SearchError(f"--strategy must be one of {', '.join(STRATEGIES)}")
    if settings.search_space not in SPACES:
        raise SearchError(f"--search_space must be one of {', '.join(sorted(SPACES))}")
    if settings.max_trials < 1:
        raise SearchError("--max_trials must be >= 1")
    if not 1 <= settings.sample_size <= settings.population_size:
        raise SearchError("need 1 <= --sample_size <= --population_size")
    if settings.controller_batch_size < 1 or not settings.controller_learning_rate > 0:
        raise SearchError("need --controller_batch_size >= 1 and --controller_learning_rate > 0")
    if settings.hyperband_factor < 2:
        raise SearchError("--hyperband_factor must be >= 2")
    if settings.epsilon_explore is not None and settings.epsilon_explore < 0:
        raise SearchError("--epsilon_explore must be >= 0")
    if not settings.distributed_timeout > 0:
        raise SearchError("--distributed_timeout must be > 0")
    try:
        settings.trial.validate()
    except ValueError as e:
        raise SearchError(f"invalid setting: {e}") from None


def make_space(settings: BlackBoxSettings, bundle: data_lib.DataBundle) -> DiscreteSpace:
    """The space of `settings` for images of `bundle`; raises SearchError."""
    args = dict(settings.space_args)
    if settings.search_space == "metaqnn":
        args.setdefault("image_size", int(min(bundle.input_shape[:2])))
    try:
        return get_space(settings.search_space, **args)
    except ValueError as e:
        raise SearchError(str(e)) from None


def epsilon_schedule(max_trials: int, explore: int | None) -> list[tuple[float, int]]:
    """MetaQNN's schedule shrunk to `max_trials`: `explore` trials at epsilon 1, then 0.9,
    0.8, ..., 0.1 in equal stages over the rest (0.1 stays after)."""
    explore = max(1, max_trials // 2) if explore is None else explore
    per = max(1, math.ceil((max_trials - explore) / 9))
    return [(1.0, explore)] + [(round(0.9 - 0.1 * i, 1), per) for i in range(9)]


def make_oracle(settings: BlackBoxSettings, space: DiscreteSpace) -> keras_tuner.Oracle:
    """The strategy's oracle over `space`, objective ``reward`` (max)."""
    common = {
        "objective": keras_tuner.Objective("reward", "max"),
        "max_trials": settings.max_trials,
        "hyperparameters": space.hyperparameters(),
        "seed": settings.trial.seed,
    }
    ours = {**common, "space": space}
    controller = {
        "learning_rate": settings.controller_learning_rate,
        "entropy_weight": settings.entropy_weight,
    }
    name = settings.strategy
    if name == "random":
        return RandomSearchOracle(**ours)
    if name == "evolution":
        return RegularizedEvolutionOracle(
            population_size=settings.population_size, sample_size=settings.sample_size, **ours
        )
    if name == "reinforce":
        return ReinforceOracle(batch_size=settings.controller_batch_size, **controller, **ours)
    if name == "renas":
        return RENASOracle(
            population_size=settings.population_size,
            sample_size=settings.sample_size,
            batch_size=settings.controller_batch_size,
            **controller,
            **ours,
        )
    if name == "metaqnn":
        return QLearningOracle(
            epsilon_schedule=epsilon_schedule(settings.max_trials, settings.epsilon_explore),
            **ours,
        )
    # keras-tuner's stock oracles take seed 0 for "random": they get seed + 1
    common["seed"] = settings.trial.seed + 1
    if name == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(**common)
    max_trials = common.pop("max_trials")
    oracle = keras_tuner.oracles.HyperbandOracle(
        max_epochs=settings.trial.epochs,
        factor=settings.hyperband_factor,
        hyperband_iterations=None,
        **common,
    )
    oracle.max_trials = max_trials  # Hyperband has no trial budget of its own
    return oracle


def distributed_role() -> str | None:
    """None (one process), "chief" or "worker", from keras-tuner's environment variables."""
    try:
        if not dist_utils.has_chief_oracle():
            return None
    except RuntimeError as e:
        raise SearchError(str(e).replace('"', "")) from None
    return "chief" if dist_utils.is_chief_oracle() else "worker"


def wait_for_chief(timeout: float) -> None:
    """Blocks until the chief oracle accepts connections; ChiefUnreachable after `timeout`."""
    address = f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}"
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise ChiefUnreachable(
            f"worker {os.environ['KERASTUNER_TUNER_ID']}: no chief at {address} "
            f"within {timeout:g} s"
        ) from None
    finally:
        channel.close()


def _settings_dict(settings: BlackBoxSettings) -> dict[str, Any]:
    out = dataclasses.asdict(settings)
    out["trial"].pop("verbose")
    out["export"] = list(settings.export)
    return json.loads(json.dumps(out))


def _check_resume(settings: BlackBoxSettings) -> None:
    """Refuses to resume a search that was started with other settings."""
    path = os.path.join(settings.output_dir, SETTINGS_FILE)
    if settings.resume and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
        new = _settings_dict(settings)
        for key in new:
            if key not in _RESUMABLE and old.get(key) != new[key]:
                raise SearchError(
                    f"--resume: {key} was {old.get(key)!r} in the stopped search, now {new[key]!r}"
                )
    io.write_json(path, _settings_dict(settings))


def run_blackbox(settings: BlackBoxSettings) -> dict[str, Any]:
    """Runs a black-box search and writes the output directory (see the module doc); returns
    the metrics (a worker returns ``{"role": "worker", ...}`` and writes nothing itself)."""
    _check(settings)
    try:
        formats = parse_formats(settings.export) if settings.export else ()
    except ExportError as e:
        raise SearchError(f"--export: {e}") from None
    role = distributed_role()
    seed = settings.trial.seed
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    tf.get_logger().setLevel("ERROR")  # accuracy() retraces for every child, by design
    log = print if settings.verbose else (lambda *a, **k: None)
    bundle = data_lib.load(
        settings.dataset,
        seed=seed,
        valid_fraction=settings.valid_fraction,
        test_fraction=settings.test_fraction,
    )
    space = make_space(settings, bundle)
    oracle = make_oracle(settings, space)
    tuner_args = {
        "directory": settings.output_dir,
        "project_name": PROJECT,
        "timeout": settings.distributed_timeout,
    }
    if role == "worker":
        wait_for_chief(settings.distributed_timeout)
        tuner = ArchTuner(oracle, space, bundle, settings.trial, **tuner_args)
        t0 = time.perf_counter()
        tuner.search()
        log(f"worker {tuner.tuner_id}: the search is over ({time.perf_counter() - t0:.0f} s)")
        return {"role": "worker", "tuner_id": tuner.tuner_id}

    try:
        io.prepare_output_dir(
            settings.output_dir, resume=settings.resume, overwrite=settings.overwrite
        )
    except io.OutputDirError as e:
        raise SearchError(str(e)) from None
    _check_resume(settings)
    log(
        f"data {bundle.name}: {bundle.num_train} train / {bundle.num_valid} valid / "
        f"{bundle.num_test} test | {settings.strategy} over {space!r}, "
        f"{settings.max_trials} trials of {settings.trial.epochs} epochs"
        + (" | chief" if role == "chief" else "")
    )
    tuner = ArchTuner(oracle, space, bundle, settings.trial, **tuner_args)
    try:
        tuner.search()
    except RuntimeError as e:  # keras-tuner: too many failed trials in a row
        if "consecutive failures" not in str(e):
            raise
        raise SearchError(f"trials keep failing: {_last_line(str(e))}") from None
    if tuner.timed_out:
        done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
        message = f"chief: timed out after --distributed_timeout={settings.distributed_timeout:g} s"
        if not done:
            raise DistributedError(f"{message} with no completed trial")
        log(f"{message}; writing the results of {done} completed trials")
    return _finish(settings, tuner, space, bundle, formats, log)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


def _read_result(tuner: ArchTuner, trial_id: str) -> dict[str, Any]:
    path = os.path.join(tuner.project_dir, f"trial_{trial_id}", RESULT_FILE)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def trial_records(tuner: ArchTuner) -> list[dict[str, Any]]:
    """One dict per trial of the oracle (see ``HISTORY_COLUMNS``), in trial id order."""
    records = []
    oracle = tuner.oracle
    for trial_id in sorted(oracle.trials):
        trial = oracle.trials[trial_id]
        result = _read_result(tuner, trial_id) if trial.status == "COMPLETED" else {}
        arch = tuner.space.from_hyperparameters(trial.hyperparameters)
        row: dict[str, Any] = {
            "trial_id": trial_id,
            "status": trial.status,
            "tuner_id": result.get("tuner_id", ""),
            "architecture": tuner.space.describe(arch),
            "epochs": result.get("epochs"),
            "start_time": result.get("start_time"),
            "end_time": result.get("end_time"),
        }
        for name in ("reward", "val_accuracy", "params", "flops", "seconds"):
            value = result.get(name)
            if value is None and trial.metrics.exists(name):
                value = trial.metrics.get_last_value(name)
            row[name] = value
        records.append(row)
    return records


def _csv(records: list[dict[str, Any]]) -> str:
    starts = [r["start_time"] for r in records if r["start_time"] is not None]
    origin = min(starts) if starts else 0.0
    out = std_io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for r in records:
        end = None if r["end_time"] is None else round(r["end_time"] - origin, 3)
        row = {**r, "end_seconds": end}
        row["architecture"] = json.dumps(r["architecture"], separators=(",", ":"))
        writer.writerow(["" if row[c] is None else row[c] for c in HISTORY_COLUMNS])
    return out.getvalue()


def plot_search_curve(records: list[dict[str, Any]], path: str, title: str) -> None:
    """Best reward so far against completed trials and against wall-clock seconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    done = sorted(
        (r for r in records if r["reward"] is not None and r["end_time"] is not None),
        key=lambda r: r["end_time"],
    )
    origin = min((r["start_time"] for r in done), default=0.0)
    best, curve = float("-inf"), []
    for r in done:
        best = max(best, float(r["reward"]))
        curve.append(best)
    fig = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(fig)
    for k, (xs, label) in enumerate(
        (
            (list(range(1, len(done) + 1)), "completed trials"),
            ([r["end_time"] - origin for r in done], "wall-clock seconds"),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.step(xs, curve, where="post", color="tab:blue")
        ax.plot(xs, [float(r["reward"]) for r in done], ".", color="tab:gray", alpha=0.6)
        ax.set_xlabel(label)
        ax.set_ylabel("best reward so far")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _finish(
    settings: BlackBoxSettings,
    tuner: ArchTuner,
    space: DiscreteSpace,
    bundle: data_lib.DataBundle,
    formats: Any,
    log: Any,
) -> dict[str, Any]:
    out = settings.output_dir
    oracle = tuner.oracle
    records = trial_records(tuner)
    completed = [t for t in oracle.trials.values() if t.status == "COMPLETED"]
    if not completed:
        failed = [t for t in oracle.trials.values() if t.message]
        reason = _last_line(failed[0].message) if failed else "no trial ran"
        raise SearchError(f"no trial completed: {reason}")
    best = oracle.get_best_trials(1)[0]
    arch = space.from_hyperparameters(best.hyperparameters)
    best_record = next(r for r in records if r["trial_id"] == best.trial_id)
    model_path = os.path.join(tuner.project_dir, f"trial_{best.trial_id}", MODEL_FILE)
    if os.path.exists(model_path):
        model = keras.models.load_model(model_path)
    else:  # not saved (an old project): the trial again, same seed
        epochs = best_record["epochs"] or settings.trial.epochs
        model = tuner.train_child(best.hyperparameters, best.trial_id, int(epochs))
    batch = settings.trial.batch_size
    metrics: dict[str, Any] = {
        "best_trial_id": best.trial_id,
        "best_reward": float(best.score),
        "best_valid_accuracy": accuracy(model, bundle.valid(batch)),
        "best_test_accuracy": accuracy(model, bundle.test(batch)),
        "best_params": best_record["params"],
        "best_flops": best_record["flops"],
        "best_architecture": best_record["architecture"],
        "trials": len(records),
        "trials_completed": len(completed),
        "trials_failed": sum(r["status"] == "FAILED" for r in records),
        "search_seconds": round(
            max(r["end_time"] for r in records if r["end_time"])
            - min(r["start_time"] for r in records if r["start_time"]),
            2,
        ),
        "trial_seconds": round(sum(r["seconds"] or 0.0 for r in records), 2),
        "strategy": settings.strategy,
        "search_space": settings.search_space,
        "space": space.get_config(),
        "dataset": bundle.name,
        "seed": settings.trial.seed,
        "workers": sorted({r["tuner_id"] for r in records if r["tuner_id"]}),
        "timed_out": tuner.timed_out,
        "settings": _settings_dict(settings),
    }
    if settings.search_space == "cell":
        Genotype.from_dict(space.describe(arch)).save(os.path.join(out, "genotype.json"))
    else:
        io.write_json(os.path.join(out, "architecture.json"), space.describe(arch))
    with io.atomic_path(os.path.join(out, "best.keras")) as tmp:
        if os.path.exists(model_path):
            shutil.copyfile(model_path, tmp)
        else:
            model.save(tmp)
    io.write_text(os.path.join(out, "history.csv"), _csv(records))
    plot_search_curve(
        records,
        os.path.join(out, "search_curve.png"),
        f"{settings.strategy} on {settings.search_space} / {bundle.name}: "
        f"best reward {metrics['best_reward']:.4f}",
    )
    if formats:
        metrics["export"] = export_child(
            model, os.path.join(out, "export"), formats, bundle, "best.keras", log
        )
    io.write_json(os.path.join(out, "metrics.json"), metrics)
    log(
        f"best: trial {int(best.trial_id) + 1} (id {best.trial_id}), reward "
        f"{metrics['best_reward']:.4f}, valid "
        f"{metrics['best_valid_accuracy']:.4f}, test {metrics['best_test_accuracy']:.4f}, "
        f"{metrics['best_params']:,} params | {len(completed)} trials in "
        f"{metrics['search_seconds']:.0f} s -> {out}"
    )
    return metrics
