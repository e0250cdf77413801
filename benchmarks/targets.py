"""Does the derived child land on its cost target? Child cost / target per run.

    python benchmarks/targets.py                                  # params and latency, 3 seeds
    python benchmarks/targets.py --params=8k,13k,21k --init_channels=4 --latency= --epochs=15
    python benchmarks/targets.py --params= --latency=0.03ms,0.05ms,0.07ms --epochs=15

For every resource, seed and target: one ``kerasnas-search --target=...`` on digits (the
quick start's supernet and budget unless flags say otherwise), run through
``kerasnas-pareto --retrain_epochs=0`` (one front per resource and seed, ``--jobs``
searches at once, one thread each), then prints a table of the child's measured cost (params
counted; latency: its float TFLite model timed with LiteRT at 1 thread, in the search
process right after the search) over the target, and how many runs are within +-15%.
Results go under ``--output_dir`` (a rerun resumes: finished points are read back).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time


def run_front(output_dir: str, targets: str, seed: int, args) -> list[dict]:
    cmd = [
        sys.executable,
        "-m",
        "kerasnas.cli.pareto",
        f"--output_dir={output_dir}",
        f"--targets={targets}",
        f"--seed={seed}",
        f"--epochs={args.epochs}",
        f"--init_channels={args.init_channels}",
        f"--jobs={args.jobs}",
        "--retrain_epochs=0",
        "--verbose=1",
    ]
    if os.path.exists(os.path.join(output_dir, "settings.json")):
        cmd.append("--resume")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    with open(os.path.join(output_dir, "pareto.json"), encoding="utf-8") as f:
        return json.load(f)["points"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="25k,40k,70k")
    parser.add_argument("--latency", default="0.03ms,0.05ms,0.07ms")
    parser.add_argument("--flops", default="")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--init_channels", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output_dir", default="target_runs")
    args = parser.parse_args()

    from kerasnas.latency import cpu_model

    print(
        f"{cpu_model()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"{_versions()}; {args.epochs} search epochs, {args.jobs} searches at once",
        flush=True,
    )
    rows = []
    t0 = time.perf_counter()
    for resource in ("params", "flops", "latency"):
        values = getattr(args, resource)
        if not values:
            continue
        targets = ",".join(f"{resource}:{v}" for v in values.split(","))
        for seed in (int(s) for s in args.seeds.split(",")):
            out = os.path.join(args.output_dir, f"{resource}_seed{seed}")
            for p in run_front(out, targets, seed, args):
                rows.append({**p, "seed": seed})
                print(
                    f"{p['target']:>18} seed {seed}: child cost / target "
                    f"{p['target_ratio']:.3f} (before any projection {_ratio(p)}), "
                    f"test accuracy {p['accuracy']:.3f}, "
                    f"search {p['search_seconds']:.0f} s",
                    flush=True,
                )
    print(f"\n{time.perf_counter() - t0:.0f} s in all; child cost / target:")
    print("| target | " + " | ".join(f"seed {s}" for s in args.seeds.split(",")) + " |")
    print("| --- |" + " --- |" * len(args.seeds.split(",")))
    for target in dict.fromkeys(r["target"] for r in rows):
        ratios = [f"{r['target_ratio']:.3f}" for r in rows if r["target"] == target]
        print(f"| {target} | " + " | ".join(ratios) + " |")
    within = sum(abs(r["target_ratio"] - 1) <= 0.15 for r in rows)
    print(f"\nwithin +-15%: {within} of {len(rows)} runs")
    print(
        "\nthe controller alone: the child before any projection "
        "(kerasnas.search_spaces.projection; in the search or at its end):"
    )
    for target in dict.fromkeys(r["target"] for r in rows):
        ratios = [_ratio(r) for r in rows if r["target"] == target]
        print(f"| {target} | " + " | ".join(ratios) + " |")
    alone = [r.get("controller_target_ratio") or r["target_ratio"] for r in rows]
    within = sum(abs(x - 1) <= 0.15 for x in alone)
    print(f"the controller alone within +-15%: {within} of {len(rows)} runs")


def _ratio(point: dict) -> str:
    """The child's cost / target (predicted) before any projection, and the epoch of the
    first projection in the search."""
    value = point.get("controller_target_ratio")
    moves = point.get("search_projections") or []
    if value is not None and moves:
        return f"{value:.3f} at epoch {moves[0]['epoch']}"
    return "n/a" if value is None else f"{value:.3f}"


def _versions() -> str:
    import keras
    import tensorflow as tf

    return f"TensorFlow {tf.__version__}, Keras {keras.__version__}"


if __name__ == "__main__":
    main()
