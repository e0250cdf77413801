"""The trial-based search job: a strategy (a ``keras_tuner.Oracle``) proposes architectures of
a discrete space, :class:`~kerasnas.multitrial.runner.ArchTuner` trains each one as a trial.

This is what ``kerasnas-search`` runs for the trial-based strategies of
:mod:`kerasnas.strategies` (``reinforce``, ``metaqnn``, ``evolution``, ``renas``, ``random``,
``bayesian``, ``hyperband``, ``nash``, ``lemonade``, ``nsga2``); :func:`run_trial_search` is the
Python entry point. The strategy's settings are ``TrialSettings.config`` (its class is the
registry's ``settings``). Output directory (every file written atomically, ``metrics.json`` last):

- ``architecture.json`` (``nasrl``, ``metaqnn``: ``space.describe`` of the best trial) or
  ``genotype.json`` (``cell``: a :class:`kerasnas.Genotype`);
- ``best.keras``: the best trial's trained child (loadable after ``import kerasnas``; raw
  images in, logits out);
- ``tuner/trial_<id>/model.keras``: the trial's trained child when it was the best so far,
  or every trial's with ``--estimator=morphism`` (children inherit from them);
- ``history.csv``: one row per trial (id, status, tuner, reward, validation accuracy,
  params, FLOPs, seconds, epochs, end time since the search began, what the estimator did:
  its name, epochs trained, stopped early or not, predicted accuracy and its standard
  deviation, the trial the weights were inherited from; architecture JSON);
- ``search_curve.png``: best reward so far against trials and against wall-clock time;
- ``metrics.json``: the best trial, its validation and test accuracy, costs, seconds,
  settings;
- ``search_settings.json`` and ``tuner/`` (keras-tuner's project: oracle state, trials):
  ``resume=True`` reloads the oracle and continues the stopped search (``max_trials`` may
  grow; other settings must not change). A search stopped after k trials, or killed during
  one (keras-tuner runs the interrupted trial again, with the same seed), ends with the
  ``history.csv`` of an uninterrupted one except the wall-clock columns (``seconds``,
  ``end_seconds``);
- ``export/`` when ``export`` formats are given (see :mod:`kerasnas.export`);
- ``pareto.csv``, ``pareto.png`` and ``front/trial_<id>/`` with ``front_export`` = K > 0
  (default: 8 for ``nsga2``, 0 for the other strategies; any strategy's trials make a
  front): every completed trial as a point (its child's test accuracy against its
  params, or ``nsga2``'s ``objective_cost``), the front marked, and up to K front points
  exported, each verified as a float TFLite with its LiteRT latency (see
  :mod:`kerasnas.jobs.front`); every trial's model is kept in ``tuner/`` for it;
- ``retrain/trial_<id>/`` with ``retrain_top`` = K > 0: after the search, the K trials of
  highest reward are trained again from scratch with full training (``trial.epochs``
  epochs, all the training data, full resolution and width, the trial's seed), each
  ``model.keras`` and ``result.json`` (validation and test accuracy, seconds) written as
  it finishes; the best of them by validation accuracy becomes ``best.keras`` and
  ``architecture.json``, and ``metrics.json`` keeps its search estimate beside the
  retrained accuracies. A run stopped during the retraining continues with ``resume=True``
  (the search is over: only the trials not yet retrained are trained). With the ``full``
  estimator, retraining repeats a trial's own training (the same seed and budget).

Distributed mode: with keras-tuner's ``KERASTUNER_ORACLE_IP``, ``KERASTUNER_ORACLE_PORT``
and ``KERASTUNER_TUNER_ID`` set, the chief (an id containing ``chief``) serves the oracle
and writes the outputs, and every other process is a worker that runs trials (run the same
command, with the same output directory on a shared file system, in every process). Trial
rewards depend only on the seed and the trial id, so the history matches a one-process run
except for the ``tuner_id`` and wall-clock columns. See :mod:`kerasnas.multitrial.distributed` for
the timeouts that make every process exit (exit code 1 after a timeout).
"""

from __future__ import annotations

import csv
import io as std_io
import json
import os
import shutil
import time
from typing import Any

import keras

