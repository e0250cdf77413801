"""The SNAS paper's comparisons as one reproducible experiment (``kerasnas-compare``).

For every strategy and seed, one search of the same cell space with the same supernet epochs
(``kerasnas-search --strategy=...``), then the derived child retrained from scratch for a
fixed budget (``kerasnas-train``). Strategies (names as on the command line):

- ``snas``: SNAS (Gumbel-softmax, single level); child = argmax ops, inherited weights.
- ``darts``: DARTS, first or second order (``darts_order``), bilevel on the halves of the
  training split; child = top-2 rule, inherited weights.
- ``enas``: ENAS (LSTM controller, REINFORCE on validation minibatches); child = best of the
  sampled children, inherited weights.
- ``random``: uniform sampling with weight sharing (``--strategy=random_ws``): the supernet
  trained on uniformly sampled children, evaluated with the same inherited-weight protocol.

Each run is a normal output directory under ``runs/<strategy>_seed<k>/`` (``search/`` and
``retrain/``, with their logs), so a stopped comparison resumes where it stopped
(``resume``); runs go ``jobs`` at a time, each on one thread when ``jobs > 1`` (results are
deterministic given the seed and the thread count). Outputs, written atomically:

- ``comparison.csv``: one row per run (see :data:`COLUMNS`);
- ``summary.json``: mean and standard deviation per strategy;
- ``accuracy_vs_epoch.png``: validation accuracy of the searching supernet per epoch
  (the SNAS paper's Figure 9); ``supernet_vs_child.png``: supernet accuracy against the
  child's without retraining (Figure 10); ``entropy_vs_epoch.png``: mean entropy of the
  architecture distribution per epoch (Figure 11).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import io as io_lib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from kerasnas import io, ops

# compare name -> kerasnas-search --strategy
STRATEGIES: dict[str, str] = {
    "snas": "snas",
    "darts": "darts",
    "enas": "enas",
    "random": "random_ws",
}
COLUMNS: tuple[str, ...] = (
    "strategy",
    "seed",
    "supernet_valid_accuracy",  # the searching supernet (SNAS/ENAS/random: sampled)
    "child_valid_accuracy",  # derived child, inherited weights, no retraining
    "child_test_accuracy",
    "retrained_valid_accuracy",  # the child retrained from scratch
    "retrained_test_accuracy",
    "params",  # of the retrained network
    "flops",  # mult-adds per image, retrained network
    "search_seconds",
    "retrain_seconds",
    "final_entropy",  # nats, mean over edges (ENAS: over controller decisions)
)
LABELS = {"snas": "SNAS", "darts": "DARTS", "enas": "ENAS", "random": "random (WS)"}
COLORS = {"snas": "tab:red", "darts": "tab:blue", "enas": "tab:green", "random": "tab:gray"}


class CompareError(ValueError):
    """The comparison cannot run or a run failed: the message says which and where."""


@dataclasses.dataclass
class CompareSettings:
    """A comparison: sizes C = init_channels, L = layers, N = nodes of the searched supernet
    (every strategy the same), `epochs` of supernet training per search, and the retraining
    budget (`retrain_*`: the child rebuilt as an evaluation network and trained from scratch).
    `a_lr` is the architecture learning rate of SNAS and DARTS (Adam)."""

    output_dir: str
    strategies: tuple[str, ...] = ("snas", "darts", "enas", "random")
    seeds: int = 3
    dataset: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    init_channels: int = 8
    layers: int = 5
    nodes: int = 4
    ops: tuple[str, ...] = ops.PRIMITIVES
    darts_order: int = 1
    a_lr: float = 0.2
    retrain_epochs: int = 10
    retrain_init_channels: int = 8
    retrain_layers: int = 5
    jobs: int = 2
    resume: bool = False
    overwrite: bool = False
    verbose: int = 1

    def check(self) -> None:
        """Raises CompareError naming the first bad setting."""
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if not self.strategies or unknown:
            raise CompareError(
                f"--strategies must be some of {', '.join(STRATEGIES)}, "
                f"got {','.join(self.strategies) or 'nothing'}"
            )
        if len(set(self.strategies)) != len(self.strategies):
            raise CompareError(f"--strategies lists a strategy twice: {','.join(self.strategies)}")
        for name in ("seeds", "epochs", "batch_size", "retrain_epochs", "jobs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CompareError(f"--{name} must be a positive int, got {value!r}")
        if self.darts_order not in (1, 2):
            raise CompareError(f"--darts_order must be 1 or 2, got {self.darts_order!r}")
        if not self.a_lr > 0:
            raise CompareError(f"--a_lr must be > 0, got {self.a_lr!r}")
        if any(s in ("enas", "random") for s in self.strategies) and "none" not in self.ops:
            raise CompareError(
                "--ops must include 'none' for enas and random (they switch edges off with it)"
            )

    def runs(self) -> list[tuple[str, int]]:
        """(strategy, seed) of every run, seed-major so early results cover every strategy."""
        return [(s, seed) for seed in range(self.seeds) for s in self.strategies]


def run_dir(settings: CompareSettings, strategy: str, seed: int) -> str:
    return os.path.join(settings.output_dir, "runs", f"{strategy}_seed{seed}")


def search_argv(settings: CompareSettings, strategy: str, seed: int, output_dir: str) -> list[str]:
    """The ``kerasnas-search`` arguments of one run (no export: the comparison needs none)."""
    argv = [
        f"--strategy={STRATEGIES[strategy]}",
        f"--output_dir={output_dir}",
        f"--dataset={settings.dataset}",
        f"--seed={seed}",
        f"--epochs={settings.epochs}",
        f"--batch_size={settings.batch_size}",
        f"--init_channels={settings.init_channels}",
        f"--layers={settings.layers}",
        f"--nodes={settings.nodes}",
        f"--ops={','.join(settings.ops)}",
        "--export=",
        "--verbose=0",
    ]
    if strategy in ("snas", "darts"):
        argv.append(f"--a_lr={settings.a_lr}")
    if strategy == "darts":
        argv.append(f"--darts_order={settings.darts_order}")
    return argv


def retrain_argv(settings: CompareSettings, seed: int, genotype: str, output_dir: str) -> list[str]:
    """The ``kerasnas-train`` arguments that retrain one run's child from scratch."""
    return [
        f"--genotype={genotype}",
        f"--output_dir={output_dir}",
        f"--dataset={settings.dataset}",
        f"--seed={seed}",
        f"--epochs={settings.retrain_epochs}",
        f"--batch_size={settings.batch_size}",
        f"--init_channels={settings.retrain_init_channels}",
        f"--layers={settings.retrain_layers}",
        "--verbose=0",
    ]


