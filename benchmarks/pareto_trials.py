"""NSGA-II against random search at an equal number of trials: the (params, accuracy) front
of each on digits (issue 20's multi-objective trial-based search).

    python benchmarks/pareto_trials.py --out=/tmp/pareto_trials          # run, then report
    python benchmarks/pareto_trials.py --out=/tmp/pareto_trials --report # the finished runs

Every run is one ``kerasnas-search`` process (nasrl space, ``--front_export`` so that both
write ``pareto.csv``); a finished run is not run again. The report gives, per strategy, the
hypervolume of the front of all its trials in (log10 params, 1 - accuracy), to minimise, with
the reference point (log10 of the largest parameter count of any trial of either run,
accuracy 0): once with the test accuracy of each trial's child (``pareto.csv``), once with
the validation accuracy the search saw (``history.csv``); the number of front points; the
wall time.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kerasnas import pareto  # noqa: E402

STRATEGIES = ("nsga2", "random")


def run(out: str, strategy: str, args: argparse.Namespace) -> None:
    folder = os.path.join(out, strategy)
    if os.path.exists(os.path.join(folder, "metrics.json")):
        return
    command = [
        sys.executable,
        "-m",
        "kerasnas.cli.search",
        f"--output_dir={folder}",
        f"--strategy={strategy}",
        "--search_space=nasrl",
        f"--max_trials={args.max_trials}",
        f"--trial_epochs={args.trial_epochs}",
        f"--front_export={args.front_export}",
        f"--seed={args.seed}",
        "--verbose=1",
        "--overwrite",
    ]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": ROOT}
    subprocess.run(command, check=True, env=env)
    with open(os.path.join(out, f"{strategy}.wall.json"), "w", encoding="utf-8") as f:
        json.dump({"wall_seconds": round(time.perf_counter() - t0, 1)}, f)


def _history(folder: str) -> list[tuple[float, float]]:
    with open(os.path.join(folder, "history.csv"), encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "COMPLETED"]
    return [(float(r["params"]), float(r["val_accuracy"])) for r in rows]


def report(out: str) -> dict:
    points = {}
    for s in STRATEGIES:
        rows = pareto.read_csv(os.path.join(out, s, "pareto.csv"))
        points[s] = {
            "test": [(r["child_params"], r["accuracy"]) for r in rows],
            "valid": _history(os.path.join(out, s)),
        }
    largest = max(p for s in STRATEGIES for p, _ in points[s]["test"])
    reference = (math.log10(largest), 1.0)
    result = {
        "reference": {"params": largest, "accuracy": 0.0},
        "cpu": platform.processor() or platform.machine(),
    }
    for s in STRATEGIES:
        entry = {}
        for split in ("test", "valid"):
            pts = points[s][split]
            f = [(math.log10(p), 1 - a) for p, a in pts]
            front = pareto.front_indices([p for p, _ in pts], [a for _, a in pts])
            entry[split] = {
                "hypervolume": round(pareto.hypervolume(f, reference), 4),
                "front_points": len(front),
                "front": [(int(pts[i][0]), round(pts[i][1], 4)) for i in front],
            }
        entry["trials"] = len(points[s]["test"])
        wall = os.path.join(out, f"{s}.wall.json")
        if os.path.exists(wall):
            with open(wall, encoding="utf-8") as f:
                entry.update(json.load(f))
        result[s] = entry
    print(json.dumps(result, indent=1))
    with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/pareto_trials")
    parser.add_argument("--max_trials", type=int, default=30)
    parser.add_argument("--trial_epochs", type=int, default=3)
    parser.add_argument("--front_export", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", action="store_true", help="only the report")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if not args.report:
        for s in STRATEGIES:
            run(args.out, s, args)
    report(args.out)


if __name__ == "__main__":
    main()
