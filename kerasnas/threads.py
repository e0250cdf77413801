"""TensorFlow's two CPU thread pools, set once per process before its first op.

TensorFlow runs independent ops of a graph side by side on its *inter-op* pool and splits
one op over its *intra-op* pool. A supernet step is tens of thousands of small ops, many
independent (the candidate ops of every edge), and on 2 cores splitting each op costs more
than it saves: with one thread per op (``intra_op_threads=1``) and TensorFlow's default
inter-op pool (one thread per core), the one-shot steps on digits' 8x8 images run 1.4-1.8x
faster (SNAS' 227 instead of 389 ms), and on 32x32x3 images (C=8, L=5, batch 32) 1.2x
(AMD EPYC, 2 cores, TF 2.21; ``benchmarks/README.md``, "One thread per op"). That is why
the jobs set ``intra_op_threads=1`` unless told otherwise.

TensorFlow fixes both pools when the process runs its first op; :func:`configure` after that
changes nothing and says so in what it returns.
"""

from __future__ import annotations

__all__ = ["configure", "current"]


def current() -> tuple[int, int]:
    """(intra-op, inter-op) threads of this process; 0 means TensorFlow's choice (the
    environment's ``TF_NUM_INTRAOP_THREADS``/``TF_NUM_INTEROP_THREADS``, else one thread
    per core)."""
    import tensorflow as tf

    return (
        tf.config.threading.get_intra_op_parallelism_threads(),
        tf.config.threading.get_inter_op_parallelism_threads(),
    )


def configure(intra_op_threads: int = 1, inter_op_threads: int = 0) -> tuple[bool, str]:
    """Sets the pools (0: TensorFlow's choice, see :func:`current`) if this process has not
    run an op yet. Returns whether the pools are as asked, and a line saying what they are."""
    for name, value in (
        ("intra_op_threads", intra_op_threads),
        ("inter_op_threads", inter_op_threads),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    import tensorflow as tf

    wanted = (intra_op_threads, inter_op_threads)
    have = current()
    if all(w == 0 or w == h for w, h in zip(wanted, have, strict=True)):
        return True, _line(have)
    try:
        if intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
        if inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    except RuntimeError:  # the process has run an op: the pools are fixed
        return False, _line(current()) + " (fixed earlier in this process)"
    return True, _line(current())


def _line(pools: tuple[int, int]) -> str:
    intra, inter = (str(n) if n else "TensorFlow's default" for n in pools)
    return f"threads: {intra} per op; ops at once: {inter}"
