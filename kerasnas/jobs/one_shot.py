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
  (``epochs_done``, ``steps``, ``budget_seconds``, ``time_budget``, ``stopped_by``,
  ``stop_reason``; see :meth:`~kerasnas.trainers.base.Trainer.budget_summary`), the
  collapse guard's outcome (``collapse``, see
  :meth:`~kerasnas.trainers.collapse.CollapseWatch.summary`), export summary, settings;
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

from kerasnas import distribute, io, resource, strategies, summary
from kerasnas.batchnorm import Recalibrator
from kerasnas.errors import SettingError
from kerasnas.evaluate import accuracy
from kerasnas.jobs.base import Job, quiet
from kerasnas.jobs.settings import OneShotSettings, default_config
from kerasnas.plotting import plot_cells
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.target import format_cost
from kerasnas.wording import count

__all__ = ["OneShotSearch", "OneShotSettings", "default_config", "run_search"]

SUPERNET_EVAL_SAMPLES = 5  # passes averaged for a stochastic supernet's accuracy
# epochs between validations of the argmax child during a search (and at the last epoch);
# each pass takes about a second on digits, the first one also traces its graph (once)
ARGMAX_EVERY = 5
# measured re-projections of a latency target's child (see OneShotSearch.project)
LATENCY_PROJECTIONS = 4


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
            f"supernet: C={s.init_channels} L={s.layers} N={s.nodes}, {count(len(s.ops), 'op')}, "
            f"{trainable_params(self.supernet):,} trainable params; relaxation {s.relaxation}"
            + ("" if s.mixed_precision == "none" else f"; {s.mixed_precision}")
        )
        if s.derive == "argmax":  # the child is the supernet's argmax: validate it per epoch
            self.trainer.argmax_every = ARGMAX_EVERY
        penalty = getattr(self.trainer, "penalty", None)
        if penalty is not None and penalty.target is not None:
            self.aim_at_target(penalty)
        self.trainer.watch_collapse(self.space, s.derive)  # the parameter-free share
        self.log(f"strategy: {entry.summary}")
        if self.strategy is not None:
            self.log(
                f"distribution: {s.distribution}, {self.strategy.num_replicas_in_sync} "
                f"replicas, global batch {cfg.batch_size}"
            )

    def aim_at_target(self, penalty) -> None:
        """Tells the penalty what the derived child is: the space's derivation rule for its
        table cost (every step) and the child model for its fixed part (calibrated once;
        latency: measured with LiteRT whenever the child changed at an epoch's end)."""
        s, space, supernet = self.settings, self.space, self.supernet
        if s.derive not in ("argmax", "top2"):
            raise SettingError(
                f"{{target}} needs a child read off the logits ({{derive}}=argmax or top2), "
                f"got {{derive}}={s.derive}"
            )
        res = penalty.resource
        if res != "latency":  # a target the penalty cannot steer to is refused
            cheapest, dearest = space.cost_range(supernet, res, dropped_edges=False)
            if not cheapest <= penalty.target.value <= dearest:
                raise SettingError(
                    f"{{target}} {penalty.target} is outside what this space's children "
                    f"cost with every edge kept: {format_cost(cheapest, res)} (every edge "
                    f"its cheapest op) to {format_cost(dearest, res)} (its dearest); aim "
                    "inside, or change {init_channels}, {layers}, {nodes} or {ops}. (Smaller "
                    "children drop edges: what that saves, the cell preprocessing no edge "
                    "reads any more, is not in the penalty, which cannot steer there.)"
                )
        cache: dict[str, float] = {}  # cost of each cell preprocessing layer

        def layer_cost(layer) -> float:
            if layer.name not in cache:
                shape = tuple(layer.input.shape[1:])
                if res == "latency":
                    cache[layer.name] = self.trainer.latency_table.latency(layer, shape)
                else:
                    cache[layer.name] = resource.layer_cost(layer, shape).get(res)
            return cache[layer.name]

        self.child_table_cost = lambda genotype: space.table_cost(
            supernet, genotype, res, layer_cost
        )
        penalty.table_cost = lambda: self.child_table_cost(space.derive(supernet, s.derive))
        penalty.child_key = lambda: space.derive(supernet, s.derive)
        if s.config.target_project:
            penalty.project_child = self.project_in_search
        penalty.child_model = lambda: self.build_child(space.derive(supernet, s.derive))
        self.log(
            f"cost target: {penalty.target} ({res} of the {s.derive} child); the penalty weight "
            f"starts at {penalty.weight_value():g} and adapts by dual ascent "
            f"(step {s.config.target_lr:g})"
        )

    def execute(self) -> tuple[dict[str, Any], Any, str]:
        s, cfg, bundle, trainer = self.settings, self.settings.config, self.bundle, self.trainer
        t0 = time.perf_counter()
        with supernet_precision(s.mixed_precision):
            history = trainer.fit(bundle, resume=s.resume)
        done = trainer.budget_summary()
        self.log(
            f"search done: {trainer.search_seconds:.0f} s of training in all, "
            f"{time.perf_counter() - t0:.0f} s in this run; {count(done['epochs_done'], 'epoch')}, "
            f"{count(done['steps'], 'step')}"
            + (
                ""
                if cfg.time_budget is None
                else f", {done['budget_seconds']:.0f} s of the {cfg.time_budget:g} s time budget"
            )
        )
        if s.derive == "best_sampled":
            genotype, _ = trainer.best_genotype(bundle)
        else:
            genotype = self.project(self.space.derive(self.supernet, s.derive))
        # every child inherits the weights of its ops: its accuracy is "without retraining"
        child = self.build_child(genotype)
        if s.recalibrate_child:
            # a fixed stretch of the data: the training batches of the epoch after the last
            batches = bundle.train(cfg.epochs, cfg.batch_size).take(s.recalibrate_child)
            spec = tf.TensorSpec((None, *child.inputs[0].shape[1:]))
            used = Recalibrator(child, [spec])(batches)
            self.log(f"child batch norm recalibrated on {used} training batches")
        cost = resource.network_cost(child)
        target = self.target_outcome(child)
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
            **target,
            "search_seconds": round(trainer.search_seconds, 2),
            **done,
            # the collapse guard: on, fired, at which epoch, why, the epoch whose logits it kept
            "collapse": None if trainer.collapse is None else trainer.collapse.summary(),
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

    def project_in_search(self) -> str | None:
        """Projects the derived child into the target's band by steering the logits
        (:func:`~kerasnas.search_spaces.projection.steer_logits`), so that the rest of the
        search trains the weights of the child it will return; returns what it did."""
        from kerasnas.search_spaces.projection import project_to_band, steer_logits

        penalty, rule = self.trainer.penalty, self.settings.derive
        start = self.space.derive(self.supernet, rule)
        result = project_to_band(
            self.space,
            self.supernet,
            start,
            rule,
            lambda g: penalty.fixed + self.child_table_cost(g),
            penalty.target.value,
            self.settings.config.target_band,
            score=self.valid_accuracy_of,
        )
        if not result.changes:
            return None
        steer_logits(self.space, self.supernet, result.genotype, rule)
        res, ratio = penalty.resource, penalty.target.ratio
        return (
            f"cost target {penalty.target}: the child ({format_cost(result.start_cost, res)}, "
            f"{ratio(result.start_cost):.3f} of the target) projected to "
            f"{format_cost(result.cost, res)} ({ratio(result.cost):.3f}) by "
            f"{count(result.changes, 'edge change')}; the search goes on with it"
        )

    def project(self, genotype):
        """With a cost target and ``target_project``: the most probable child inside the
        target's band when the searched child is outside it
        (:func:`~kerasnas.search_spaces.projection.project_to_band`); else `genotype`.

        Latency is predicted (the table plus an intercept), and the intercept differs from
        child to child, so a latency projection is measured (LiteRT) and, when the measured
        child is outside the band, projected again with the intercept of that child, up to
        :data:`LATENCY_PROJECTIONS` times; the child measured closest to the target wins."""
        penalty = getattr(self.trainer, "penalty", None)
        self.projection = None
        cfg = self.settings.config
        if penalty is None or penalty.target is None or not cfg.target_project:
            return genotype
        from kerasnas.search_spaces.projection import project_to_band
        from kerasnas.trainers.penalty import measured_cost

        res, target = penalty.resource, penalty.target
        fixed, tried = penalty.fixed, []
        for _ in range(LATENCY_PROJECTIONS if res == "latency" else 1):
            result = project_to_band(
                self.space,
                self.supernet,
                genotype,
                self.settings.derive,
                lambda g, f=fixed: f + self.child_table_cost(g),
                target.value,
                cfg.target_band,
                score=self.valid_accuracy_of,
            )
            if res != "latency":
                tried.append((result, result.cost))
                break
            child = self.build_child(result.genotype)
            measured = measured_cost(child, res, cfg.latency_threads)
            tried.append((result, measured))
            if abs(math.log(measured / target.value)) <= cfg.target_band:
                break
            fixed = measured - self.child_table_cost(result.genotype)  # this child's intercept
            if tried[-1][0].changes:
                self.log(
                    f"cost target {target}: the projected child measured "
                    f"{format_cost(measured, res)} ({target.ratio(measured):.3f}); projecting "
                    "again with its intercept"
                )
        result, _ = min(tried, key=lambda t: abs(math.log(t[1] / target.value)))
        if result.changes:
            self.projection = result
            ratio = target.ratio
            self.log(
                f"cost target {target}: the searched child "
                f"({format_cost(result.start_cost, res)}, {ratio(result.start_cost):.3f} of the "
                f"target) is outside the band; projected to {format_cost(result.cost, res)} "
                f"({ratio(result.cost):.3f}) by {count(result.changes, 'edge change')}, "
                f"{result.logprob_lost:.2f} nats of log-probability given up"
                + (
                    f"; the best of {count(result.scored, 'candidate')} by validation accuracy "
                    "with the supernet's weights"
                    if result.scored
                    else ""
                )
                + ("" if result.in_band else " (no closer child found)")
            )
        return result.genotype

    def build_child(self, genotype) -> keras.Model:
        """The child of `genotype` with the supernet's weights and the data's input
        normalisation."""
        return self.space.build_child(
            genotype, self.supernet, preprocessing=self.bundle.normalization_layer()
        )

    def valid_accuracy_of(self, genotype) -> float:
        """Validation accuracy of the child of `genotype` with the supernet's weights. The
        child is the supernet with each edge's op picked (``none`` for an edge the child
        drops, as with ``top2``): the logits are steered so that the argmax is `genotype`
        for one pass of the trainer's argmax function (traced once per search), then put
        back. Without ``none`` among the ops, a ``top2`` child is built instead (a new
        Keras model and function per call)."""
        from kerasnas.layers import arch_variables
        from kerasnas.search_spaces.projection import steer_logits
        from kerasnas.trainers.base import OneShotTrainer

        data = self.bundle.valid(self.settings.config.batch_size)
        on_supernet = self.settings.derive == "argmax" or "none" in self.space.ops
        if not on_supernet or not isinstance(self.trainer, OneShotTrainer):
            return accuracy(self.build_child(genotype), data)

        logits = arch_variables(self.supernet)
        saved = [v.numpy() for v in logits]
        steer_logits(self.space, self.supernet, genotype, "argmax")
        try:
            return self.trainer.evaluate(data, "argmax")
        finally:
            for v, value in zip(logits, saved, strict=True):
                v.assign(value)

    def target_outcome(self, child: keras.Model) -> dict[str, Any]:
        """With a cost target: the child's measured cost (counted, or its float TFLite
        latency with LiteRT) and its ratio to the target, and the penalty's record."""
        penalty = getattr(self.trainer, "penalty", None)
        if penalty is None or penalty.target is None:
            return {}
        from kerasnas.trainers.penalty import measured_cost

        res = penalty.resource
        measured = measured_cost(child, res, self.settings.config.latency_threads)
        ratio = penalty.target.ratio(measured)
        p = getattr(self, "projection", None)
        searched = penalty.child_cost() if p is None else p.start_cost
        self.log(
            f"cost target {penalty.target}: the child has {format_cost(measured, res)} "
            f"({ratio:.3f} of the target; "
            + (
                f"predicted during the search {format_cost(searched, res)})"
                if p is None
                else f"projected; the searched child: {format_cost(searched, res)})"
            )
        )
        return {
            **penalty.summary(),
            "child_cost": measured,
            "target_ratio": ratio,
            # the child the search ended on, before any projection (predicted cost)
            "searched_child_cost": searched,
            "searched_target_ratio": penalty.target.ratio(searched),
            # the controller alone: the child before the first projection, in the search or
            # at its end
            "controller_target_ratio": penalty.target.ratio(
                penalty.projections[0]["before"] if penalty.projections else searched
            ),
            "projected": p is not None,
            "projection_changes": 0 if p is None else p.changes,
            "projection_logprob_lost": 0.0 if p is None else p.logprob_lost,
        }

    def summary(self, metrics: dict[str, Any]) -> str:
        return summary.one_shot(
            metrics, self.genotype.to_dict(), self.settings.output_dir, SUPERNET_EVAL_SAMPLES
        )


def run_search(settings: OneShotSettings) -> dict[str, Any]:
    """Runs a one-shot search and writes the output directory; returns the metrics."""
    with OneShotSearch(settings) as job:
        return job.run()
