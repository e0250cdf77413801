"""Time of one SNAS supernet step on one device against MirroredStrategy over logical CPUs.

    python benchmarks/distribution_step.py                    # C=8 L=5 batch 32, 2 replicas
    python benchmarks/distribution_step.py --sizes=8,5,32 --replicas=2 --steps=5

Each configuration runs in a fresh subprocess (the CPU is split into logical devices before
TensorFlow starts): build the cell supernet (8 ops, N=4, gumbel) on 32x32x3 inputs, trace
the step, run two warm-up steps, then `--steps` timed steps on one batch of the global
size. ``none`` is the plain single-device step; ``mirrored`` the same global batch split
over `--replicas` logical CPUs (synced batch norm, all-reduced gradients). The logical
devices share the machine's cores, so this measures the overhead of the distributed step,
not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def child(c: int, layers: int, batch: int, distribution: str, replicas: int, steps: int) -> dict:
    from kerasnas import distribute

    if distribution != "none":
        distribute.split_cpu(replicas)
    import contextlib

    import numpy as np
    import tensorflow as tf

    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.snas import SNASConfig, SNASTrainer

    strategy = distribute.make_strategy(distribution)
    space = CellSpace((32, 32, 3), 10, init_channels=c, layers=layers, nodes=4)
    with strategy.scope() if strategy else contextlib.nullcontext():
        net = space.build_supernet("gumbel", seed=0)
    config = SNASConfig(epochs=10, batch_size=batch)
    trainer = SNASTrainer(net, config, verbose=0, strategy=strategy)
    trainer.on_epoch_begin(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=batch).astype("int32")
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    if strategy is None:
        step = tf.function(trainer.train_step)
    else:
        ds = strategy.experimental_distribute_dataset(ds.unbatch().batch(batch))
        step = distribute.distribute_step(strategy, trainer.train_step, False, ds.element_spec)
    batches = iter(ds)
    t0 = time.perf_counter()
    step(*next(batches))["loss"].numpy()
    trace_s = time.perf_counter() - t0
    step(*next(batches))["loss"].numpy()
    t0 = time.perf_counter()
    for _ in range(steps):
        out = step(*next(batches))
    out["loss"].numpy()
    ms = (time.perf_counter() - t0) / steps * 1000
    return {
        "C": c,
        "L": layers,
        "batch": batch,
        "distribution": distribution,
        "replicas": 1 if strategy is None else strategy.num_replicas_in_sync,
        "ms_per_step": round(ms, 1),
        "trace_and_first_step_s": round(trace_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="8,5,32", help="C,L,batch triples separated by ';'")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        c, layers, batch, distribution = args.child.split(",")
        result = child(int(c), int(layers), int(batch), distribution, args.replicas, args.steps)
        print(json.dumps(result))
        return
    print(
        f"{'C':>3} {'L':>2} {'batch':>5} {'distribution':<12} {'replicas':>8} {'ms/step':>9} "
        f"{'trace s':>8}",
        flush=True,
    )
    for size in args.sizes.split(";"):
        base = None
        for distribution in ("none", "mirrored"):
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    f"--child={size},{distribution}",
                    f"--replicas={args.replicas}",
                    f"--steps={args.steps}",
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"{size},{distribution} failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            base = base or r["ms_per_step"]
            ratio = r["ms_per_step"] / base
            print(
                f"{r['C']:>3} {r['L']:>2} {r['batch']:>5} {r['distribution']:<12} "
                f"{r['replicas']:>8} {r['ms_per_step']:>9.1f} {r['trace_and_first_step_s']:>8.1f}"
                f"  ({ratio:.2f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
