"""The accuracy-cost front in one command (``kerasnas-pareto``): one target search per point
(or, with ``lambdas``, one search per fixed penalty weight: the hand-tuned way, to compare).

For each of K cost targets (``targets``, or ``points`` targets spread evenly in log scale
over the children the space can build, for an analytic ``resource``), one one-shot search
with ``--target`` (:mod:`kerasnas.target`), its child exported to float TFLite and verified
against ``child.keras``, then retrained from scratch (``kerasnas-train``,
``retrain_epochs``, once per seed of ``retrain_seeds``). Searches go ``jobs`` at a time
(each on one thread when ``jobs`` > 1); when every point is done, each point's TFLite model
is timed with LiteRT at 1 thread, one after the other, so the timings do not share the
cores with a search.

Each point is a normal output directory under ``points/<k>_<target>/`` (``search/``, with
``genotype.json``, ``child.keras``, ``export/model.tflite``; ``retrain/``, then
``retrain_2/``, ... with several seeds; their logs), so a stopped front resumes where it
stopped (``resume``; a resumed front may change ``jobs``, ``retrain_seeds`` and
``retrain_epochs``: the searches are kept, retrainings of another budget are redone).
Outputs, written atomically:

- ``pareto.csv``: one row per point (:data:`kerasnas.pareto.COLUMNS`): the target, the
  child's cost (counted, or its LiteRT latency for a latency target), params, mult-adds,
  test accuracy without retraining (``accuracy``, the supernet's weights) and after
  retraining (the mean over the seeds, and their standard deviation), the float TFLite
  latency, whether it is on the front (judged on the accuracy after retraining when there
  is retraining: without it, small children inherit weights trained inside a large
  supernet);
- ``pareto.png``: accuracy against cost, front points joined;
- ``pareto.json``: the settings, each point's target ratio and export check, the seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import time
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from kerasnas import io, pareto, strategies
from kerasnas.errors import SettingError
from kerasnas.jobs.base import Job, JobSettings
from kerasnas.jobs.tools import read_json, run_parallel, run_tool
from kerasnas.names import ANALYTIC, PRIMITIVES, RESOURCES
from kerasnas.options import REQUIRED, option
from kerasnas.target import Target, format_cost
from kerasnas.wording import count

__all__ = ["ParetoSettings", "auto_targets", "run_pareto"]

PENALIZED = ("snas", "darts")  # the one-shot strategies with a resource penalty


@dataclasses.dataclass(kw_only=True)
class ParetoSettings(JobSettings):
    """A front: the cell space's sizes (C = init_channels, L = layers, N = nodes), the
    targets, the search budget (``epochs``, ``a_lr``, ``target_lr``), the retraining
    budget, and how many runs go at once (see the module doc)."""

    output_dir: str = option(REQUIRED, "Directory of the front. Required.")
    strategy: str = option("snas", "The one-shot search of every point.", choices=PENALIZED)
    targets: tuple[str, ...] = option(
        (),
        "Cost targets, one search each, e.g. params:20k,30k,45k (a bare number takes the "
        "first one's resource) or latency:0.03ms,0.05ms. Empty: {points} targets of "
        "{resource}, spread over the space.",
    )
    resource: str = option(
        "params",
        "With no {targets}: the cost axis. The {points} targets are spread over it (params, "
        "flops or mac), evenly in log scale from 1.3x the smallest child to 0.7x the "
        "largest; with {lambdas}, the resource the fixed weights charge (also latency).",
        choices=RESOURCES,
    )
    lambdas: tuple[float, ...] = option(
        (),
        "Instead of targets: fixed penalty weights ({resource_lambda} of kerasnas-search), "
        "one search each, e.g. 0,0.05,0.2 (the hand-tuned way, for comparison).",
    )
    points: int = option(5, "With no {targets}: how many targets.", at_least=2)
    seed: int = option(0, "Seed of every search and retraining.", at_least=0)
    epochs: int = option(30, "Search epochs per point.", at_least=1)
    batch_size: int = option(64, "Minibatch size.", at_least=1)
    a_lr: float = option(0.3, "Architecture learning rate (Adam).", above=0)
    target_lr: float = option(
        0.01, "Step of the penalty weight per step and unit of log(cost / target).", above=0
    )
    init_channels: int = option(8, "C of the supernet.", at_least=2)
    layers: int = option(5, "L cells of the supernet.", at_least=3)
    nodes: int = option(4, "N nodes per cell.", at_least=1)
    ops: tuple[str, ...] = option(PRIMITIVES, "Candidate ops.")
    retrain_epochs: int = option(
        10, "Epochs of retraining each point's child from scratch (0: none).", at_least=0
    )
    retrain_seeds: int = option(
        1,
        "Retrainings of each point's child, seeds {seed}, {seed}+1, ...; the front is judged "
        "on their mean test accuracy (on small data, seeds differ by more than neighbouring "
        "children do).",
        at_least=1,
    )
    jobs: int = option(2, "Searches at once; with more than 1, each uses one thread.", at_least=1)
    verbose: int = option(1, "0: quiet; 1: a line per finished point.")

    def validate(self) -> None:
        from kerasnas.search_spaces.cell import CellSpace

        super().validate()
        CellSpace((8, 8, 1), 2, self.init_channels, self.layers, self.nodes, self.ops)
        if self.targets and self.lambdas:
            raise SettingError("give {targets} or {lambdas}, not both")
        try:  # the command line gives strings
            lambdas = tuple(float(v) for v in self.lambdas)
        except (TypeError, ValueError):
            lambdas = (-1.0,)
        if any(not (v >= 0) for v in lambdas):
            raise SettingError(
                f"{{lambdas}} must be numbers >= 0, got {','.join(map(str, self.lambdas))}"
            )
        object.__setattr__(self, "lambdas", lambdas)
        if len(set(self.lambdas)) != len(self.lambdas):
            raise SettingError(f"{{lambdas}} lists a weight twice: {self.lambdas}")
        if not self.targets and not self.lambdas and self.resource not in ANALYTIC:
            raise SettingError(
                f"{{resource}}={self.resource} has no automatic targets (latency is measured, "
                "not counted): give {targets}, e.g. latency:0.03ms,0.05ms,0.07ms"
            )
        self.parsed_targets()

    def plan(self) -> list[Target | float]:
        """The points: targets, or fixed weights (floats) with {lambdas}; automatic
        targets are computed by :func:`auto_targets` (this returns [] then)."""
        return list(self.lambdas) or list(self.parsed_targets())

    def parsed_targets(self) -> list[Target]:
        """The `targets` as :class:`Target` s (a bare number takes the previous one's
        resource); all must charge the same resource. Empty when none are given."""
        out: list[Target] = []
        for text in self.targets:
            if ":" not in str(text):
                if not out:
                    raise SettingError(
                        f"{{targets}}: the first target needs its resource, e.g. params:{text}"
                    )
                text = f"{out[-1].resource}:{text}"
            try:
                out.append(Target.parse(text))
            except SettingError as e:  # this command's flag is --targets
                raise SettingError(e.template.replace("{target}", "{targets}")) from None
        if len({t.resource for t in out}) > 1:
            raise SettingError(
                "{targets} must all charge one resource (one front per cost axis), got "
                + ", ".join(str(t) for t in out)
            )
        if len(set(out)) != len(out):
            raise SettingError(f"{{targets}} lists a target twice: {','.join(map(str, out))}")
        return out


def cost_range(settings: ParetoSettings, res: str, dropped_edges: bool) -> tuple[float, float]:
    """The cheapest and dearest child of the settings' space in `res` (an analytic
    resource), counted on a freshly built supernet (:meth:`CellSpace.cost_range`)."""
    from kerasnas.data import load
    from kerasnas.search_spaces.cell import CellSpace

    s = settings
    bundle = load(s.dataset, seed=s.seed)
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, s.init_channels, s.layers, s.nodes, tuple(s.ops)
    )
    supernet = space.build_supernet("gumbel", bundle.normalization_layer(), seed=0)
    return space.cost_range(supernet, res, dropped_edges=dropped_edges)


def check_targets(settings: ParetoSettings, targets: list[Target]) -> None:
    """Refuses targets of an analytic resource that no child of the space reaches, before
    any search starts (each search would refuse its own)."""
    if not targets or targets[0].resource not in ANALYTIC:
        return
    res = targets[0].resource
    cheapest, dearest = cost_range(settings, res, dropped_edges=False)
    outside = [t for t in targets if not cheapest <= t.value <= dearest]
    if outside:
        raise SettingError(
            f"{{targets}} {', '.join(map(str, outside))} outside what this space's children "
            f"cost with every edge kept: {format_cost(cheapest, res)} to "
            f"{format_cost(dearest, res)}; smaller children drop edges, which the penalty "
            "cannot steer"
        )


def auto_targets(settings: ParetoSettings) -> list[Target]:
    """`points` targets of ``settings.resource`` evenly spread in log scale from 1.3x the
    cheapest child of the space that keeps every edge to 0.7x the dearest
    (:func:`cost_range`)."""
    res = settings.resource
    cheapest, dearest = cost_range(settings, res, dropped_edges=False)
    lo, hi = 1.3 * cheapest, 0.7 * dearest
    if not hi > lo:
        raise SettingError(
            f"the space's children span too little {res} for a front "
            f"({format_cost(cheapest, res)} to {format_cost(dearest, res)}); give {{targets}}"
        )
    k = settings.points
    return [Target(res, float(lo * (hi / lo) ** (i / (k - 1)))) for i in range(k)]


def _slug(point: Target | float) -> str:
    text = str(point) if isinstance(point, Target) else f"lambda_{point:g}"
    return re.sub(r"[^0-9A-Za-z.]+", "_", text).strip("_")


def point_dir(settings: ParetoSettings, index: int, target: Target | float) -> str:
    return os.path.join(settings.output_dir, "points", f"{index}_{_slug(target)}")


def search_argv(settings: ParetoSettings, target: Target | float, output_dir: str) -> list[str]:
    """The ``kerasnas-search`` arguments of one point: a target, or a fixed weight."""
    s = settings
    if isinstance(target, Target):
        aim = [f"--target={target}", f"--target_lr={s.target_lr}"]
    else:
        aim = [f"--resource={s.resource}", f"--resource_lambda={target}"]
    return [
        f"--strategy={s.strategy}",
        f"--output_dir={output_dir}",
        f"--dataset={s.dataset}",
        f"--valid_fraction={s.valid_fraction}",
        f"--test_fraction={s.test_fraction}",
        f"--seed={s.seed}",
        f"--batch_size={s.batch_size}",
        f"--epochs={s.epochs}",
        f"--a_lr={s.a_lr}",
        *aim,
        f"--init_channels={s.init_channels}",
        f"--layers={s.layers}",
        f"--nodes={s.nodes}",
        f"--ops={','.join(s.ops)}",
        "--export=tflite",
        "--verbose=2",
    ]


def retrain_argv(
    settings: ParetoSettings, genotype: str, output_dir: str, seed: int | None = None
) -> list[str]:
    """The ``kerasnas-train`` arguments that retrain one point's child from scratch (the
    searched sizes), with `seed` (default: the settings' seed)."""
    s = settings
    return [
        f"--genotype={genotype}",
        f"--output_dir={output_dir}",
        f"--dataset={s.dataset}",
        f"--valid_fraction={s.valid_fraction}",
        f"--test_fraction={s.test_fraction}",
        f"--seed={s.seed if seed is None else seed}",
        f"--epochs={s.retrain_epochs}",
        f"--init_channels={s.init_channels}",
        f"--layers={s.layers}",
        "--verbose=2",
    ]


def retrain_name(k: int) -> str:
    """The directory of a point's k-th retraining (from 0): ``retrain``, ``retrain_2``, ..."""
    return "retrain" if k == 0 else f"retrain_{k + 1}"


def run_point(settings: ParetoSettings, index: int, target: Target | float) -> dict[str, Any]:
    """Search (and retrain) one point; a step whose metrics.json exists is skipped."""
    base = point_dir(settings, index, target)
    search_dir = os.path.join(base, "search")
    threads = 1 if settings.jobs > 1 else None
    if not os.path.exists(os.path.join(search_dir, "metrics.json")):
        argv = search_argv(settings, target, search_dir)
        run_tool("kerasnas.cli.search", argv, search_dir, os.path.join(base, "search.log"), threads)
    search = read_json(os.path.join(search_dir, "metrics.json"))
    retrained: list[float] = []
    for k in range(settings.retrain_seeds if settings.retrain_epochs else 0):
        name = retrain_name(k)
        retrain_dir = os.path.join(base, name)
        done = os.path.join(retrain_dir, "metrics.json")
        if os.path.exists(done) and read_json(done).get("epochs") != settings.retrain_epochs:
            shutil.rmtree(retrain_dir)  # a resumed front with another retraining budget
        if not os.path.exists(done):
            genotype = os.path.join(search_dir, "genotype.json")
            argv = retrain_argv(settings, genotype, retrain_dir, settings.seed + k)
            log = os.path.join(base, f"{name}.log")
            run_tool("kerasnas.cli.train", argv, retrain_dir, log, threads)
        retrained.append(float(read_json(done)["test_accuracy"]))
    export = search.get("export", {}).get("tflite", {})
    is_target = isinstance(target, Target)
    res = target.resource if is_target else settings.resource
    if is_target:
        cost = search["child_cost"]
    elif res == "latency":  # measured with the others once every search is done
        cost = None
    else:
        cost = search[f"child_{res}"]
    return {
        "point": f"{index}_{_slug(target)}",
        "target": str(target) if is_target else None,
        "resource": res,
        "child_cost": cost,
        "child_params": search["child_params"],
        "child_flops": search["child_flops"],
        "accuracy": search["child_test_accuracy"],
        "retrained_accuracy": float(np.mean(retrained)) if retrained else None,
        "retrained_std": float(np.std(retrained, ddof=1)) if len(retrained) > 1 else None,
        "retrained_accuracies": retrained,  # for pareto.json
        "dir": os.path.relpath(search_dir, settings.output_dir),
        # for pareto.json
        "target_ratio": search.get("target_ratio"),
        "searched_target_ratio": search.get("searched_target_ratio"),
        "controller_target_ratio": search.get("controller_target_ratio"),
        "search_projections": search.get("search_projections"),
        "projected": search.get("projected"),
        "resource_lambda": None if is_target else target,
        "tflite_verified": bool(export.get("passed")),
        "tflite": os.path.join(search_dir, "export", "model.tflite"),
        "search_seconds": search["search_seconds"],
    }


class ParetoFront(Job):
    """The front job (see the module doc)."""

    settings_file = "settings.json"
    # a resumed front may retrain differently: the searches stay, the retrainings follow
    resumable = Job.resumable | {"jobs", "retrain_epochs", "retrain_seeds"}
    legacy: ClassVar[dict[str, Any]] = {"retrain_seeds": 1}  # fronts before retrain_seeds

    def run(self) -> list[dict[str, Any]]:
        """Runs (or resumes) every point, times the exports, writes the front. Returns the
        rows of ``pareto.csv`` (with the extra figures of ``pareto.json``)."""
        from kerasnas.export import litert
        from kerasnas.latency import cpu_model

        s = self.settings
        s.validate()
        targets = s.plan() or auto_targets(s)
        if not s.lambdas:
            check_targets(s, targets)
        self.open_output_dir()  # after every check: bad input writes nothing
        what = (
            "targets " + ", ".join(str(t) for t in targets)
            if not s.lambdas
            else f"fixed {s.resource} penalty weights " + ", ".join(f"{v:g}" for v in targets)
        )
        seeds = f" x {count(s.retrain_seeds, 'seed')}" if s.retrain_seeds > 1 else ""
        self.log(
            f"front of {count(len(targets), 'point')} ({s.strategy}, {s.epochs} epochs each, "
            f"retrained {count(s.retrain_epochs, 'epoch')}{seeds}; {s.jobs} at a time): {what} "
            f"-> {s.output_dir}"
        )
        t0 = time.perf_counter()
        rows: dict[int, dict[str, Any]] = {}
        calls = {i: functools.partial(run_point, s, i, t) for i, t in enumerate(targets)}
        for i, row in run_parallel(calls, s.jobs):
            rows[i] = row
            retrained, std = row["retrained_accuracy"], row["retrained_std"]
            if row["target"] is not None:
                where = (
                    f"{row['target']}: child {format_cost(row['child_cost'], row['resource'])}"
                    f" ({row['target_ratio']:.3f} of the target)"
                )
            else:
                cost = row["child_cost"]
                where = f"lambda {row['resource_lambda']:g}: child " + (
                    f"{row['child_params']:,} params"
                    if cost is None
                    else format_cost(cost, row["resource"])
                )
            self.log(
                f"[{len(rows)}/{len(targets)}, {time.perf_counter() - t0:.0f} s] {where}, "
                f"test accuracy {row['accuracy']:.3f} without retraining"
                + ("" if retrained is None else f", {retrained:.3f} retrained")
                + ("" if std is None else f" (mean of {s.retrain_seeds} seeds, std {std:.3f})")
            )
        ordered = [rows[i] for i in range(len(targets))]
        for row in ordered:  # one at a time, nothing else running
            if row["tflite_verified"] and os.path.exists(row["tflite"]):
                with open(row["tflite"], "rb") as f:
                    row["latency_ms"] = litert.child_latency_ms(f.read(), 1)
            if row["child_cost"] is None:  # fixed latency weights: the cost is measured here
                row["child_cost"] = row.get("latency_ms")
        # retrained: the front is judged on accuracy after retraining (without, small
        # children inherit weights trained inside a large supernet and flatter the front)
        key = "retrained_accuracy" if s.retrain_epochs else "accuracy"
        costs = [r["child_cost"] for r in ordered]
        front = set(pareto.front_indices(costs, [r[key] for r in ordered]))
        for i, row in enumerate(ordered):
            row["on_front"] = int(i in front)
        out = s.output_dir
        pareto.write_csv(
            os.path.join(out, "pareto.csv"),
            [{k: r.get(k) for k in pareto.COLUMNS} for r in ordered],
        )
        pareto.plot_front(
            [{k: r.get(k) for k in pareto.COLUMNS} for r in ordered],
            os.path.join(out, "pareto.png"),
            front_key=key,
            title=f"{strategies.get(s.strategy).label} "
            + ("cost targets" if not s.lambdas else "fixed penalty weights")
            + f" on {s.dataset}",
        )
        io.write_json(
            os.path.join(out, "pareto.json"),
            {
                "points": [{k: v for k, v in r.items() if k != "tflite"} for r in ordered],
                "front_of": key,
                "seconds": round(time.perf_counter() - t0, 1),
                "cpu": cpu_model(),
                "settings": dataclasses.asdict(s),
            },
        )
        ratios = [r["target_ratio"] for r in ordered if r["target_ratio"] is not None]
        self.log(
            f"front written: {out}/pareto.csv, pareto.png ({count(len(front), 'point')} on the "
            "front)"
            + (f"; child cost / target {min(ratios):.3f}..{max(ratios):.3f}" if ratios else "")
            + "; every TFLite "
            + ("verified" if all(r["tflite_verified"] for r in ordered) else "NOT all verified")
        )
        return ordered


def run_pareto(
    settings: ParetoSettings, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Runs (or resumes) the front (see the module doc); returns its rows."""
    job = ParetoFront(settings)
    if log is not None:
        job.log = log
    with job:
        return job.run()
