"""How long ``import kerasnas`` and a command's ``--help`` and flag typo take, and what the
import loads, in fresh processes.

    python benchmarks/import_time.py                       # this checkout
    python benchmarks/import_time.py --repeats=7 --path=/other/checkout

Each repeat is a new ``python -c "import kerasnas"`` process, started in the checkout with it
on ``PYTHONPATH``, so that checkout's package is the one imported. Its wall time includes the
interpreter's start (a ``python -c "pass"`` row gives that baseline). The command rows run
``python -m kerasnas.cli.search --help`` and the same with a mistyped flag (``--epoch=3``):
a command parses its flags before importing TensorFlow, so both answer without it. Also
prints, from one process, the number of modules loaded, whether keras-tuner and grpc were
imported, and the slowest imports by ``python -X importtime`` (cumulative microseconds,
top 8). Quote the medians, on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

PROBE = (
    "import sys, kerasnas; "
    "print(len(sys.modules), 'keras_tuner' in sys.modules, 'grpc' in sys.modules, "
    "sum(m.startswith('kerasnas') for m in sys.modules))"
)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(args: list[str], env: dict[str, str], cwd: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--path", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": args.path}
    import keras
    import tensorflow as tf

    print(
        f"{_cpu()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}; checkout {args.path}"
    )
    _run(["-c", "import kerasnas"], env, args.path)  # warm the file cache
    search = ["-m", "kerasnas.cli.search"]
    for label, argv in (
        ("python -c pass", ["-c", "pass"]),
        ("import kerasnas", ["-c", "import kerasnas"]),
        ("search --help", [*search, "--help"]),
        ("search --epoch=3", [*search, "--output_dir=x", "--epoch=3"]),
    ):
        times = [_run(argv, env, args.path) for _ in range(args.repeats)]
        print(
            f"{label:<16} median {statistics.median(times):6.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeats} processes)"
        )
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        cwd=args.path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    print(f"modules loaded {out[0]} (kerasnas: {out[3]}); keras_tuner {out[1]}, grpc {out[2]}")
    trace = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import kerasnas"],
        env=env,
        cwd=args.path,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    rows = []
    for line in trace.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[12:].split("|")
            if cumulative.strip().isdigit() and not name[1:].startswith(" "):  # top level
                rows.append((int(cumulative), name.strip()))
    top = sorted(rows, reverse=True)[:8]
    print("slowest imports (cumulative us): " + ", ".join(f"{n} {c:,}" for c, n in top))


if __name__ == "__main__":
    main()
