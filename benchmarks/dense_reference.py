"""Attainable FLOP/s of TensorFlow on this machine: a dense conv step and a large matmul.

    python benchmarks/dense_reference.py                       # default sizes, 2 threads
    python benchmarks/dense_reference.py --total_flop=1.2e10   # conv sized to 12 GFLOP
    python benchmarks/dense_reference.py --dtype=bfloat16 --json=ref.json

Conv: a 3x3 conv, 64 -> 64 channels, 32x32, 'SAME', no bias, forward + backward (gradients
of input and kernel) in one ``tf.function``. Its FLOP follow the convention of
``step_flops.py``: mult-adds of the forward x 2 x 3. Given ``total_flop`` (the FLOP of a
supernet step), the batch is chosen so that the calls of one timed run do that many FLOP
(batch capped at 256, the rest by repeated calls), so the reference works at the same scale
as the step it is compared with. Matmul: 2 n^3 FLOP for an n x n x n product.
"""

from __future__ import annotations

import argparse
import json
import math
import time

CONV_HW, CONV_C, CONV_K = 32, 64, 3
CONV_MACS_PER_IMAGE = CONV_HW * CONV_HW * CONV_K * CONV_K * CONV_C * CONV_C
CONV_FLOP_PER_IMAGE = CONV_MACS_PER_IMAGE * 2 * 3
MAX_BATCH = 256


def set_threads(threads: int) -> None:
    """intra- and inter-op thread pools of TensorFlow (call before running any op)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _time(fn, repeat: int, min_seconds: float = 1.0) -> float:
    """Median seconds of fn() over at least `repeat` runs and `min_seconds`, after two
    warm-up runs."""
    fn()
    fn()
    times: list[float] = []
    while len(times) < repeat or sum(times) < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def conv_gflops(total_flop: float | None, dtype: str = "float32", repeat: int = 5) -> dict:
    """GFLOP/s of the dense conv step, sized to `total_flop` per timed run (None: batch 64)."""
    import tensorflow as tf

    if total_flop is None:
        batch, calls = 64, 1
    else:
        images = max(1, math.ceil(total_flop / CONV_FLOP_PER_IMAGE))
        batch = min(images, MAX_BATCH)
        calls = math.ceil(images / batch)
    rng = tf.random.Generator.from_seed(0)
    x = tf.cast(rng.normal((batch, CONV_HW, CONV_HW, CONV_C)), dtype)
    kernel = tf.Variable(tf.cast(rng.normal((CONV_K, CONV_K, CONV_C, CONV_C)) * 0.05, dtype))

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, kernel, 1, "SAME")
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        gx, gk = tape.gradient(loss, [x, kernel])
        return tf.reduce_sum(tf.cast(gx, tf.float32)) + tf.reduce_sum(tf.cast(gk, tf.float32))

    def run():
        for _ in range(calls):
            out = step(x)
        out.numpy()

    seconds = _time(run, repeat)
    flop = CONV_FLOP_PER_IMAGE * batch * calls
    return {
        "conv_batch": batch,
        "conv_calls": calls,
        "conv_gflop": round(flop / 1e9, 3),
        "conv_s": round(seconds, 4),
        "conv_gflops": round(flop / seconds / 1e9, 1),
    }


def matmul_gflops(n: int = 2048, dtype: str = "float32", repeat: int = 5) -> dict:
    """GFLOP/s of an n x n by n x n matmul (2 n^3 FLOP)."""
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(1)
    a = tf.cast(rng.normal((n, n)), dtype)
    b = tf.cast(rng.normal((n, n)), dtype)
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.cast(tf.matmul(a, b), tf.float32)))
    seconds = _time(lambda: mm(a, b).numpy(), repeat)
    return {
        "matmul_n": n,
        "matmul_s": round(seconds, 4),
        "matmul_gflops": round(2 * n**3 / seconds / 1e9, 1),
    }


def attainable_gflops(
    total_flop: float | None = None, dtype: str = "float32", matmul_n: int = 2048
) -> dict:
    """The conv benchmark (sized to `total_flop`) and the matmul, in this process; set the
    threads first (:func:`set_threads`). ``attainable_gflops`` is the conv figure: the
    reference for a supernet step of `total_flop` FLOP."""
    row = {"dtype": dtype, **conv_gflops(total_flop, dtype)}
    if matmul_n:
        row.update(matmul_gflops(matmul_n, dtype))
    row["attainable_gflops"] = row["conv_gflops"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total_flop", type=float, default=None, help="size the conv run")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--matmul_n", type=int, default=2048, help="0 skips the matmul")
    parser.add_argument("--json", default=None, help="write the result to this path")
    args = parser.parse_args()
    set_threads(args.threads)
    row = {"threads": args.threads, **attainable_gflops(args.total_flop, args.dtype, args.matmul_n)}
    text = json.dumps(row)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text, flush=True)


if __name__ == "__main__":
    main()
