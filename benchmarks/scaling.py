"""Step time and memory of the SNAS supernet as C, L, batch and the number of ops grow.

    python benchmarks/scaling.py                  # full sweep -> benchmarks/results/
    python benchmarks/scaling.py --quick          # smoke run: fewer, smaller points, 2 steps
    python benchmarks/scaling.py --resume         # skip points already in scaling.json
    python benchmarks/scaling.py --plot_only      # redraw scaling.png, refit the slopes

One variable at a time around a base config (full: C=8, L=5, batch 32, 8 ops; quick: C=4,
L=3, batch 16, 4 ops, two values per variable), both relaxations, each point a fresh subprocess
(``supernet_step.run_config``, no dense reference). Op subsets are prefixes of
``OP_ORDER``: ``none`` always (it costs nothing, so every subset keeps the edge-deletion
choice of SNAS), then one parametric and one parameter-free op per pair, so 2, 4, 6, 8 ops
add comparable work. Writes ``scaling.json`` (atomically) and ``scaling.png`` (a column
per variable, rows ms/step and tensors MB, log-log) to ``--output``, and prints the
least-squares log-log slope (growth exponent) of ms/step and tensors MB per variable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from supernet_step import run_config  # noqa: E402

OP_ORDER = (
    "none",
    "sep_conv_3x3",
    "skip_connect",
    "dil_conv_3x3",
    "max_pool_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "dil_conv_5x5",
)
RELAXATIONS = ("gumbel", "gumbel_hard")
VARIABLES = ("C", "L", "batch", "n_ops")
FULL = {
    "base": {"C": 8, "L": 5, "batch": 32, "n_ops": 8},
    "C": [4, 8, 16],
    "L": [3, 5, 8],
    "batch": [16, 32, 64],
    "n_ops": [2, 4, 6, 8],
}
QUICK = {  # 4 ops at the base: gumbel_hard's trace (a switch per edge) is the slow part
    "base": {"C": 4, "L": 3, "batch": 16, "n_ops": 4},
    "C": [4, 8],
    "L": [3, 5],
    "batch": [16, 32],
    "n_ops": [2, 4],
}


def points(grid: dict) -> list[dict]:
    """Distinct configs of the sweep (the base shared by every variable), both relaxations."""
    seen, out = set(), []
    for var in VARIABLES:
        for value in grid[var]:
            cfg = {**grid["base"], var: value}
            for relaxation in RELAXATIONS:
                key = _key({**cfg, "relaxation": relaxation})
                if key not in seen:
                    seen.add(key)
                    out.append({**cfg, "relaxation": relaxation})
    return out


def _key(r: dict) -> tuple:
    return (r["C"], r["L"], r["batch"], r["n_ops"], r["relaxation"])


def _save(rows: list[dict], path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    os.replace(tmp, path)


def sweep(var: str, grid: dict, rows: list[dict], relaxation: str) -> list[dict]:
    """Rows of `relaxation` varying `var` with the others at the base, sorted by `var`."""
    base = grid["base"]
    out = [
        r
        for r in rows
        if r["relaxation"] == relaxation
        and all(r[v] == base[v] for v in VARIABLES if v != var)
        and r[var] in grid[var]
    ]
    return sorted(out, key=lambda r: r[var])


def slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log y against log x; None with fewer than two points."""
    if len(xs) < 2:
        return None
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_slopes(grid: dict, rows: list[dict]) -> None:
    print("\ngrowth exponents (log-log slopes; 1 = linear, 0 = flat)")
    print(f"{'variable':<8} {'relaxation':<12} {'ms/step':>8} {'tensors MB':>10}  points")
    for var in VARIABLES:
        for relaxation in RELAXATIONS:
            s = sweep(var, grid, rows, relaxation)
            xs = [r[var] for r in s]
            t = slope(xs, [r["ms_per_step"] for r in s])
            m = slope(xs, [r["step_tensors_mb"] for r in s])
            print(f"{var:<8} {relaxation:<12} {_fmt(t):>8} {_fmt(m):>10}  {xs}")


def plot(grid: dict, rows: list[dict], path: str) -> None:
    """Two rows (ms/step, tensors MB) by four columns (C, L, batch, ops), log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    metrics = (("ms_per_step", "ms/step"), ("step_tensors_mb", "tensors MB"))
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5), squeeze=False)
    colors = {"gumbel": "tab:blue", "gumbel_hard": "tab:orange"}
    for col, var in enumerate(VARIABLES):
        for row, (metric, label) in enumerate(metrics):
            ax = axes[row][col]
            for relaxation in RELAXATIONS:
                s = sweep(var, grid, rows, relaxation)
                if s:
                    xs, ys = [r[var] for r in s], [r[metric] for r in s]
                    ax.plot(xs, ys, "o-", color=colors[relaxation], label=relaxation)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(grid[var], [str(v) for v in grid[var]])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(ScalarFormatter())
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(var)
            ax.set_ylabel(label)
            ax.grid(True, which="major", alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    base = ", ".join(f"{k}={v}" for k, v in grid["base"].items())
    fig.suptitle(f"SNAS supernet step, one variable at a time (others at base {base})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, smaller points, 2 steps")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 3; quick 2)")
    parser.add_argument("--resume", action="store_true", help="skip points in scaling.json")
    parser.add_argument("--plot_only", action="store_true", help="redraw from scaling.json")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
        help="directory of scaling.json and scaling.png",
    )
    args = parser.parse_args()
    grid = QUICK if args.quick else FULL
    steps = args.steps or (2 if args.quick else 3)
    os.makedirs(args.output, exist_ok=True)
    json_path = os.path.join(args.output, "scaling.json")
    png_path = os.path.join(args.output, "scaling.png")
    rows: list[dict] = []
    if (args.resume or args.plot_only) and os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as f:
            rows = json.load(f)
    if not args.plot_only:
        done = {_key(r) for r in rows}
        todo = points(grid)
        t_start = time.perf_counter()
        for i, p in enumerate(todo, 1):
            label = f"[{i}/{len(todo)}] C={p['C']} L={p['L']} batch={p['batch']} "
            label += f"ops={p['n_ops']} {p['relaxation']}"
            if _key(p) in done:
                print(f"{label}: in {json_path}, skipped", flush=True)
                continue
            t0 = time.perf_counter()
            try:
                r = run_config(
                    p["C"],
                    p["L"],
                    p["batch"],
                    p["relaxation"],
                    steps,
                    ops=list(OP_ORDER[: p["n_ops"]]),
                    threads=args.threads,
                    reference=False,
                )
            except RuntimeError as e:
                print(f"{label}: failed: {e}", flush=True)
                continue
            rows.append(r)
            _save(rows, json_path)
            print(
                f"{label}: {r['ms_per_step']:.1f} ms/step, {r['step_tensors_mb']} tensors MB, "
                f"{r['peak_rss_mb']} peak MB, trace {r['trace_and_first_step_s']:.0f} s "
                f"({time.perf_counter() - t0:.0f} s; {time.perf_counter() - t_start:.0f} s total)",
                flush=True,
            )
    if not rows:
        print(f"no rows (looked in {json_path})")
        return
    print_slopes(grid, rows)
    plot(grid, rows, png_path)
    print(f"\nwrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