from kerasnas import io, strategies, summary
from kerasnas.errors import RunError, SettingError, within
from kerasnas.evaluate import accuracy
from kerasnas.genotype import Genotype
from kerasnas.jobs.base import Job
from kerasnas.jobs.front import write_trial_front
from kerasnas.jobs.settings import TrialSettings
from kerasnas.multitrial import distributed
from kerasnas.multitrial.distributed import DistributedError
from kerasnas.multitrial.runner import ESTIMATE_FIELDS, MODEL_FILE, RESULT_FILE, ArchTuner
from kerasnas.plotting import plot_search_curve
from kerasnas.search_spaces import DiscreteSpace, get_space
from kerasnas.wording import count

__all__ = ["TrialSearch", "TrialSettings", "run_trial_search"]

PROJECT = "tuner"
RETRAIN_DIR = "retrain"
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
    *ESTIMATE_FIELDS,
    "architecture",
)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else text


class TrialSearch(Job):
    """The trial-based search job (see the module doc)."""

    settings_file = "search_settings.json"
    resumable = Job.resumable | {
        "max_trials",
        "time_budget",
        "distributed_timeout",
        "worker_timeout",
        "retrain_top",
        "front_export",
    }
    legacy = {  # settings added after output directories may have been started
        "time_budget": None,
        "estimation.morphism_epochs": 1,
        "estimation.hypernet_steps": 1000,
        "estimation.hypernet_seed": None,
        "estimation.hypernet_lr": 1e-3,
        "estimation.proxy_resolution": None,
        "estimation.proxy_width": 1.0,
        "estimation.proxy_depth": 1.0,
        "front_export": None,
    }

    def run(self) -> dict[str, Any]:
        s = self.settings
        s.validate()
        role = distributed.role()
        if role and s.time_budget is not None:
            raise SettingError(
                "{time_budget} works in one-process searches only; distributed mode "
                "(KERASTUNER_* variables set) counts trials with {max_trials}"
            )
        distributed.safe_state_files()
        self.seed_everything()
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # accuracy() retraces for every child, by design
        self.bundle = self.load_data()
        self.prepare()
        if role == "worker":  # runs trials; the chief writes every output
            distributed.wait_for_chief(s.distributed_timeout)
            tuner = self.tuner()
            t0 = time.perf_counter()
            tuner.search()
            seconds = time.perf_counter() - t0
            self.log(f"worker {tuner.tuner_id}: the search is over ({seconds:.0f} s)")
            return {"role": "worker", "tuner_id": tuner.tuner_id}
        self.open_output_dir()
        self.log(
            f"{s.strategy} over {self.space!r}: {count(s.max_trials, 'trial')} of "
            f"{count(s.trial.epochs, 'epoch')}"
            + ("" if s.time_budget is None else f" at most, within {s.time_budget:g} s of trials")
            + (" | chief" if role == "chief" else "")
        )
        self.log(f"estimator {s.estimation.make(s.trial.seed).describe()}")
        metrics, model, source = self.execute()
        return self.finish(metrics, model, source)

    def prepare(self) -> None:
        s, bundle = self.settings, self.bundle
        args = dict(s.space_args)
        if s.search_space == "metaqnn":
            args.setdefault("image_size", int(min(bundle.input_shape[:2])))
        self.space: DiscreteSpace = get_space(s.search_space, **args)
        data = {}
        if getattr(s.config, "needs_data", False):
            data = {"input_shape": tuple(bundle.input_shape), "num_classes": bundle.num_classes}
        e = s.estimation
        side = int(min(bundle.input_shape[:2]))
        if e.estimator == "proxy" and e.proxy_resolution is not None and e.proxy_resolution > side:
            raise SettingError(
                f"{{estimation.proxy_resolution}} must be at most the images' side ({side}: "
                f"{bundle.name} is {bundle.input_shape[0]}x{bundle.input_shape[1]}), got "
                f"{e.proxy_resolution}"
            )
        with within("config"):
            self.oracle = strategies.get(s.strategy).make(
                s.config,
                self.space,
                max_trials=s.max_trials,
                seed=s.trial.seed,
                max_epochs=s.trial.epochs,
                **data,
            )

    def tuner(self) -> ArchTuner:
        s = self.settings
        return ArchTuner(
            self.oracle,
            self.space,
            self.bundle,
            s.trial,
            s.output_dir,
            verbose=int(s.verbose > 0),
            project_name=PROJECT,
            timeout=s.distributed_timeout,
            silence=s.worker_timeout,
            estimator=s.estimation.make(s.trial.seed),
            time_budget=s.time_budget,
            keep_models=self.front_points() > 0,
        )

    def front_points(self) -> int:
        """How many front points to export (``front_export``; None: 8 for nsga2, else 0)."""
        s = self.settings
        if s.front_export is not None:
            return s.front_export
        return 8 if s.strategy == "nsga2" else 0

    def execute(self) -> tuple[dict[str, Any], Any, str]:
        s = self.settings
        tuner = self.tuner()
        try:
            tuner.search()
        except RuntimeError as e:  # keras-tuner: too many failed trials in a row
            if "consecutive failures" not in str(e):
                raise
            raise RunError(f"trials keep failing: {_last_line(str(e))}") from None
        if tuner.budget_spent:
            self.log(
                f"time budget spent: {tuner.spent_seconds():.0f} s of trials (budget "
                f"{s.time_budget:g} s); no new trial started"
            )
        if tuner.timed_out:
            done = sum(t.status == "COMPLETED" for t in tuner.oracle.trials.values())
            message = f"chief: timed out after {{}}={s.distributed_timeout:g} s"
            if not done:
                raise DistributedError(
                    message.format("{distributed_timeout}") + " with no completed trial"
                )
            self.log(
                message.format("distributed_timeout")
                + f"; writing the results of {done} completed trials"
            )
        return self.results(tuner)

    def results(self, tuner: ArchTuner) -> tuple[dict[str, Any], Any, str]:
        """Writes the result files of a finished search; returns the metrics, the best
        trial's model and its file name."""
        s, space, bundle, out = self.settings, self.space, self.bundle, self.settings.output_dir
        oracle = tuner.oracle
        records = tuner.records()
        completed = [t for t in oracle.trials.values() if t.status == "COMPLETED"]
        if not completed:
            failed = [t for t in oracle.trials.values() if t.message]
            reason = _last_line(failed[0].message) if failed else "no trial ran"
            raise RunError(f"no trial completed: {reason}")
        best = search_best = oracle.get_best_trials(1)[0]
        retrained = self.retrain(tuner, completed) if s.retrain_top else []
        model_path = os.path.join(tuner.project_dir, f"trial_{best.trial_id}", MODEL_FILE)
        if retrained:  # the first of the highest validation accuracy (in reward order)
            chosen = max(retrained, key=lambda r: r["val_accuracy"])
            best = oracle.trials[chosen["trial_id"]]
            model_path = os.path.join(out, RETRAIN_DIR, f"trial_{best.trial_id}", MODEL_FILE)
        arch = space.from_hyperparameters(best.hyperparameters)
        best_record = next(r for r in records if r["trial_id"] == best.trial_id)
        if os.path.exists(model_path):
            model = keras.models.load_model(model_path)
        else:  # not saved (an old project): the trial again, same seed
            epochs = best_record["epochs"] or s.trial.epochs
            model = tuner.train_child(best.hyperparameters, best.trial_id, int(epochs))
        batch = s.trial.batch_size
        search_seconds = round(
            max(r["end_time"] for r in records if r["end_time"])
            - min(r["start_time"] for r in records if r["start_time"]),
            2,
        )
        retrain_seconds = round(sum(r["seconds"] for r in retrained), 2)
        metrics: dict[str, Any] = {
            "best_trial_id": best.trial_id,
            "best_reward": float(best.score),
            # the estimator's accuracy of the best trial (what the search saw)
            "best_estimate_accuracy": best_record["val_accuracy"],
            "best_valid_accuracy": accuracy(model, bundle.valid(batch)),
            "best_test_accuracy": accuracy(model, bundle.test(batch)),
            "best_model": "retrained" if retrained else "search",
            "best_params": best_record["params"],
            "best_flops": best_record["flops"],
            "best_architecture": best_record["architecture"],
            "trials": len(records),
            "trials_completed": len(completed),
            "trials_failed": sum(r["status"] == "FAILED" for r in records),
            # the search alone: first trial's start to last trial's end (wall clock)
            "search_seconds": search_seconds,
            "trial_seconds": round(sum(r["seconds"] or 0.0 for r in records), 2),
            "search_best_trial_id": search_best.trial_id,
            "retrain_top": s.retrain_top,
            "retrained": retrained,
            # the retraining's seconds (summed over its trials, in whichever run trained them)
            "retrain_seconds": retrain_seconds,
            "total_seconds": round(search_seconds + retrain_seconds, 2),
            "strategy": s.strategy,
            "search_space": s.search_space,
            "space": space.get_config(),
            "dataset": bundle.name,
            "seed": s.trial.seed,
            "workers": sorted({r["tuner_id"] for r in records if r["tuner_id"]}),
            "timed_out": tuner.timed_out,
            "time_budget": s.time_budget,
            "budget_spent": tuner.budget_spent,
            "settings": s.to_json(),
        }
        if s.search_space == "cell":
            Genotype.from_dict(space.describe(arch)).save(os.path.join(out, "genotype.json"))
        else:
            io.write_json(os.path.join(out, "architecture.json"), space.describe(arch))
        with io.atomic_path(os.path.join(out, "best.keras")) as tmp:
            if os.path.exists(model_path):
                shutil.copyfile(model_path, tmp)
            else:
                model.save(tmp)
        io.write_text(os.path.join(out, "history.csv"), history_csv(records))
        if self.front_points():
            resource = getattr(s.config, "objective_cost", "params")
            metrics["pareto"] = write_trial_front(
                tuner, records, out, resource, self.front_points(), self.log
            )
        plot_search_curve(
            records,
            os.path.join(out, "search_curve.png"),
            f"{s.strategy} on {s.search_space} / {bundle.name}: "
            f"best reward {metrics['best_reward']:.4f}",
        )
        return metrics, model, "best.keras"

    def retrain(self, tuner: ArchTuner, completed: list) -> list[dict[str, Any]]:
        """Trains the ``retrain_top`` completed trials of highest reward (ties: the earlier
        trial first) from scratch with full training, each seeded as its trial; returns
        their records in that order. A trial whose ``retrain/trial_<id>/result.json``
        exists (a resumed run) is read, not trained again."""
        s, bundle = self.settings, self.bundle
        top = sorted(completed, key=lambda t: (-float(t.score), t.trial_id))[: s.retrain_top]
        self.log(
            f"retraining the top {count(len(top), 'trial')} by reward: "
            f"{count(s.trial.epochs, 'epoch')} on all the training data"
        )
        records = []
        for n, trial in enumerate(top, 1):
            folder = os.path.join(s.output_dir, RETRAIN_DIR, f"trial_{trial.trial_id}")
            path = os.path.join(folder, RESULT_FILE)
            if os.path.exists(path) and os.path.exists(os.path.join(folder, MODEL_FILE)):
                with open(path, encoding="utf-8") as f:
                    records.append(json.load(f))
                continue
            trial_result = os.path.join(tuner.project_dir, f"trial_{trial.trial_id}", RESULT_FILE)
            with open(trial_result, encoding="utf-8") as f:
                estimate = json.load(f)
            t0 = time.perf_counter()
            model = tuner.train_child(trial.hyperparameters, trial.trial_id, s.trial.epochs)
            batch = s.trial.batch_size
            valid = accuracy(model, bundle.valid(batch))
            test = accuracy(model, bundle.test(batch))
            os.makedirs(folder, exist_ok=True)
            with io.atomic_path(os.path.join(folder, MODEL_FILE)) as tmp:
                model.save(tmp)
            record = {
                "trial_id": trial.trial_id,
                "reward": float(trial.score),
                "estimate_accuracy": estimate["val_accuracy"],
                "val_accuracy": valid,
                "test_accuracy": test,
                "epochs": s.trial.epochs,
                "params": int(model.count_params()),
                "seconds": round(time.perf_counter() - t0, 3),
            }
            io.write_json(path, record)  # last: the trial is retrained
            records.append(record)
            self.log(
                f"retrained {n}/{len(top)}: trial {trial.trial_id} (reward "
                f"{record['reward']:.4f}, estimate {record['estimate_accuracy']:.4f}) -> "
                f"val {valid:.4f}, test {test:.4f} | {record['seconds']:.1f} s"
            )
        return records

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary.trial_based(metrics, self.settings.output_dir)


def history_csv(records: list[dict[str, Any]]) -> str:
    """``history.csv``: one row per trial record (see ``HISTORY_COLUMNS``); ``end_seconds``
    counts from the first trial's start."""
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


def run_trial_search(settings: TrialSettings) -> dict[str, Any]:
    """Runs a trial-based search and writes the output directory (see the module doc);
    returns the metrics (a worker returns ``{"role": "worker", ...}`` and writes nothing
    itself)."""
    with TrialSearch(settings) as job:
        return job.run()
