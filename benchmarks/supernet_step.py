"""Time and peak memory of one SNAS supernet training step: gumbel vs gumbel_hard.

    python benchmarks/supernet_step.py                       # the two sizes of the issue
    python benchmarks/supernet_step.py --sizes=8,5,32 --steps=5

Each configuration runs in a fresh subprocess (so peak memory is its own): build the cell
supernet (8 ops, N=4) on 32x32x3 inputs, trace the joint weights+logits step, run `--steps`
timed steps after two warm-up steps. Prints ms per step, images per second, and three
memory figures of that process: "TF MB", resident memory right after importing TensorFlow;
"peak MB", the peak resident memory of the whole process (graph building and tracing
included); "step MB", the peak resident memory while the timed steps ran (the kernel's
high-water mark is reset after warm-up through /proc/self/clear_refs; memory the allocator
kept from tracing stays resident and counts); "tensors MB", the peak of TensorFlow's CPU
allocator during the timed steps (weights, activations, gradients, optimizer slots: the
step's own memory). The subprocesses run with TF_CPU_ALLOCATOR_USE_BFC=true, which makes
that allocator report its statistics.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _vm_hwm_mb() -> float | None:
    """The process' resident high-water mark (VmHWM) in MB; None where /proc lacks it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Resets VmHWM to the current resident size (Linux >= 4.0); False where unsupported."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child(c: int, layers: int, batch: int, relaxation: str, steps: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.snas import SNASConfig, SNASTrainer

    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    space = CellSpace((32, 32, 3), 10, init_channels=c, layers=layers, nodes=4)
    t0 = time.perf_counter()
    net = space.build_supernet(relaxation, seed=0)
    build_s = time.perf_counter() - t0
    trainer = SNASTrainer(net, SNASConfig(epochs=10, batch_size=batch), verbose=0)
    trainer.on_epoch_begin(0)
    step = tf.function(trainer.train_step)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    t0 = time.perf_counter()
    step(x, y)["loss"].numpy()
    trace_s = time.perf_counter() - t0
    step(x, y)["loss"].numpy()
    reset = _reset_hwm()
    tf.config.experimental.reset_memory_stats("CPU:0")
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(x, y)
    out["loss"].numpy()
    ms = (time.perf_counter() - t0) / steps * 1000
    return {
        "C": c,
        "L": layers,
        "batch": batch,
        "relaxation": relaxation,
        "ms_per_step": round(ms, 1),
        "images_per_s": round(batch / ms * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tf_import_rss_mb": round(base_rss),
        "step_peak_rss_mb": round(_vm_hwm_mb()) if reset and _vm_hwm_mb() else None,
        "step_tensors_mb": round(tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20),
        "build_s": round(build_s, 1),
        "trace_and_first_step_s": round(trace_s, 1),
        "params": net.count_params(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="8,5,32;16,8,64", help="C,L,batch triples separated by ';'"
    )
    parser.add_argument("--relaxations", default="gumbel,gumbel_hard")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        c, layers, batch, relaxation = args.child.split(",")
        print(json.dumps(child(int(c), int(layers), int(batch), relaxation, args.steps)))
        return
    print(
        f"{'C':>3} {'L':>2} {'batch':>5} {'relaxation':<12} {'ms/step':>9} {'img/s':>7} "
        f"{'TF MB':>6} {'peak MB':>8} {'step MB':>8} {'tensors MB':>10} {'trace s':>8}",
        flush=True,
    )
    for size in args.sizes.split(";"):
        for relaxation in args.relaxations.split(","):
            proc = subprocess.run(
                [sys.executable, __file__, f"--child={size},{relaxation}", f"--steps={args.steps}"],
                capture_output=True,
                text=True,
                env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"},
            )
            if proc.returncode != 0:
                print(
                    f"{size} {relaxation}: failed: {proc.stderr.strip().splitlines()[-1]}",
                    flush=True,
                )
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"{r['C']:>3} {r['L']:>2} {r['batch']:>5} {r['relaxation']:<12} "
                f"{r['ms_per_step']:>9.1f} {r['images_per_s']:>7.1f} {r['tf_import_rss_mb']:>6} "
                f"{r['peak_rss_mb']:>8} {r['step_peak_rss_mb'] or '-':>8} "
                f"{r['step_tensors_mb']:>10} "
                f"{r['trace_and_first_step_s']:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
