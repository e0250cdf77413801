"""The SNAS paper's comparisons as one reproducible experiment (``kerasnas-compare``).

For every strategy and seed, one search of the same cell space with the same budget
(``kerasnas-search --strategy=...``), then the derived child retrained from scratch for a
fixed budget (``kerasnas-train``). Strategies:

- ``snas``: SNAS (Gumbel-softmax, single level); child = argmax ops, inherited weights.
- ``darts``: DARTS, first or second order (``darts_order``), bilevel on the halves of the
  training split; child = top-2 rule, inherited weights.
- ``enas``: ENAS (LSTM controller, REINFORCE on validation minibatches); child = best of the
  sampled children, inherited weights.
- ``random_ws``: uniform sampling with weight sharing: the supernet trained on uniformly
  sampled children, evaluated with the same inherited-weight protocol.

The names are those of :mod:`kerasnas.strategies` (``random`` there is the trial-based random
search; the comparison refuses it, pointing at ``random_ws``).

The search budget (``budget``): ``time`` (the default) gives every search the same seconds
(``search_seconds``, default :data:`DEFAULT_SEARCH_SECONDS`), passed to ``kerasnas-search
--time_budget`` (see :class:`~kerasnas.trainers.base.LoopConfig` for what counts: the
steps and ENAS' controller phase; not start-up, i.e. tracing, and not the per-epoch
validation), with ``epochs`` an optional cap. 600 s give ENAS, whose controller phase costs
about a third of its time as in the authors' setting, about 3,000 weight steps: what
weight sharing needs on digits to pass 0.8. An ENAS or random-sampling epoch trains one
child per minibatch and costs a fraction of an SNAS or DARTS epoch, which runs the whole
supernet every step, and weight sharing needs far more steps than one network does
(uniform children need about 1,500 digits steps to reach 0.8, one fixed child about 50):
equal epochs starve it. Each strategy
does as many epochs and steps as fit, so a time-budgeted comparison is not deterministic
(it depends on the machine's speed and load, and on what else runs: with ``jobs`` > 1 the
runs share the cores); the table and summary say how many epochs and steps each run got.
``epochs`` gives every search the same number of supernet epochs (``epochs``, default 10)
and deterministic results.

Each run is a normal output directory under ``runs/<strategy>_seed<k>/`` (``search/`` and
``retrain/``, with their logs), so a stopped comparison resumes where it stopped
(``resume``); runs go ``jobs`` at a time, each on one thread when ``jobs > 1`` (with
``budget=epochs`` results are deterministic given the seed and the thread count). Outputs,
written atomically:

- ``comparison.csv``: one row per run (see :data:`COLUMNS`);
- ``summary.json``: the budget, and mean and standard deviation per strategy;
- ``accuracy_vs_epoch.png``: validation accuracy of the searching supernet per epoch
  (the SNAS paper's Figure 9); ``supernet_vs_child.png``: supernet accuracy against the
  child's without retraining (Figure 10); ``entropy_vs_epoch.png``: mean entropy of the
  architecture distribution per epoch (Figure 11). With ``budget=time`` the two curves are
  plotted against the seconds of search counted by the budget (each point the end of an
  epoch), since the strategies do different numbers of epochs.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io as io_lib
import math
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

from kerasnas import io, strategies
from kerasnas import summary as summary_lib
from kerasnas.errors import SettingError, within
from kerasnas.jobs.base import Job, JobSettings
from kerasnas.jobs.tools import read_json, run_parallel, run_tool
from kerasnas.names import PRIMITIVES
from kerasnas.options import REQUIRED, option
from kerasnas.wording import count

__all__ = [
    "BUDGETS",
    "COLUMNS",
    "DEFAULT_SEARCH_SECONDS",
    "Comparison",
    "CompareSettings",
    "run_comparison",
    "summarize",
]

BUDGETS = ("epochs", "time")
DEFAULT_EPOCHS = 10  # supernet epochs per search with budget=epochs
# budget=time (the default): seconds of search per run; about what the quick start's SNAS
# search (C=8, L=5, N=4, 8 ops, 30 epochs on digits, batch 64) takes on 2 cores, tracing
# included, and enough for uniform weight sharing to learn (about 1,500 steps, see
# docs/comparison.md)
DEFAULT_SEARCH_SECONDS = 600.0
# budget=time without epochs: the searches' epoch cap (never reached on these budgets)
TIME_EPOCH_CAP = 10_000

COLUMNS: tuple[str, ...] = (
    "strategy",
    "seed",
    "budget",  # epochs, or time (equal seconds; then not deterministic)
    "supernet_valid_accuracy",  # the searching supernet (SNAS/ENAS/random: sampled)
    "child_valid_accuracy",  # derived child, inherited weights, no retraining
    "child_test_accuracy",
    "retrained_valid_accuracy",  # the child retrained from scratch
    "retrained_test_accuracy",
    "params",  # of the retrained network
    "flops",  # mult-adds per image, retrained network
    "search_seconds",  # the search's training loop, per-epoch validation included
    "budget_seconds",  # the part a time budget counts (steps, controller phase)
    "setup_seconds",  # start-up the budget does not count (tracing: first calls)
    "epochs_done",  # supernet epochs the search did (with budget=time: as many as fit)
    "steps",  # training steps the search did
    "retrain_seconds",
    "final_entropy",  # nats, mean over edges (ENAS: over controller decisions)
)
_NOT_SUMMARIZED = ("strategy", "seed", "budget")
# a search history's per-epoch supernet validation accuracy (kerasnas.progress names; the
# last: the name of versions before them)
SUPERNET_VALID_KEYS = ("sampled_supernet_valid_acc", "softmax_supernet_valid_acc", "valid_accuracy")


@dataclasses.dataclass(kw_only=True)
class CompareSettings(JobSettings):
    """A comparison: sizes C = init_channels, L = layers, N = nodes of the searched supernet
    (every strategy the same), the search budget (`budget`: `epochs` of supernet training
    per search, default 10; or `time`: `search_seconds` of search per run, default
    :data:`DEFAULT_SEARCH_SECONDS`, `epochs` then an optional cap; see the module doc), and
    the retraining budget (`retrain_*`: the child rebuilt as an evaluation network and
    trained from scratch). `a_lr` is the architecture learning rate of SNAS and DARTS
    (Adam)."""

    output_dir: str = option(REQUIRED, "Directory of the comparison. Required.")
    strategies: tuple[str, ...] = option(
        ("snas", "darts", "enas", "random_ws"),
        "Some of the one-shot strategies: " + ", ".join(strategies.names(strategies.ONE_SHOT)),
    )
    seeds: int = option(3, "Seeds per strategy (0..seeds-1).", at_least=1)
    budget: str = option(
        "time",
        "What every search gets the same of: epochs (supernet epochs, {epochs}) or time "
        "(seconds of search, {search_seconds}; the strategies then do different numbers of "
        "epochs, and results are not deterministic).",
        choices=BUDGETS,
    )
    epochs: int | None = option(
        None,
        f"Supernet epochs of every search (default {DEFAULT_EPOCHS}); with {{budget}}=time "
        "the most epochs a search may do (default: no cap).",
        at_least=1,
    )
    search_seconds: float | None = option(
        None,
        f"{{budget}}=time only: seconds of search per run (default {DEFAULT_SEARCH_SECONDS:g}); "
        "they count the training steps and ENAS' controller phase, not start-up (tracing) "
        "or the per-epoch validation.",
        above=0,
    )
    batch_size: int = option(64, "Minibatch size.", at_least=1)
    init_channels: int = option(8, "C of the supernet.")
    layers: int = option(5, "L cells of the supernet.")
    nodes: int = option(4, "N nodes per cell.")
    ops: tuple[str, ...] = option(PRIMITIVES, "Candidate ops (enas, random_ws need 'none').")
    darts_order: int = option(1, "DARTS order: 1 or 2.", choices=(1, 2))
    a_lr: float = option(0.3, "Architecture learning rate of SNAS and DARTS.", above=0)
    retrain_epochs: int = option(10, "Epochs of retraining each child from scratch.", at_least=1)
    retrain_init_channels: int = option(8, "C of the retrained network.")
    retrain_layers: int = option(5, "L of the retrained network.")
    jobs: int = option(2, "Runs at once; with more than 1, each uses one thread.", at_least=1)
    verbose: int = option(1, "0: quiet; 1: a line per finished run.")

    def validate(self) -> None:
        """Raises SettingError naming the first bad setting (the sizes and ops by the cell
        space's own rules)."""
        from kerasnas.search_spaces.cell import CellSpace

        super().validate()
        CellSpace((8, 8, 1), 2, self.init_channels, self.layers, self.nodes, self.ops)
        with within("retrain"):
            CellSpace((8, 8, 1), 2, self.retrain_init_channels, self.retrain_layers)
        if not self.strategies:
            raise SettingError("{strategies} must name at least one strategy")
        for name in self.strategies:
            try:
                strategies.get(name, strategies.ONE_SHOT).check_ops(tuple(self.ops))
            except SettingError as e:
                raise SettingError(e.template.replace("{strategy}", "{strategies}")) from None
        if len(set(self.strategies)) != len(self.strategies):
            raise SettingError(
                f"{{strategies}} lists a strategy twice: {','.join(self.strategies)}"
            )
        if self.search_seconds is not None and self.budget != "time":
            raise SettingError(
                f"{{search_seconds}} applies to {{budget}}=time only, not {{budget}}={self.budget}"
            )

    def search_epochs(self) -> int:
        """The ``--epochs`` of every search: `epochs` (default 10), or with budget=time
        and no `epochs`, a cap the time budget ends first."""
        if self.epochs is not None:
            return self.epochs
        return DEFAULT_EPOCHS if self.budget == "epochs" else TIME_EPOCH_CAP

    def time_budget(self) -> float | None:
        """Seconds of search per run (budget=time), else None."""
        if self.budget != "time":
            return None
        return DEFAULT_SEARCH_SECONDS if self.search_seconds is None else self.search_seconds

    def describe_budget(self) -> str:
        """The search budget in words, for the log."""
        if self.budget == "epochs":
            return count(self.search_epochs(), "epoch")
        cap = "" if self.epochs is None else f", at most {count(self.epochs, 'epoch')}"
        return f"{self.time_budget():g} s (budget=time{cap}; not deterministic)"

    def runs(self) -> list[tuple[str, int]]:
        """(strategy, seed) of every run, seed-major so early results cover every strategy."""
        return [(s, seed) for seed in range(self.seeds) for s in self.strategies]


def run_dir(settings: CompareSettings, strategy: str, seed: int) -> str:
    return os.path.join(settings.output_dir, "runs", f"{strategy}_seed{seed}")


def _common_argv(settings: CompareSettings, seed: int, output_dir: str) -> list[str]:
    return [
        f"--output_dir={output_dir}",
        f"--dataset={settings.dataset}",
        f"--valid_fraction={settings.valid_fraction}",
        f"--test_fraction={settings.test_fraction}",
        f"--seed={seed}",
        f"--batch_size={settings.batch_size}",
        "--verbose=0",
    ]


def search_argv(settings: CompareSettings, strategy: str, seed: int, output_dir: str) -> list[str]:
    """The ``kerasnas-search`` arguments of one run (no export: the comparison needs none)."""
    argv = [
        f"--strategy={strategy}",
        *_common_argv(settings, seed, output_dir),
        f"--epochs={settings.search_epochs()}",
        f"--init_channels={settings.init_channels}",
        f"--layers={settings.layers}",
        f"--nodes={settings.nodes}",
        f"--ops={','.join(settings.ops)}",
        "--export=",
    ]
    if settings.budget == "time":
        argv.append(f"--time_budget={float(settings.time_budget())}")
    if strategy in ("snas", "darts"):
        argv.append(f"--a_lr={settings.a_lr}")
    if strategy == "darts":
        argv.append(f"--darts_order={settings.darts_order}")
    return argv


def retrain_argv(settings: CompareSettings, seed: int, genotype: str, output_dir: str) -> list[str]:
    """The ``kerasnas-train`` arguments that retrain one run's child from scratch."""
    return [
        f"--genotype={genotype}",
        *_common_argv(settings, seed, output_dir),
        f"--epochs={settings.retrain_epochs}",
        f"--init_channels={settings.retrain_init_channels}",
        f"--layers={settings.retrain_layers}",
    ]


def run_one(settings: CompareSettings, strategy: str, seed: int) -> dict[str, Any]:
    """Search, then retrain, one (strategy, seed); skips a step whose metrics.json exists.
    Returns the run's row of :data:`COLUMNS` plus its per-epoch ``history``."""
    base = run_dir(settings, strategy, seed)
    search_dir, retrain_dir = os.path.join(base, "search"), os.path.join(base, "retrain")
    threads = 1 if settings.jobs > 1 else None
    if not os.path.exists(os.path.join(search_dir, "metrics.json")):
        argv = search_argv(settings, strategy, seed, search_dir)
        run_tool("kerasnas.cli.search", argv, search_dir, os.path.join(base, "search.log"), threads)
    if not os.path.exists(os.path.join(retrain_dir, "metrics.json")):
        argv = retrain_argv(settings, seed, os.path.join(search_dir, "genotype.json"), retrain_dir)
        run_tool(
            "kerasnas.cli.train", argv, retrain_dir, os.path.join(base, "retrain.log"), threads
        )
    search = read_json(os.path.join(search_dir, "metrics.json"))
    retrain = read_json(os.path.join(retrain_dir, "metrics.json"))
    history = read_json(os.path.join(search_dir, "history.json"))
    row = {
        "strategy": strategy,
        "seed": seed,
        "budget": settings.budget,
        "supernet_valid_accuracy": search["supernet_valid_accuracy"],
        "child_valid_accuracy": search["child_valid_accuracy"],
        "child_test_accuracy": search["child_test_accuracy"],
        "retrained_valid_accuracy": retrain["valid_accuracy"],
        "retrained_test_accuracy": retrain["test_accuracy"],
        "params": retrain["params"],
        "flops": retrain["flops"],
        "search_seconds": search["search_seconds"],
        # runs searched before these were recorded: None (the epochs from the history)
        "budget_seconds": search.get("budget_seconds"),
        "setup_seconds": search.get("setup_seconds"),
        "epochs_done": search.get("epochs_done", len(history)),
        "steps": search.get("steps"),
        "retrain_seconds": retrain["seconds"],
        "final_entropy": search.get("final_entropy"),
    }
    return {**row, "history": history}


def _stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "n": len(values)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per strategy and numeric column: mean, sample standard deviation and count. Also
    ``accuracy_drop``: supernet minus child-without-retraining validation accuracy."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == strategy]
        stats = {}
        for col in COLUMNS:
            if col in _NOT_SUMMARIZED:
                continue
            values = [float(r[col]) for r in mine if r.get(col) is not None]
            if values:
                stats[col] = _stats(values)
        stats["accuracy_drop"] = _stats(
            [r["supernet_valid_accuracy"] - r["child_valid_accuracy"] for r in mine]
        )
        out[strategy] = stats
    return out


def write_csv(rows: list[dict[str, Any]], path: str) -> None:
    buffer = io_lib.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    io.write_text(path, buffer.getvalue())


def label(strategy: str, settings: CompareSettings) -> str:
    """The strategy's label in plots and log lines (DARTS with its order)."""
    if strategy == "darts":
        return f"DARTS ({'1st' if settings.darts_order == 1 else '2nd'} order)"
    return strategies.get(strategy).label


class Comparison(Job):
    """The comparison job (see the module doc)."""

    settings_file = "settings.json"
    legacy: ClassVar[dict[str, Any]] = {"budget": "epochs"}  # comparisons before budget=time

    def run(self) -> list[dict[str, Any]]:
        """Runs (or resumes) every search and retraining, then writes the tables and plots.
        Returns the rows (with their histories)."""
        from kerasnas.plotting import plot_bars, plot_curves

        s = self.settings
        s.validate()
        if s.budget == "epochs" and s.epochs is None:  # kept as comparisons always kept it
            s = self.settings = dataclasses.replace(s, epochs=s.search_epochs())
        self.open_output_dir()
        runs = s.runs()
        self.log(
            f"comparing {', '.join(s.strategies)} x {count(s.seeds, 'seed')}: "
            f"{count(len(runs), 'search', 'searches')} of {s.describe_budget()} + retraining "
            f"for {count(s.retrain_epochs, 'epoch')}, {s.jobs} at a time -> {s.output_dir}"
        )
        t0 = time.perf_counter()
        results: dict[tuple[str, int], dict[str, Any]] = {}
        calls = {run: functools.partial(run_one, s, *run) for run in runs}
        for (name, seed), row in run_parallel(calls, s.jobs):
            results[(name, seed)] = row
            self.log(
                f"[{len(results)}/{len(runs)}, {time.perf_counter() - t0:.0f} s] "
                f"{name} seed {seed}: supernet {row['supernet_valid_accuracy']:.3f}, "
                f"child {row['child_valid_accuracy']:.3f} (no retraining), retrained test "
                f"{row['retrained_test_accuracy']:.3f}, search {row['search_seconds']:.0f} s"
                f" ({count(row['epochs_done'], 'epoch')}"
                + (f", {count(row['steps'], 'step')})" if row["steps"] is not None else ")")
            )
        rows = [results[key] for key in runs]
        out = s.output_dir
        write_csv(rows, os.path.join(out, "comparison.csv"))
        summary = summarize(rows)
        styles = {name: (label(name, s), strategies.get(name).color) for name in s.strategies}

        # with budget=time the strategies do different numbers of epochs: plot against the
        # seconds of search the budget counted at the end of each epoch
        by_time = s.budget == "time"
        xlabel = "seconds of search (time budget)" if by_time else "search epoch"

        def per_epoch(*keys: str) -> tuple[dict, dict | None]:
            # the first of `keys` a record has (names of older versions last)
            series, xs = {}, {}
            for name in s.strategies:
                series[name], xs[name] = [], []
                for r in rows:
                    if r["strategy"] != name:
                        continue
                    ys = [next((rec[k] for k in keys if k in rec), None) for rec in r["history"]]
                    ts = [rec.get("budget_seconds") for rec in r["history"]]
                    if ys and all(v is not None for v in ys + (ts if by_time else [])):
                        series[name].append(ys)
                        xs[name].append(ts)
            return series, (xs if by_time else None)

        accuracy, accuracy_xs = per_epoch(*SUPERNET_VALID_KEYS)
        plot_curves(
            accuracy,
            styles,
            xlabel,
            "validation accuracy of the searching supernet",
            os.path.join(out, "accuracy_vs_epoch.png"),
            xs=accuracy_xs,
        )
        plot_bars(
            {
                name: tuple(
                    [r[col] for r in rows if r["strategy"] == name]
                    for col in ("supernet_valid_accuracy", "child_valid_accuracy")
                )
                for name in s.strategies
            },
            styles,
            "validation accuracy",
            "left: supernet while searching; right: child, no retraining",
            os.path.join(out, "supernet_vs_child.png"),
        )
        entropy, entropy_xs = per_epoch("entropy")
        plot_curves(
            entropy,
            styles,
            xlabel,
            "architecture entropy (nats per decision)",
            os.path.join(out, "entropy_vs_epoch.png"),
            xs=entropy_xs,
        )
        written = {
            "seconds": round(time.perf_counter() - t0, 1),
            "budget": self.budget_summary(),
            "strategies": summary,
        }
        io.write_json(os.path.join(out, "summary.json"), written)
        best = max(rows, key=lambda r: r["retrained_test_accuracy"], default=None)
        if best is not None:
            best = {
                **best,
                "retrain_dir": os.path.join(run_dir(s, best["strategy"], best["seed"]), "retrain"),
            }
        labels = {name: label(name, s) for name in s.strategies}
        self.log("\n" + summary_lib.comparison(written, labels, best, out))
        return rows

    def budget_summary(self) -> dict[str, Any]:
        """The search budget for ``summary.json``: its kind, the epochs or seconds every
        search got, and whether the results are deterministic."""
        s = self.settings
        if s.budget == "epochs":
            return {"kind": "epochs", "epochs": s.search_epochs(), "deterministic": True}
        return {
            "kind": "time",
            "search_seconds": s.time_budget(),
            "epoch_cap": s.epochs,
            "deterministic": False,
            "note": "equal seconds of search per run (steps and ENAS' controller phase; not "
            "start-up, i.e. tracing, reported as setup_seconds, nor validation): each "
            "strategy did as many epochs and steps as fit (epochs_done, steps), which depends "
            "on the machine's speed and load",
        }


def run_comparison(
    settings: CompareSettings, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Runs (or resumes) every search and retraining, then writes the tables and plots
    (see the module doc). Returns the rows (with their histories)."""
    job = Comparison(settings)
    if log is not None:
        job.log = log
    with job:
        return job.run()
