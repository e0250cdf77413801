"""The SNAS search job: data -> supernet -> joint search -> child -> output directory.

This is what ``kerasnas-search`` (``--strategy=snas``, the default) runs; it is also the
Python entry point (:func:`run_search`). The trial-based strategies (``--strategy=reinforce``
etc.) are :mod:`kerasnas.blackbox`. Output directory contract (every file written atomically,
``metrics.json`` last, so its presence means the run finished):

- ``genotype.json``: the child architecture (:class:`kerasnas.Genotype`);
- ``child.keras``: the child with the supernet's weights, no retraining; takes raw images
  (normalisation is its first layer) and returns logits;
- ``cells.png``: drawings of the normal and reduction cells;
- ``history.json``: one record per epoch (losses, accuracies, temperature, costs);
- ``export/``: the child exported in the formats of ``export`` (default float and int8
  TFLite), each verified against ``child.keras``, with ``export_report.json``
  (see :mod:`kerasnas.export`);
- ``metrics.json``: accuracies, child cost, seconds, export summary, settings;
- ``tensorboard/``, ``checkpoints/`` (the latter lets ``resume=True`` continue a stopped run).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import keras
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas import io, ops, resource
from kerasnas.export.exporter import ExportError, export_for_dataset, parse_formats
from kerasnas.plotting import plot_cells
from kerasnas.search_spaces.cell import DERIVATION_RULES, CellSpace
from kerasnas.trainers.base import CheckpointError, accuracy
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

SUPERNET_EVAL_SAMPLES = 5  # passes averaged for the stochastic supernet's accuracy
RESULT_FILES = ("genotype.json", "child.keras", "cells.png", "history.json", "metrics.json")
DEFAULT_EXPORT = ("tflite", "tflite_int8")


def default_snas_config(**overrides: Any) -> SNASConfig:
    """The search job's SNAS defaults (also the command line's): the paper's, except 30
    epochs and an architecture learning rate of 0.2 instead of 3e-4. A digits search makes
    about 500 steps where SNAS makes about 10^5; with 3e-4 the logits barely move."""
    return SNASConfig(**{"epochs": 30, "a_lr": 0.2, **overrides})


@dataclasses.dataclass
class SearchSettings:
    """Everything a search run needs. Sizes: C = init_channels, L = layers, N = nodes."""

    output_dir: str
    dataset: str = "digits"
    init_channels: int = 8
    layers: int = 5
    nodes: int = 4
    ops: tuple[str, ...] = ops.PRIMITIVES
    relaxation: str = "gumbel"
    derive: str = "argmax"
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    resume: bool = False
    overwrite: bool = False
    deterministic: bool = True
    verbose: int = 1
    export: tuple[str, ...] = DEFAULT_EXPORT
    snas: SNASConfig = dataclasses.field(default_factory=lambda: default_snas_config())


class SearchError(ValueError):
    """A search cannot start: the message says which setting or file is wrong."""


def export_child(
    model: keras.Model,
    export_dir: str,
    formats: tuple[str, ...],
    bundle: data_lib.DataBundle,
    source: str,
    log,
) -> dict[str, Any]:
    """Exports a search's result model into `export_dir` (replacing what an interrupted run
    left), verified on `bundle`; returns the per-format summary for metrics.json. Raises
    SearchError naming ``--export`` when a format fails."""
    try:
        report = export_for_dataset(
            model,
            export_dir,
            formats,
            bundle,
            overwrite=True,
            source=os.path.join(os.path.dirname(export_dir), source),
            log=log,
        )
    except ExportError as e:
        raise SearchError(f"--export: {e}") from None
    return {
        fmt: {k: e[k] for k in ("file", "size_bytes", "accuracy", "latency_ms", "passed")}
        for fmt, e in report["formats"].items()
    }


def trainable_params(model: keras.Model) -> int:
    """Distinct trainable parameters (weights and architecture logits), each shared variable
    counted once."""
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))


def run_search(settings: SearchSettings) -> dict[str, Any]:
    """Runs an SNAS search and writes the output directory; returns the metrics."""
    try:
        export_formats = parse_formats(settings.export)
    except ExportError as e:
        raise SearchError(f"--export: {e}") from None
    if settings.derive not in DERIVATION_RULES:
        raise SearchError(f"--derive must be one of {DERIVATION_RULES}, got {settings.derive!r}")
    try:
        settings.snas.validate()
    except ValueError as e:
        raise SearchError(f"invalid setting: {e}") from None
    keras.utils.set_random_seed(settings.snas.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()
    log = print if settings.verbose else (lambda *a, **k: None)

    bundle = data_lib.load(
        settings.dataset,
        seed=settings.snas.seed,
        valid_fraction=settings.valid_fraction,
        test_fraction=settings.test_fraction,
    )
    log(
        f"data {bundle.name}: {bundle.num_train} train / {bundle.num_valid} valid / "
        f"{bundle.num_test} test images of {bundle.input_shape}, {bundle.num_classes} classes"
    )
    try:
        space = CellSpace(
            bundle.input_shape,
            bundle.num_classes,
            settings.init_channels,
            settings.layers,
            settings.nodes,
            tuple(settings.ops),
        )
    except ValueError as e:
        raise SearchError(str(e)) from None
    try:  # only once the inputs are known to be good
        io.prepare_output_dir(
            settings.output_dir, resume=settings.resume, overwrite=settings.overwrite
        )
    except io.OutputDirError as e:
        raise SearchError(str(e)) from None
    supernet = space.build_supernet(
        settings.relaxation, bundle.normalization_layer(), seed=settings.snas.seed
    )
    log(
        f"supernet: C={space.init_channels} L={space.layers} N={space.nodes}, "
        f"{len(space.ops)} ops, {trainable_params(supernet):,} trainable params; "
        f"relaxation {settings.relaxation}"
    )
    trainer = SNASTrainer(supernet, settings.snas, settings.output_dir, settings.verbose)
    t0 = time.perf_counter()
    try:
        history = trainer.fit(bundle, resume=settings.resume)
    except CheckpointError as e:
        raise SearchError(f"--resume: {e}") from None
    log(
        f"search done: {trainer.search_seconds:.0f} s of training in all, "
        f"{time.perf_counter() - t0:.0f} s in this run"
    )

    genotype = space.derive(supernet, settings.derive)
    inherit = settings.derive == "argmax"
    child = space.build_child(
        genotype, supernet if inherit else None, preprocessing=bundle.normalization_layer()
    )
    if not inherit:
        log("note: top2 children do not compute the supernet's function; weights are fresh")
    cost = resource.network_cost(child)
    batch = settings.snas.batch_size
    metrics = {
        # the stochastic supernet: mean over SUPERNET_EVAL_SAMPLES passes of new samples
        "supernet_valid_accuracy": trainer.evaluate(
            bundle.valid(batch), "sample", SUPERNET_EVAL_SAMPLES
        ),
        "supernet_test_accuracy": trainer.evaluate(
            bundle.test(batch), "sample", SUPERNET_EVAL_SAMPLES
        ),
        "child_valid_accuracy": accuracy(child, bundle.valid(batch)),
        "child_test_accuracy": accuracy(child, bundle.test(batch)),
        "child_params": int(cost.params),
        "child_flops": int(cost.flops),
        "child_mac": int(cost.mac),
        "supernet_params": trainable_params(supernet),
        "child_edges": {k: len(genotype.edges(k)) for k in ("normal", "reduce")},
        "search_seconds": round(trainer.search_seconds, 2),
        "epochs": settings.snas.epochs,
        "seed": settings.snas.seed,
        "dataset": bundle.name,
        "relaxation": settings.relaxation,
        "derive": settings.derive,
        "settings": {**dataclasses.asdict(settings), "snas": dataclasses.asdict(settings.snas)},
    }
    out = settings.output_dir
    genotype.save(os.path.join(out, "genotype.json"))
    with io.atomic_path(os.path.join(out, "child.keras")) as tmp:
        child.save(tmp)
    plot_cells(
        genotype,
        os.path.join(out, "cells.png"),
        title=f"SNAS on {bundle.name}: child test accuracy {metrics['child_test_accuracy']:.3f}",
    )
    io.write_json(os.path.join(out, "history.json"), history)
    if export_formats:
        metrics["export"] = export_child(
            child, os.path.join(out, "export"), export_formats, bundle, "child.keras", log
        )
    io.write_json(os.path.join(out, "metrics.json"), metrics)
    log(
        f"supernet valid {metrics['supernet_valid_accuracy']:.4f} | child valid "
        f"{metrics['child_valid_accuracy']:.4f}, test {metrics['child_test_accuracy']:.4f}, "
        f"{metrics['child_params']:,} params, {metrics['child_flops']:,} mult-adds -> {out}"
    )
    return metrics
