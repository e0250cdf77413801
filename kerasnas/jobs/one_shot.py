"""The one-shot search job: data -> supernet -> search -> child -> output directory.

This is what ``kerasnas-search`` runs for the one-shot strategies; it is also the Python
entry point (:func:`run_search`). Supported strategies (``SearchSettings.strategy``), all on
the same cell-space supernet:

- ``snas`` (default): SNAS, weights and logits from the same batch (relaxation ``gumbel`` or
  ``gumbel_hard``); child = argmax edge ops (:mod:`kerasnas.trainers.snas`).
- ``darts``: DARTS first or second order, bilevel on the two halves of the training split
  (relaxation ``softmax``); child = top-2 rule (:mod:`kerasnas.trainers.darts`).
- ``enas``: ENAS, children sampled by the LSTM controller train the shared weights, the
  controller learns by REINFORCE on validation minibatches; ``random_ws``: children sampled
  uniformly, no controller. Child = the best of ``final_samples`` sampled children on the
  validation split (:mod:`kerasnas.trainers.enas`).

The trial-based strategies (``--strategy=reinforce`` etc.) are :mod:`kerasnas.jobs.trial_based`.
Output directory contract (every file written atomically, ``metrics.json`` last, so its
presence means the run finished):

- ``genotype.json``: the child architecture (:class:`kerasnas.Genotype`);
- ``child.keras``: the child with the supernet's weights (the weights of its chosen ops),
  no retraining; takes raw images (normalisation is its first layer) and returns logits;
- ``cells.png``: drawings of the normal and reduction cells;
- ``history.json``: one record per epoch (losses, accuracies, temperature, costs);
- ``export/``: the child exported in the formats of ``export`` (default float and int8
  TFLite), each verified against ``child.keras``, with ``export_report.json``
  (see :mod:`kerasnas.export`);
- ``metrics.json``: accuracies, child cost, seconds, export summary, settings;
- ``tensorboard/``, ``checkpoints/`` (the latter lets ``resume=True`` continue a stopped run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
from typing import Any

import keras
import tensorflow as tf

from kerasnas import data as data_lib
from kerasnas import distribute, io, ops, resource
from kerasnas.export.exporter import ExportError, export_for_dataset, parse_formats
from kerasnas.plotting import plot_cells
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.base import CheckpointError, OneShotTrainer, TrainerConfig, accuracy
from kerasnas.trainers.snas import GUMBEL_HARD_DISTRIBUTED, SNASConfig, SNASTrainer

SUPERNET_EVAL_SAMPLES = 5  # passes averaged for a stochastic supernet's accuracy
RESULT_FILES = ("genotype.json", "child.keras", "cells.png", "history.json", "metrics.json")
DEFAULT_EXPORT = ("tflite", "tflite_int8")
STRATEGIES: tuple[str, ...] = ("snas", "darts", "enas", "random_ws")
# compute precisions of the supernet (variables, BN statistics and the loss stay float32);
# float16 would need loss scaling, which the weight and logit updates do not do
PRECISIONS: tuple[str, ...] = ("none", "bfloat16")
DISTRIBUTED: tuple[str, ...] = ("snas", "darts")  # the strategies --distribution applies to
# per strategy: the relaxations it trains (first: default) and derivation rules (first: default)
RELAXATIONS = {
    "snas": ("gumbel", "gumbel_hard"),
    "darts": ("softmax",),
    "enas": ("controlled",),
    "random_ws": ("controlled",),
}
DERIVATIONS = {
    "snas": ("argmax", "top2"),
    "darts": ("top2", "argmax"),
    "enas": ("best_sampled",),
    "random_ws": ("best_sampled",),
}
STRATEGY_NAMES = {
    "snas": "SNAS",
    "darts": "DARTS",
    "enas": "ENAS",
    "random_ws": "random sampling with weight sharing",
}


def config_class(strategy: str) -> type:
    """The trainer configuration class of a one-shot `strategy`."""
    if strategy == "snas":
        return SNASConfig
    if strategy == "darts":
        from kerasnas.trainers.darts import DARTSConfig

        return DARTSConfig
    if strategy == "enas":
        from kerasnas.trainers.enas import ENASConfig

        return ENASConfig
    if strategy == "random_ws":
        from kerasnas.trainers.enas import WeightSharingConfig

        return WeightSharingConfig
    raise SearchError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")


def default_config(strategy: str = "snas", **overrides: Any) -> TrainerConfig:
    """The search job's defaults for `strategy` (also the command line's): the papers',
    except 30 epochs and an architecture learning rate of 0.2 instead of 3e-4. A digits
    search makes about 500 steps where SNAS makes about 10^5; with 3e-4 the logits barely
    move. Unknown keys of `overrides` raise TypeError."""
    return config_class(strategy)(**{"epochs": 30, "a_lr": 0.2, **overrides})


def default_snas_config(**overrides: Any) -> SNASConfig:
    """:func:`default_config` of SNAS."""
    return default_config("snas", **overrides)


class SearchError(ValueError):
    """A search cannot start: the message says which setting or file is wrong."""


@dataclasses.dataclass
class SearchSettings:
    """Everything a one-shot search run needs. Sizes: C = init_channels, L = layers,
    N = nodes. ``relaxation``, ``derive`` and ``config`` default (None) to the strategy's
    own (see :data:`RELAXATIONS`, :data:`DERIVATIONS`, :func:`default_config`)."""

    output_dir: str
    strategy: str = "snas"
    dataset: str = "digits"
    init_channels: int = 8
    layers: int = 5
    nodes: int = 4
    ops: tuple[str, ...] = ops.PRIMITIVES
    relaxation: str | None = None
    derive: str | None = None
    valid_fraction: float = 0.2
    test_fraction: float = 0.2
    resume: bool = False
    overwrite: bool = False
    deterministic: bool = True
    verbose: int = 1
    export: tuple[str, ...] = DEFAULT_EXPORT
    mixed_precision: str = "none"
    config: TrainerConfig | None = None
    distribution: str = "none"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise SearchError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.relaxation is None:
            self.relaxation = RELAXATIONS[self.strategy][0]
        if self.derive is None:
            self.derive = DERIVATIONS[self.strategy][0]
        if self.config is None:
            self.config = default_config(self.strategy)

    def check(self) -> None:
        """Raises SearchError naming the first setting that does not fit the strategy."""
        strategy = self.strategy
        if self.relaxation not in RELAXATIONS[strategy]:
            raise SearchError(
                f"--relaxation must be one of {RELAXATIONS[strategy]} for --strategy="
                f"{strategy}, got {self.relaxation!r}"
            )
        if self.derive not in DERIVATIONS[strategy]:
            raise SearchError(
                f"--derive must be one of {DERIVATIONS[strategy]} for --strategy={strategy}, "
                f"got {self.derive!r}"
            )
        if self.mixed_precision not in PRECISIONS:
            raise SearchError(
                f"--mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}"
                + (
                    " (float16 needs loss scaling, which kerasnas does not do)"
                    if self.mixed_precision == "float16"
                    else ""
                )
            )
        expected = config_class(strategy)
        if type(self.config) is not expected:
            raise SearchError(
                f"--strategy={strategy} needs a {expected.__name__}, "
                f"got {type(self.config).__name__}"
            )
        try:
            self.config.validate()
        except ValueError as e:
            raise SearchError(f"invalid setting: {e}") from None
        if self.distribution not in distribute.DISTRIBUTIONS:
            raise SearchError(
                f"--distribution must be one of {distribute.DISTRIBUTIONS}, "
                f"got {self.distribution!r}"
            )
        if self.distribution != "none":
            if strategy not in DISTRIBUTED:
                raise SearchError(
                    f"--distribution applies to --strategy={','.join(DISTRIBUTED)} only, "
                    f"not {strategy}"
                )
            if self.config.jit_compile:
                raise SearchError("--jit_compile cannot be combined with --distribution")
            if self.relaxation == "gumbel_hard":
                raise SearchError(GUMBEL_HARD_DISTRIBUTED)
            if self.resume and self.distribution == "multi_worker":
                raise SearchError(
                    "--resume cannot be combined with --distribution=multi_worker "
                    "(only the chief keeps checkpoints)"
                )
        if strategy in ("enas", "random_ws") and "none" not in self.ops:
            raise SearchError(
                f"--strategy={strategy} samples cells with two inputs per node and needs "
                "'none' among --ops (it switches the other edges off)"
            )


def make_trainer(
    settings: SearchSettings,
    supernet: keras.Model,
    space: CellSpace,
    strategy: tf.distribute.Strategy | None = None,
    output_dir: str | None = None,
) -> OneShotTrainer:
    """The trainer of ``settings.strategy`` for `supernet` (see the module doc); with a
    ``tf.distribute`` `strategy` (SNAS and DARTS), `supernet` was built in its scope.
    `output_dir` defaults to ``settings.output_dir``."""
    args = (settings.config, output_dir or settings.output_dir, settings.verbose)
    if settings.strategy == "snas":
        return SNASTrainer(supernet, *args, strategy=strategy)
    if settings.strategy == "darts":
        from kerasnas.trainers.darts import DARTSTrainer

        return DARTSTrainer(supernet, *args, strategy=strategy)
    if strategy is not None:
        raise SearchError(f"--distribution does not apply to --strategy={settings.strategy}")
    from kerasnas.trainers.enas import ENASTrainer, RandomWSTrainer

    cls = ENASTrainer if settings.strategy == "enas" else RandomWSTrainer
    return cls(supernet, space, *args)


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


@contextlib.contextmanager
def supernet_precision(precision: str):
    """Layers created inside compute in `precision` (``"none"``: float32; ``"bfloat16"``:
    Keras' ``mixed_bfloat16`` policy, float32 variables); the previous policy comes back on
    exit. The child and its exports are built outside, in float32."""
    previous = keras.mixed_precision.global_policy()
    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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
    settings.check()
    try:  # before any other TensorFlow op (multi_worker configures the runtime)
        strategy = distribute.make_strategy(settings.distribution)
    except (ValueError, RuntimeError) as e:
        raise SearchError(str(e)) from None
    if not distribute.is_chief(strategy):  # a worker: its files go to a temporary directory
        with tempfile.TemporaryDirectory(prefix="kerasnas-worker-") as tmp:
            worker = dataclasses.replace(settings, output_dir=tmp, overwrite=True, verbose=0)
            return _run_search(worker, strategy, ())
    return _run_search(settings, strategy, export_formats)


def _run_search(settings: SearchSettings, strategy, export_formats) -> dict[str, Any]:
    cfg = settings.config
    log = print if settings.verbose else (lambda *a, **k: None)
    keras.utils.set_random_seed(cfg.seed)
    if settings.deterministic:
        tf.config.experimental.enable_op_determinism()

    bundle = data_lib.load(
        settings.dataset,
        seed=cfg.seed,
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
    with supernet_precision(settings.mixed_precision):
        with strategy.scope() if strategy is not None else contextlib.nullcontext():
            supernet = space.build_supernet(
                settings.relaxation, bundle.normalization_layer(), seed=cfg.seed
            )
        log(
            f"supernet: C={space.init_channels} L={space.layers} N={space.nodes}, "
            f"{len(space.ops)} ops, {trainable_params(supernet):,} trainable params; "
            f"relaxation {settings.relaxation}"
            + ("" if settings.mixed_precision == "none" else f"; {settings.mixed_precision}")
        )
        log(f"strategy: {STRATEGY_NAMES[settings.strategy]}")
        if strategy is not None:
            log(
                f"distribution: {settings.distribution}, "
                f"{strategy.num_replicas_in_sync} replicas, global batch {cfg.batch_size}"
            )
        try:
            trainer = make_trainer(settings, supernet, space, strategy)
        except ValueError as e:
            raise SearchError(str(e)) from None
        t0 = time.perf_counter()
        try:
            history = trainer.fit(bundle, resume=settings.resume)
        except CheckpointError as e:
            raise SearchError(f"--resume: {e}") from None
    log(
        f"search done: {trainer.search_seconds:.0f} s of training in all, "
        f"{time.perf_counter() - t0:.0f} s in this run"
    )

    if settings.derive == "best_sampled":
        genotype, _ = trainer.best_genotype(bundle)
    else:
        genotype = space.derive(supernet, settings.derive)
    # every child inherits the weights of its ops: its accuracy is "without retraining"
    child = space.build_child(genotype, supernet, preprocessing=bundle.normalization_layer())
    cost = resource.network_cost(child)
    batch = cfg.batch_size
    metrics = {
        # the supernet as it searched (SNAS: Gumbel samples; DARTS: the softmax mixture;
        # ENAS/random: sampled children): mean over SUPERNET_EVAL_SAMPLES passes
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
        "final_entropy": history[-1].get("entropy") if history else None,
        "epochs": cfg.epochs,
        "seed": cfg.seed,
        "dataset": bundle.name,
        "strategy": settings.strategy,
        "relaxation": settings.relaxation,
        "derive": settings.derive,
        "settings": {**dataclasses.asdict(settings), "config": dataclasses.asdict(cfg)},
    }
    out = settings.output_dir
    genotype.save(os.path.join(out, "genotype.json"))
    with io.atomic_path(os.path.join(out, "child.keras")) as tmp:
        child.save(tmp)
    plot_cells(
        genotype,
        os.path.join(out, "cells.png"),
        title=(
            f"{STRATEGY_NAMES[settings.strategy]} on {bundle.name}: "
            f"child test accuracy {metrics['child_test_accuracy']:.3f}"
        ),
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
