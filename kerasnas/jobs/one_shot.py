"""The one-shot search job: data -> supernet -> search -> child -> output directory.

What ``kerasnas-search`` runs for the one-shot strategies of :mod:`kerasnas.strategies`
(``snas``, ``darts``, ``enas``, ``random_ws``), all on the same cell-space supernet;
:func:`run_search` is the Python entry point. The strategy's trainer configuration is
``OneShotSettings.config`` (its class is the registry's ``settings``; default:
:func:`default_config`).

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
- ``metrics.json``: accuracies, child cost, seconds, how much search the run got
  (``epochs_done``, ``steps``, ``budget_seconds``, ``time_budget``, ``stopped_by``; see
  :meth:`~kerasnas.trainers.base.Trainer.budget_summary`), export summary, settings;
- ``tensorboard/``, ``checkpoints/`` (the latter lets ``resume=True`` continue a stopped run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
from typing import Any, ClassVar

import keras
import tensorflow as tf

from kerasnas import distribute, io, ops, resource, strategies, summary
from kerasnas.batchnorm import Recalibrator
from kerasnas.errors import SettingError
from kerasnas.evaluate import accuracy
from kerasnas.export.exporter import FORMATS
from kerasnas.jobs.base import Job, JobSettings, quiet
from kerasnas.options import REQUIRED, option
from kerasnas.plotting import plot_cells
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.trainers.base import LoopConfig

__all__ = ["OneShotSearch", "OneShotSettings", "default_config", "run_search"]

SUPERNET_EVAL_SAMPLES = 5  # passes averaged for a stochastic supernet's accuracy
# epochs between validations of the argmax child during a search (and at the last epoch);
# each pass takes about a second on digits, the first one also traces its graph (once)
ARGMAX_EVERY = 5
DEFAULT_EXPORT = ("tflite", "tflite_int8")
# compute precisions of the supernet (variables, BN statistics and the loss stay float32);
# float16 would need loss scaling, which the weight and logit updates do not do
PRECISIONS: tuple[str, ...] = ("none", "bfloat16")
# the job's defaults where they differ from the papers' (see default_config)
JOB_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "a_lr": 0.3,
    "a_weight_decay": 0.0,
    # ENAS: the authors' ratio of controller updates to weight steps (30 per ~280 steps of
    # a CIFAR-10 epoch) on digits' 17 steps per epoch
    "controller_steps": 2,
    # ENAS: no conv prior on the controller's ops (the authors' b_soft of 10 on the
    # separable convolutions of their 5-op space; on the 8 DARTS ops it would favour all
    # 4 convolutions): conv-heavy children are the ones weight sharing trains slowest; on
    # digits, 60 epochs, seed 0, supernet valid 0.53 with the prior, 0.76 without
    "controller_op_bias": False,
}


def default_config(strategy: str = "snas", **overrides: Any) -> LoopConfig:
    """The search job's trainer configuration for `strategy` (also the command line's
    defaults): the papers', except 30 epochs, an architecture learning rate of 0.3 instead
    of 3e-4, no L2 decay on the logits, 2 ENAS controller steps per epoch instead of 30 (the
    authors' ~1 per 10 weight steps) and no op prior in ENAS' controller (where the strategy
    has these settings; see JOB_DEFAULTS for why). A digits search
    makes about 500 steps where SNAS makes about 10^5; with 3e-4 the logits barely move.
    At that learning rate the papers' coupled decay (1e-3) must go: once the temperature is
    low, the loss's gradient on the logits vanishes, the decay term is all Adam sees, and
    Adam's normalised steps (0.3 each) pull every logit back towards 0, so the distribution
    never sharpens (the quick start ended at 0.77 nats per edge with the decay and a_lr
    0.2, at 0.11 without it and a_lr 0.3; see the README's "SNAS that converges"). Unknown
    keys of `overrides` raise TypeError."""
    cls = strategies.get(strategy, strategies.ONE_SHOT).settings_class()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in JOB_DEFAULTS.items() if k in names}, **overrides})


@dataclasses.dataclass(kw_only=True)
class OneShotSettings(JobSettings):
    """Everything a one-shot search run needs. Sizes: C = init_channels, L = layers,
    N = nodes. ``relaxation``, ``derive`` and ``config`` default (None) to the strategy's
    own (the registry's first relaxation and derivation, :func:`default_config`)."""

    output_dir: str = option(
        REQUIRED,
        "Directory for the genotype, child model, metrics, TensorBoard logs and checkpoints.",
    )
    strategy: str = option("snas", "The search strategy.", choices=strategies.names())
    init_channels: int = option(8, "C: channels of the first cells.", at_least=2)
    layers: int = option(5, "L: number of cells (reductions at L//3 and 2L//3).", at_least=3)
    nodes: int = option(4, "N: intermediate nodes per cell.", at_least=1)
    ops: tuple[str, ...] = option(ops.PRIMITIVES, "Candidate ops, comma separated.")
    relaxation: str | None = option(
        None,
        "How the supernet mixes ops; default: the strategy's own. snas: gumbel (soft sample, "
        "all ops run, the default) or gumbel_hard (straight-through one-hot, one op per edge "
        "runs); darts: softmax; enas, random_ws: controlled.",
    )
    derive: str | None = option(
        None,
        "How the child is read off; default: the strategy's own. argmax (snas): every edge "
        "its most likely op, none deletes it. top2 (darts): 2 inputs per node. best_sampled "
        "(enas, random_ws): the best of the sampled children on the validation split. The "
        "child inherits the supernet's weights either way.",
    )
    recalibrate_child: int = option(
        8,
        "Training batches the child's batch-norm statistics are recomputed on before it is "
        "scored, saved and exported (the supernet's averages describe the mixture or the "
        "other children, not this child); 0: keep the supernet's.",
        at_least=0,
    )
    export: tuple[str, ...] = option(
        DEFAULT_EXPORT,
        "Export the child into <output_dir>/export, each format verified against "
        "child.keras: some of saved_model, tflite, tflite_fp16, tflite_dynamic, "
        "tflite_int8; empty: none.",
        choices=tuple(FORMATS),
    )
    mixed_precision: str = option(
        "none",
        "Supernet compute precision: none (float32) or bfloat16 (Keras' mixed_bfloat16: "
        "float32 variables, batch-norm statistics and loss; for GPUs/TPUs, slower on most "
        "CPUs). The child is float32.",
    )
    distribution: str = option(
        "none",
        "snas, darts: train the supernet under tf.distribute. mirrored: every GPU of this "
        "machine (else its logical CPUs); multi_worker: the machines of TF_CONFIG (only the "
        "chief writes {output_dir}). {batch_size} is the global batch.",
        choices=distribute.DISTRIBUTIONS,
    )
    config: LoopConfig | None = None
    kind: ClassVar[str] = strategies.ONE_SHOT
    seed_of: ClassVar[str] = "config"

    def __post_init__(self):
        if self.strategy not in strategies.names(strategies.ONE_SHOT):
            return  # validate() says so
        entry = strategies.get(self.strategy)
        if self.relaxation is None:
            self.relaxation = entry.relaxations[0]
        if self.derive is None:
            self.derive = entry.derivations[0]
        if self.config is None:
            self.config = default_config(self.strategy)

    def validate(self) -> None:
        """Raises SettingError naming the first setting that does not fit the strategy."""
        super().validate()
        entry = strategies.get(self.strategy)
        if self.relaxation not in entry.relaxations:
            raise SettingError(
                f"{{relaxation}} must be one of {entry.relaxations} for {{strategy}}="
                f"{self.strategy}, got {self.relaxation!r}"
            )
        if self.derive not in entry.derivations:
            raise SettingError(
                f"{{derive}} must be one of {entry.derivations} for {{strategy}}="
                f"{self.strategy}, got {self.derive!r}"
            )
        if not [op for op in self.ops if op != "none"]:
            raise SettingError(
                f"{{ops}} must hold an op other than 'none' (every cell would be empty), "
                f"got {','.join(self.ops)}"
            )
        if self.mixed_precision not in PRECISIONS:
            hint = " (float16 needs loss scaling, which kerasnas does not do)"
            raise SettingError(
                f"{{mixed_precision}} must be one of {PRECISIONS}, got {self.mixed_precision!r}"
                + (hint if self.mixed_precision == "float16" else "")
            )
        if self.distribution != "none":
            if not entry.distributed:
                allowed = ",".join(s.name for s in strategies.REGISTRY.values() if s.distributed)
                raise SettingError(
                    f"{{distribution}} applies to {{strategy}}={allowed} only, not {self.strategy}"
                )
            if self.distribution == "multi_worker" and self.config.time_budget is not None:
                raise SettingError(
                    "{config.time_budget} cannot be combined with {distribution}=multi_worker "
                    "(each worker would time its own budget and stop after other steps)"
                )
            if self.resume and self.distribution == "multi_worker":
                raise SettingError(
                    "{resume} cannot be combined with {distribution}=multi_worker "
                    "(only the chief keeps checkpoints)"
                )
        entry.check_ops(tuple(self.ops))


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


class OneShotSearch(Job):
    """The one-shot search job (see the module doc)."""

    def __init__(self, settings: OneShotSettings):
        super().__init__(settings)
        self.strategy = None  # the tf.distribute strategy, if any

    def run(self) -> dict[str, Any]:
        s = self.settings
        s.validate()
        # before any other TensorFlow op (multi_worker configures the runtime)
        self.strategy = distribute.make_strategy(s.distribution)
        if not distribute.is_chief(self.strategy):  # a worker: its files go to a temp dir
            with tempfile.TemporaryDirectory(prefix="kerasnas-worker-") as tmp:
                self.settings = dataclasses.replace(
                    s, output_dir=tmp, overwrite=True, verbose=0, export=()
                )
                self.log = quiet
                return self.steps()
        return self.steps()

    def prepare(self) -> None:
        s, cfg, bundle = self.settings, self.settings.config, self.bundle
        self.space = CellSpace(
            bundle.input_shape, bundle.num_classes, s.init_channels, s.layers, s.nodes, s.ops
        )
        entry = strategies.get(s.strategy)
        with supernet_precision(s.mixed_precision):
            with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
                self.supernet = self.space.build_supernet(
                    s.relaxation, bundle.normalization_layer(), seed=cfg.seed
                )
            self.trainer = entry.make(
                self.supernet, self.space, cfg, s.output_dir, s.verbose, self.strategy
            )
        self.log(
            f"supernet: C={s.init_channels} L={s.layers} N={s.nodes}, {len(s.ops)} ops, "
            f"{trainable_params(self.supernet):,} trainable params; relaxation {s.relaxation}"
            + ("" if s.mixed_precision == "none" else f"; {s.mixed_precision}")
        )
        if s.derive == "argmax":  # the child is the supernet's argmax: validate it per epoch
            self.trainer.argmax_every = ARGMAX_EVERY
        self.log(f"strategy: {entry.summary}")
        if self.strategy is not None:
            self.log(
                f"distribution: {s.distribution}, {self.strategy.num_replicas_in_sync} "
                f"replicas, global batch {cfg.batch_size}"
            )

    def execute(self) -> tuple[dict[str, Any], Any, str]:
        s, cfg, bundle, trainer = self.settings, self.settings.config, self.bundle, self.trainer
        t0 = time.perf_counter()
        with supernet_precision(s.mixed_precision):
            history = trainer.fit(bundle, resume=s.resume)
        done = trainer.budget_summary()
        self.log(
            f"search done: {trainer.search_seconds:.0f} s of training in all, "
            f"{time.perf_counter() - t0:.0f} s in this run; {done['epochs_done']} epochs, "
            f"{done['steps']} steps"
            + (
                ""
                if cfg.time_budget is None
                else f", {done['budget_seconds']:.0f} s of the {cfg.time_budget:g} s time budget"
            )
        )
        if s.derive == "best_sampled":
            genotype, _ = trainer.best_genotype(bundle)
        else:
            genotype = self.space.derive(self.supernet, s.derive)
        # every child inherits the weights of its ops: its accuracy is "without retraining"
        child = self.space.build_child(
            genotype, self.supernet, preprocessing=bundle.normalization_layer()
        )
        if s.recalibrate_child:
            # a fixed stretch of the data: the training batches of the epoch after the last
            batches = bundle.train(cfg.epochs, cfg.batch_size).take(s.recalibrate_child)
            spec = tf.TensorSpec((None, *child.inputs[0].shape[1:]))
            used = Recalibrator(child, [spec])(batches)
            self.log(f"child batch norm recalibrated on {used} training batches")
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
            "supernet_params": trainable_params(self.supernet),
            "child_edges": {k: len(genotype.edges(k)) for k in ("normal", "reduce")},
            "search_seconds": round(trainer.search_seconds, 2),
            **done,
            "final_entropy": history[-1].get("entropy") if history else None,
            "epochs": cfg.epochs,
            "seed": cfg.seed,
            "dataset": bundle.name,
            "strategy": s.strategy,
            "relaxation": s.relaxation,
            "derive": s.derive,
            "settings": {**dataclasses.asdict(s), "config": dataclasses.asdict(cfg)},
        }
        out = s.output_dir
        genotype.save(os.path.join(out, "genotype.json"))
        with io.atomic_path(os.path.join(out, "child.keras")) as tmp:
            child.save(tmp)
        plot_cells(
            genotype,
            os.path.join(out, "cells.png"),
            title=(
                f"{strategies.get(s.strategy).label} on {bundle.name}: "
                f"child test accuracy {metrics['child_test_accuracy']:.3f}"
            ),
        )
        io.write_json(os.path.join(out, "history.json"), history)
        self.genotype = genotype
        return metrics, child, "child.keras"

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary.one_shot(
            metrics, self.genotype.to_dict(), self.settings.output_dir, SUPERNET_EVAL_SAMPLES
        )


def run_search(settings: OneShotSettings) -> dict[str, Any]:
    """Runs a one-shot search and writes the output directory; returns the metrics."""
    with OneShotSearch(settings) as job:
        return job.run()
