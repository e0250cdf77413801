"""Where the time of one SNAS supernet step goes: op types ranked by their share.

    python benchmarks/profile_step.py                            # C=8 L=5 batch 32, gumbel
    python benchmarks/profile_step.py --size=16,8,64 --relaxation=gumbel_hard --top=25

Builds the cell supernet (32x32x3 inputs, N=4, the 8 DARTS/SNAS ops), traces the joint
weights+logits step, warms it up, then records `--steps` steps with TensorFlow's profiler
(`tf.profiler.experimental`, the trace TensorBoard's profile plugin shows) and sums the
executed TensorFlow ops' durations by op type from the trace (the XPlane of the host).
Each op's time is its kernel's wall time on its thread; with 2 threads the kernels of
independent ops overlap, so the shares are of summed op time, which can exceed the step's
wall time. The trace directory is kept (`--logdir`) for `tensorboard --logdir`.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import tempfile
import time


def _op_type(name: str) -> str:
    """TensorFlow op events are named ``<node name>:<op type>``; oneDNN kernels carry a
    ``_Mkl``/``_MklNative`` prefix, which is dropped so op types group together."""
    op = name.rsplit(":", 1)[-1]
    for prefix in ("_MklNative", "_Mkl"):
        if op.startswith(prefix):
            op = op[len(prefix) :]
    return op


def op_times(logdir: str) -> tuple[dict[str, float], dict[str, int]]:
    """Summed duration (ms) and count of each TensorFlow op type in the newest trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        raise SystemExit(f"no *.xplane.pb trace under {logdir}")
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    ms: dict[str, float] = collections.defaultdict(float)
    count: dict[str, int] = collections.defaultdict(int)
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {k: m.name for k, m in plane.event_metadata.items()}
        for line in plane.lines:
            for event in line.events:
                name = names.get(event.metadata_id, "")
                if ":" not in name or "::" in name or name.startswith(("tf_", "Iterator")):
                    continue  # executor, runtime and input-pipeline activity
                op = _op_type(name)
                if not op[:1].isupper():
                    continue  # not a TensorFlow op event (runtime activity)
                ms[op] += event.duration_ps / 1e9
                count[op] += 1
    return dict(ms), dict(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="8,5,32", help="C,L,batch")
    parser.add_argument("--relaxation", default="gumbel", choices=["gumbel", "gumbel_hard"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--logdir", default=None, help="trace directory (default: a temp dir)")
    args = parser.parse_args()

    import numpy as np
    import tensorflow as tf

    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.snas import SNASConfig, SNASTrainer

    c, layers, batch = (int(v) for v in args.size.split(","))
    space = CellSpace((32, 32, 3), 10, init_channels=c, layers=layers, nodes=4)
    net = space.build_supernet(args.relaxation, seed=0)
    trainer = SNASTrainer(net, SNASConfig(epochs=10, batch_size=batch), verbose=0)
    trainer.on_epoch_begin(0)
    step = tf.function(trainer.train_step)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, 32, 32, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    print(f"tracing C={c} L={layers} batch {batch} {args.relaxation} ...", flush=True)
    for _ in range(2):
        step(x, y)["loss"].numpy()
    logdir = args.logdir or tempfile.mkdtemp(prefix="kerasnas_profile_")
    tf.profiler.experimental.start(logdir)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)["loss"].numpy()
    wall = (time.perf_counter() - t0) / args.steps * 1000
    tf.profiler.experimental.stop()
    ms, count = op_times(logdir)
    total = sum(ms.values())
    print(
        f"{args.steps} steps profiled: {wall:,.0f} ms wall per step, {total / args.steps:,.0f} "
        f"ms of op time per step ({total / args.steps / wall:.2f} ops busy on average); "
        f"trace in {logdir}"
    )
    print(f"{'op type':<40} {'ms/step':>9} {'share':>7} {'calls/step':>10}")
    for op, t in sorted(ms.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{op:<40} {t / args.steps:>9.1f} {t / total:>7.1%} {count[op] / args.steps:>10.0f}")


if __name__ == "__main__":
    main()
