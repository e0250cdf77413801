"""Trial-based search end to end: full training against each cheaper estimator, at a fixed
wall-clock budget, several seeds (issue 19's comparison).

    python benchmarks/end_to_end.py                       # full 200 s, the others half
    python benchmarks/end_to_end.py --budget=300 --seeds=0,1,2 --only=full,proxy
    python benchmarks/end_to_end.py --report              # the table of the finished runs

Every run is one ``kerasnas-search`` process on the nasrl space and digits (a subprocess,
so each pays TensorFlow's start-up as a user does), timed from start to exit. ``full`` gets
``--budget`` seconds of trials (``--time_budget``) and runs first; every other estimator's
``--time_budget`` is set from that run (:func:`half_budget`) so that its whole command takes
at most half of full's wall time: ``--retrain_top=2`` (the final full training of the two
best estimates of ``proxy`` and ``hypernet``, whose best model is not fully trained) runs
after the search and counts in the wall time, not in ``--time_budget``; the hypernetwork's
training happens inside the first trial, so it counts in both. Each run's ``metrics.json``
gives the best child's test accuracy (of the retrained child where there is one). Results go to
``--out`` (one directory per run; a finished run is not run again) and the table is
printed at the end: mean and range over the seeds of the test accuracy, the wall time and
the trials.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

COMMON = [
    "--search_space=nasrl",
    "--trial_epochs=10",
    "--max_trials=10000",  # the time budget ends the search
    "--verbose=1",
]
RETRAIN_TOP = 2
# name -> (strategy, extra flags, trials retrained after the search)
CONFIGS = {
    "full": ("evolution", ["--estimator=full"], 0),
    "proxy": (
        "evolution",
        ["--estimator=proxy", "--proxy_epochs=2", "--proxy_data_fraction=1"],
        RETRAIN_TOP,
    ),
    "lc": ("evolution", ["--estimator=lc"], 0),
    "morphism": ("lemonade", ["--estimator=morphism", "--morphism_epochs=2"], 0),
    "hypernet": ("evolution", ["--estimator=hypernet"], RETRAIN_TOP),
}


def half_budget(full: dict, retrain: int) -> float:
    """Seconds of trials for a cheaper estimator, so that its whole command takes at most half
    the wall time of the same seed's `full` run: half of that wall time, less full's overhead
    outside its trials (start-up, data, final evaluation), one full trial (the last trial
    may end after the budget) and the `retrain` full trials after the search."""
    trial = full["trial_seconds"] / full["trials"]
    overhead = full["wall_seconds"] - full["trial_seconds"]
    return full["wall_seconds"] / 2 - overhead - (1 + retrain) * trial


def _run(name: str, seed: int, budget: float, out: str) -> dict:
    """One command (``budget``: its ``--time_budget``), or its cached row."""
    run_dir = os.path.join(out, f"{name}_s{seed}")
    done = os.path.join(run_dir, "run.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    strategy, flags, retrain = CONFIGS[name]
    if retrain:
        flags = [*flags, f"--retrain_top={retrain}"]
    argv = [
        "kerasnas-search",
        f"--strategy={strategy}",
        *COMMON,
        *flags,
        f"--time_budget={budget:.1f}",
        f"--seed={seed}",
        f"--output_dir={os.path.join(run_dir, 'search')}",
        "--overwrite",
    ]
    os.makedirs(run_dir, exist_ok=True)
    print(" ".join(argv), flush=True)
    t0 = time.perf_counter()
    with open(os.path.join(run_dir, "log.txt"), "w", encoding="utf-8") as log:
        code = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if code:
        sys.exit(f"{name} seed {seed} failed (exit {code}): see {run_dir}/log.txt")
    with open(os.path.join(run_dir, "search", "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    row = {
        "name": name,
        "seed": seed,
        "argv": argv,
        "wall_seconds": round(wall, 1),
        "test_accuracy": metrics.get("retrained_test_accuracy", metrics["best_test_accuracy"]),
        "search_test_accuracy": metrics["best_test_accuracy"],
        "trials": metrics["trials"],
        "trial_seconds": metrics["trial_seconds"],
        "time_budget": budget,
        "params": metrics["best_params"],
    }
    with open(done, "w", encoding="utf-8") as f:
        json.dump(row, f, indent=1)
    print(
        f"  {name} seed {seed}: test {row['test_accuracy']:.4f}, {row['trials']} trials, "
        f"{wall:.0f} s",
        flush=True,
    )
    return row


def _report(rows: list[dict]) -> None:
    import numpy as np

    full = {r["seed"]: r for r in rows if r["name"] == "full"}
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["name"], []).append(r)
    print(
        f"{'estimator':<10} {'seeds':>5} {'test acc mean':>13} {'range':>15} "
        f"{'vs full':>8} {'wall s mean':>11} {'wall / full':>11} {'trials mean':>11}"
    )
    for name, rs in by.items():
        acc = np.array([r["test_accuracy"] for r in rs])
        wall = np.array([r["wall_seconds"] for r in rs])
        trials = np.array([r["trials"] for r in rs])
        paired = [(r, full[r["seed"]]) for r in rs if r["seed"] in full]
        ratio = [r["wall_seconds"] / f["wall_seconds"] for r, f in paired]
        diff = [r["test_accuracy"] - f["test_accuracy"] for r, f in paired]
        print(
            f"{name:<10} {len(rs):>5} {acc.mean():>13.4f} "
            f"{f'{acc.min():.4f}-{acc.max():.4f}':>15} "
            f"{(min(diff) if diff else float('nan')):>+8.4f} {wall.mean():>11.0f} "
            f"{(max(ratio) if ratio else float('nan')):>11.2f} {trials.mean():>11.1f}"
        )
    print("vs full: the worst seed's test accuracy minus full's; wall / full: the worst seed's")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=200.0, help="full's seconds of trials")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default=",".join(CONFIGS), help="estimators, comma separated")
    parser.add_argument("--out", default="end_to_end_runs")
    parser.add_argument("--report", action="store_true", help="only print the table")
    args = parser.parse_args()
    names = sorted((n for n in args.only.split(",") if n), key=lambda n: n != "full")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"--only: unknown estimator {unknown[0]!r}; known: {', '.join(CONFIGS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    from kerasnas.latency import cpu_model

    print(f"{cpu_model()} ({platform.machine()}), python {platform.python_version()}")
    rows = []
    for seed in seeds:
        for name in names:
            if args.report:
                path = os.path.join(args.out, f"{name}_s{seed}", "run.json")
                if os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        rows.append(json.load(f))
            elif name == "full":
                rows.append(full := _run(name, seed, args.budget, args.out))
            else:
                if "full" not in names:
                    parser.error("--only: the other estimators' budgets come from full's run")
                budget = half_budget(full, CONFIGS[name][2])
                rows.append(_run(name, seed, budget, args.out))
    _report(rows)


if __name__ == "__main__":
    main()