def _run_tool(module: str, argv: list[str], output_dir: str, log_path: str, threads: int | None):
    """Runs ``python -m module argv`` (resuming in `output_dir` when a stopped run left it);
    its output goes to `log_path`. Raises CompareError with the tool's last error line."""
    argv = list(argv)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        argv.append("--resume")
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(threads)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        last = next((line for line in reversed(lines) if "error" in line.lower()), None)
        raise CompareError(
            f"{module} failed (exit {proc.returncode}) for {output_dir}: "
            f"{last or (lines[-1] if lines else 'no output')} (log: {log_path})"
        )


def _read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_one(settings: CompareSettings, strategy: str, seed: int) -> dict[str, Any]:
    """Search, then retrain, one (strategy, seed); skips a step whose metrics.json exists.
    Returns the run's row of :data:`COLUMNS` plus its per-epoch ``history``."""
    base = run_dir(settings, strategy, seed)
    search_dir, retrain_dir = os.path.join(base, "search"), os.path.join(base, "retrain")
    threads = 1 if settings.jobs > 1 else None
    if not os.path.exists(os.path.join(search_dir, "metrics.json")):
        argv = search_argv(settings, strategy, seed, search_dir)
        _run_tool(
            "kerasnas.cli.search", argv, search_dir, os.path.join(base, "search.log"), threads
        )
    if not os.path.exists(os.path.join(retrain_dir, "metrics.json")):
        argv = retrain_argv(settings, seed, os.path.join(search_dir, "genotype.json"), retrain_dir)
        _run_tool(
            "kerasnas.cli.train", argv, retrain_dir, os.path.join(base, "retrain.log"), threads
        )
    search = _read_json(os.path.join(search_dir, "metrics.json"))
    retrain = _read_json(os.path.join(retrain_dir, "metrics.json"))
    history = _read_json(os.path.join(search_dir, "history.json"))
    row = {
        "strategy": strategy,
        "seed": seed,
        "supernet_valid_accuracy": search["supernet_valid_accuracy"],
        "child_valid_accuracy": search["child_valid_accuracy"],
        "child_test_accuracy": search["child_test_accuracy"],
        "retrained_valid_accuracy": retrain["valid_accuracy"],
        "retrained_test_accuracy": retrain["test_accuracy"],
        "params": retrain["params"],
        "flops": retrain["flops"],
        "search_seconds": search["search_seconds"],
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
        for col in COLUMNS[2:]:
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


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> None:
    fig.tight_layout()
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def _label(strategy: str, settings: CompareSettings) -> str:
    if strategy == "darts":
        return f"DARTS ({'1st' if settings.darts_order == 1 else '2nd'} order)"
    return LABELS[strategy]


def plot_curves(
    rows: list[dict[str, Any]], key: str, ylabel: str, path: str, settings: CompareSettings
) -> None:
    """`key` of every run's history against epochs: a thin line per seed, the mean bold."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for strategy in settings.strategies:
        runs = [r["history"] for r in rows if r["strategy"] == strategy]
        curves = [[rec.get(key) for rec in h] for h in runs]
        curves = [c for c in curves if c and all(v is not None for v in c)]
        if not curves:
            continue
        color = COLORS[strategy]
        for c in curves:
            ax.plot(range(1, len(c) + 1), c, color=color, alpha=0.25, lw=1)
        n = min(len(c) for c in curves)
        mean = [sum(c[i] for c in curves) / len(curves) for i in range(n)]
        ax.plot(range(1, n + 1), mean, color=color, lw=2, label=_label(strategy, settings))
    ax.set_xlabel("search epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_supernet_vs_child(
    rows: list[dict[str, Any]], path: str, settings: CompareSettings
) -> None:
    """Per strategy: supernet validation accuracy and the child's without retraining
    (mean over seeds, a dot per seed)."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    for i, strategy in enumerate(settings.strategies):
        mine = [r for r in rows if r["strategy"] == strategy]
        if not mine:
            continue
        for j, (col, shade) in enumerate(
            (("supernet_valid_accuracy", 0.45), ("child_valid_accuracy", 1.0))
        ):
            values = [r[col] for r in mine]
            x = i + (j - 0.5) * width
            ax.bar(x, sum(values) / len(values), width, color=COLORS[strategy], alpha=shade)
            ax.plot([x] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(settings.strategies)))
    ax.set_xticklabels([_label(s, settings) for s in settings.strategies], fontsize=8)
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("left: supernet while searching; right: child, no retraining", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


_NOT_COMPARED = ("output_dir", "resume", "overwrite", "verbose")  # free to change on resume


def _check_resumed_settings(settings: CompareSettings) -> None:
    """A resumed comparison must keep the settings its finished runs were made with."""
    path = os.path.join(settings.output_dir, "settings.json")
    if not settings.resume or not os.path.exists(path):
        return
    saved = _read_json(path)
    now = json.loads(json.dumps(dataclasses.asdict(settings)))  # tuples as lists
    changed = [k for k in now if k not in _NOT_COMPARED and k in saved and saved[k] != now[k]]
    if changed:
        detail = ", ".join(f"--{k}: {saved[k]!r} -> {now[k]!r}" for k in changed)
        raise CompareError(
            f"cannot resume {settings.output_dir!r}: it was started with other settings "
            f"({detail}); pass the same flags or use --overwrite"
        )


def run_comparison(
    settings: CompareSettings, log: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """Runs (or resumes) every search and retraining, then writes the tables and plots
    (see the module doc). Returns the rows (with their histories)."""
    settings.check()
    log = log or (print if settings.verbose else (lambda _: None))
    try:
        io.prepare_output_dir(
            settings.output_dir, resume=settings.resume, overwrite=settings.overwrite
        )
    except io.OutputDirError as e:
        raise CompareError(str(e)) from None
    _check_resumed_settings(settings)
    io.write_json(os.path.join(settings.output_dir, "settings.json"), dataclasses.asdict(settings))
    runs = settings.runs()
    log(
        f"comparing {', '.join(settings.strategies)} x {settings.seeds} seeds: {len(runs)} "
        f"searches of {settings.epochs} epochs + retraining for {settings.retrain_epochs} "
        f"epochs, {settings.jobs} at a time -> {settings.output_dir}"
    )
    t0 = time.perf_counter()
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with concurrent.futures.ThreadPoolExecutor(settings.jobs) as pool:
        futures = {pool.submit(run_one, settings, s, seed): (s, seed) for s, seed in runs}
        for future in concurrent.futures.as_completed(futures):
            strategy, seed = futures[future]
            try:
                row = future.result()
            except CompareError:
                for f in futures:
                    f.cancel()
                raise
            results[(strategy, seed)] = row
            log(
                f"[{len(results)}/{len(runs)}, {time.perf_counter() - t0:.0f} s] "
                f"{strategy} seed {seed}: supernet {row['supernet_valid_accuracy']:.3f}, "
                f"child {row['child_valid_accuracy']:.3f} (no retraining), retrained test "
                f"{row['retrained_test_accuracy']:.3f}, search {row['search_seconds']:.0f} s"
            )
    rows = [results[key] for key in runs]
    out = settings.output_dir
    write_csv(rows, os.path.join(out, "comparison.csv"))
    summary = summarize(rows)
    plot_curves(
        rows,
        "valid_accuracy",
        "validation accuracy of the searching supernet",
        os.path.join(out, "accuracy_vs_epoch.png"),
        settings,
    )
    plot_supernet_vs_child(rows, os.path.join(out, "supernet_vs_child.png"), settings)
    plot_curves(
        rows,
        "entropy",
        "architecture entropy (nats per decision)",
        os.path.join(out, "entropy_vs_epoch.png"),
        settings,
    )
    io.write_json(
        os.path.join(out, "summary.json"),
        {"seconds": round(time.perf_counter() - t0, 1), "strategies": summary},
    )
    for strategy, stats in summary.items():
        log(
            f"{_label(strategy, settings)}: supernet {stats['supernet_valid_accuracy']['mean']:.3f}"
            f", child without retraining {stats['child_valid_accuracy']['mean']:.3f} "
            f"(drop {stats['accuracy_drop']['mean']:+.3f}), retrained test "
            f"{stats['retrained_test_accuracy']['mean']:.3f} "
            f"+- {stats['retrained_test_accuracy']['std']:.3f}"
        )
    return rows
