"""Child size against the SNAS resource penalty: one digits search per lambda.

    python benchmarks/resource_lambda.py                          # lambdas 0, 0.05, 0.5
    python benchmarks/resource_lambda.py --lambdas=0,0.1 --resource=flops --jobs=2

Runs ``kerasnas-search`` (default budget, one seed) once per ``--resource_lambda`` into
``--output_dir/lambda_<value>`` and prints, per lambda: the child's params, mult-adds,
surviving edges, test accuracy without retraining, and the search time. With ``--jobs=2``
two searches run at once, each on one thread (their times are then not comparable with a
2-thread run). ``--repeat`` runs the first lambda a second time in another directory and
reports whether both runs produced the same genotype (determinism given the seed).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys


def search(output_dir: str, extra: list[str], threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["TF_NUM_INTRAOP_THREADS"] = env["TF_NUM_INTEROP_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "kerasnas.cli.search", f"--output_dir={output_dir}", "--verbose=0"]
    proc = subprocess.run(cmd + extra, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd + extra)} failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(output_dir, "metrics.json"), encoding="utf-8") as f:
        return json.load(f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lambdas", default="0,0.05,0.5")
    parser.add_argument("--resource", default="params", choices=["params", "flops", "mac"])
    parser.add_argument("--output_dir", default="lambda_runs")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--repeat", action="store_true")
    parser.add_argument("extra", nargs="*", help="more kerasnas-search flags, after --")
    args = parser.parse_args()

    lambdas = [float(v) for v in args.lambdas.split(",")]
    runs = {
        f"lambda_{v:g}": [f"--resource_lambda={v}", f"--resource={args.resource}", *args.extra]
        for v in lambdas
    }
    if args.repeat:
        runs[f"lambda_{lambdas[0]:g}_repeat"] = runs[f"lambda_{lambdas[0]:g}"]
    threads = 1 if args.jobs > 1 else None
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            name: pool.submit(search, os.path.join(args.output_dir, name), extra, threads)
            for name, extra in runs.items()
        }
        results = {name: f.result() for name, f in futures.items()}

    print(
        f"{'run':<22} {'params':>8} {'mult-adds':>10} {'edges n/r':>9} "
        f"{'supernet valid':>14} {'child test':>10} {'search s':>8}"
    )
    for name, m in results.items():
        edges = f"{m['child_edges']['normal']}/{m['child_edges']['reduce']}"
        print(
            f"{name:<22} {m['child_params']:>8,} {m['child_flops']:>10,} {edges:>9} "
            f"{m['supernet_valid_accuracy']:>14.4f} {m['child_test_accuracy']:>10.4f} "
            f"{m['search_seconds']:>8.0f}"
        )
    if args.repeat:
        first = os.path.join(args.output_dir, f"lambda_{lambdas[0]:g}", "genotype.json")
        again = os.path.join(args.output_dir, f"lambda_{lambdas[0]:g}_repeat", "genotype.json")
        with open(first, encoding="utf-8") as a, open(again, encoding="utf-8") as b:
            same = json.load(a) == json.load(b)
        print(f"same seed twice -> same genotype: {same}")


if __name__ == "__main__":
    main()
