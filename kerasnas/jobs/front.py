"""The Pareto front of a finished trial-based search on disk: ``pareto.csv``,
``pareto.png`` and the exported front points (see :mod:`kerasnas.pareto` for the columns).

Every completed trial is a point: its child is the trial's own trained model (kept by
``ArchTuner(keep_models=True)``; a model that was not kept, e.g. in a search resumed with
the front switched on, is trained again with the trial's seed and budget, which gives the
same model), its ``accuracy`` that model's accuracy on the test split (no retraining), its
cost the resource's count (``space.cost``). The front is the trials no other trial
dominates in (cost, test accuracy); the search itself only ever saw validation accuracies
(``history.csv``). Up to `limit` front points, evenly spaced in the front's cost order (the
cheapest and the most accurate always), are exported into ``front/trial_<id>/``: the
architecture (``genotype.json`` for the cell space, else ``architecture.json``),
``child.keras``, and ``export/`` (float TFLite, checked against ``child.keras`` on the test
images, and its ``export_report.json``) whose LiteRT latency (1 thread, batch 1) is the
row's ``latency_ms``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerasnas import io, pareto
from kerasnas.evaluate import accuracy
from kerasnas.genotype import Genotype
from kerasnas.multitrial.runner import MODEL_FILE

__all__ = ["CHILD_FILE", "FRONT_DIR", "export_point", "spread", "write_trial_front"]

FRONT_DIR = "front"
CHILD_FILE = "child.keras"


def spread(front: Sequence[int], k: int) -> list[int]:
    """`k` members of `front` (already in cost order) evenly spaced along it, its two ends
    included; all of it when it has at most `k`."""
    if k <= 0:
        return []
    if len(front) <= k:
        return list(front)
    if k == 1:
        return [front[-1]]
    picks = np.round(np.linspace(0, len(front) - 1, k)).astype(int)
    return [front[i] for i in sorted(set(picks.tolist()))]


def export_point(
    model: Any, folder: str, bundle: Any, log: Callable[[str], None], source: str | None = None
) -> dict[str, Any]:
    """Writes ``folder/child.keras`` (copied from `source` when given, else saved) and
    ``folder/export/``: the float TFLite of `model`, verified against it on (up to 1,000)
    test images of `bundle` (:func:`kerasnas.export.export_for_dataset`), with its
    report. Returns the tflite entry of the summary: ``file``, ``size_bytes``, ``accuracy``
    (the TFLite model's, on those images), ``latency_ms`` (LiteRT, 1 thread, batch 1) and
    ``passed``."""
    from kerasnas.jobs.base import export_summary

    os.makedirs(folder, exist_ok=True)
    child = os.path.join(folder, CHILD_FILE)
    with io.atomic_path(child) as tmp:
        if source is not None:
            shutil.copyfile(source, tmp)
        else:
            model.save(tmp)
    summary = export_summary(model, os.path.join(folder, "export"), ("tflite",), bundle, child, log)
    return summary["tflite"]


def _model(tuner: Any, record: dict[str, Any]) -> Any:
    model = tuner.load_model(record["trial_id"])
    if model is None:  # not kept: the trial again, same seed and budget
        trial = tuner.oracle.trials[record["trial_id"]]
        epochs = int(record["epochs"] or tuner.config.epochs)
        model = tuner.train_child(trial.hyperparameters, record["trial_id"], epochs)
    return model


def write_trial_front(
    tuner: Any,
    records: Sequence[dict[str, Any]],
    output_dir: str,
    resource: str,
    limit: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Writes ``pareto.csv``, ``pareto.png`` and up to `limit` exported front points (see
    the module doc) of the completed `records` (``ArchTuner.records()``) of `tuner`'s
    search; `resource` is the cost axis (``params``, ``flops`` or ``mac``). Returns the
    summary for ``metrics.json``: the resource, the number of points, the front's trial
    ids (by cost) and the exported ones, and any export that failed (its message; the
    point stays in the csv without latency)."""
    space, bundle = tuner.space, tuner.bundle
    batch = tuner.config.batch_size
    done = [r for r in records if r["status"] == "COMPLETED" and r["val_accuracy"] is not None]
    rows, models = [], {}
    for r in done:
        arch = space.from_hyperparameters(tuner.oracle.trials[r["trial_id"]].hyperparameters)
        cost = space.cost(arch, bundle.input_shape, bundle.num_classes)
        model = _model(tuner, r)
        models[r["trial_id"]] = (arch, model)
        rows.append(
            {
                "point": r["trial_id"],
                "resource": resource,
                "child_cost": float(cost.get(resource)),
                "child_params": int(cost.params),
                "child_flops": int(cost.flops),
                "accuracy": accuracy(model, bundle.test(batch)),
            }
        )
    front = pareto.front_indices([r["child_cost"] for r in rows], [r["accuracy"] for r in rows])
    for i, row in enumerate(rows):
        row["on_front"] = int(i in front)
    chosen = spread(front, limit)
    failures: dict[str, str] = {}
    # what an earlier run (resumed since) exported may be off the front now
    shutil.rmtree(os.path.join(output_dir, FRONT_DIR), ignore_errors=True)
    if chosen:
        log(
            f"Pareto front: {len(front)} of {len(rows)} trials; exporting {len(chosen)} "
            f"into {FRONT_DIR}/"
        )
    for i in chosen:
        row = rows[i]
        trial_id = row["point"]
        arch, model = models[trial_id]
        folder = os.path.join(output_dir, FRONT_DIR, f"trial_{trial_id}")
        os.makedirs(folder, exist_ok=True)
        description = space.describe(arch)
        if space.name == "cell":
            Genotype.from_dict(description).save(os.path.join(folder, "genotype.json"))
        else:
            io.write_json(os.path.join(folder, "architecture.json"), description)
        kept = os.path.join(tuner.project_dir, f"trial_{trial_id}", MODEL_FILE)
        try:
            entry = export_point(
                model, folder, bundle, lambda _: None, kept if os.path.exists(kept) else None
            )
        except Exception as e:  # one failed export must not cost the front
            from kerasnas.jobs.base import one_line

            failures[trial_id] = one_line(e)
            log(f"front point trial {trial_id}: export failed: {failures[trial_id]}")
            continue
        row["latency_ms"] = entry["latency_ms"]
        row["dir"] = os.path.relpath(folder, output_dir)
        log(
            f"front point trial {trial_id}: {row['child_cost']:,.0f} {resource}, test "
            f"{row['accuracy']:.4f}, TFLite {entry['latency_ms']:.3f} ms, verified"
        )
    pareto.write_csv(os.path.join(output_dir, "pareto.csv"), rows)
    pareto.plot_front(
        rows,
        os.path.join(output_dir, "pareto.png"),
        f"{len(front)} of {len(rows)} trials on the front ({resource}, test accuracy)",
    )
    return {
        "resource": resource,
        "points": len(rows),
        "front": [rows[i]["point"] for i in front],
        "exported": [rows[i]["point"] for i in chosen if rows[i]["point"] not in failures],
        "export_failures": failures,
    }
