"""Time, memory and FLOP/s of one SNAS supernet training step: gumbel vs gumbel_hard.

    python benchmarks/supernet_step.py                       # the two sizes of the issue
    python benchmarks/supernet_step.py --sizes=8,5,32 --steps=5
    python benchmarks/supernet_step.py --sizes=8,5,32 --mixed_precision=bfloat16 --jit_compile

Each configuration runs in a fresh subprocess (so peak memory is its own): build the cell
supernet (8 ops unless ``--ops``, N=4) on 32x32x3 inputs, trace the joint weights+logits
step, run `--steps` timed steps after two warm-up steps. Prints ms per step, images per
second, and three memory figures of that process: "TF MB", resident memory right after
importing TensorFlow; "peak MB", the peak resident memory of the whole process (graph
building and tracing included); "step MB", the peak resident memory while the timed steps
ran (the kernel's high-water mark is reset after warm-up through /proc/self/clear_refs;
memory the allocator kept from tracing stays resident and counts); "tensors MB", the peak
of TensorFlow's CPU allocator during the timed steps (weights, activations, gradients,
optimizer slots: the step's own memory). The subprocesses run with
TF_CPU_ALLOCATOR_USE_BFC=true, which makes that allocator report its statistics.

FLOP columns (see ``step_flops.py`` for the convention): "GFLOP" of one step, "GFLOP/s"
achieved, "attain" the GFLOP/s of a dense 3x3 conv step of the same total FLOP in another
fresh subprocess (``dense_reference.py``, same threads and dtype), and "% att." their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = (
    f"{'C':>3} {'L':>2} {'batch':>5} {'ops':>3} {'relaxation':<12} {'ms/step':>9} {'img/s':>7} "
    f"{'TF MB':>6} {'peak MB':>8} {'step MB':>8} {'tensors MB':>10} {'trace s':>8} "
    f"{'GFLOP':>7} {'GFLOP/s':>8} {'attain':>7} {'% att.':>6}"
)


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


def child(
    c: int,
    layers: int,
    batch: int,
    relaxation: str,
    steps: int,
    ops: list[str] | None = None,
    jit_compile: bool = False,
    mixed_precision: str = "none",
    threads: int = 2,
) -> dict:
    """Runs one configuration in this process and returns its row (call in a fresh one)."""
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, HERE)
    from step_flops import supernet_step_flops, train_step_flop

    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.snas import SNASConfig, SNASTrainer

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    if mixed_precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = {"ops": tuple(ops)} if ops else {}
    space = CellSpace((32, 32, 3), 10, init_channels=c, layers=layers, nodes=4, **extra)
    t0 = time.perf_counter()
    net = space.build_supernet(relaxation, seed=0)
    build_s = time.perf_counter() - t0
    flops = supernet_step_flops(net, relaxation)
    step_flop = train_step_flop(flops["forward_macs"], batch)
    trainer = SNASTrainer(net, SNASConfig(epochs=10, batch_size=batch), verbose=0)
    trainer.on_epoch_begin(0)
    step = tf.function(trainer.train_step, jit_compile=jit_compile)
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
    hwm = _vm_hwm_mb()
    return {
        "C": c,
        "L": layers,
        "batch": batch,
        "ops": list(space.ops),
        "n_ops": len(space.ops),
        "relaxation": relaxation,
        "jit_compile": jit_compile,
        "mixed_precision": mixed_precision,
        "threads": threads,
        "steps": steps,
        "ms_per_step": round(ms, 1),
        "images_per_s": round(batch / ms * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "tf_import_rss_mb": round(base_rss),
        "step_peak_rss_mb": round(hwm) if reset and hwm else None,
        "step_tensors_mb": round(tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20),
        "build_s": round(build_s, 1),
        "trace_and_first_step_s": round(trace_s, 1),
        "params": net.count_params(),
        "forward_mmac_per_image": round(flops["forward_macs"] / 1e6, 2),
        "gflop_per_step": round(step_flop / 1e9, 3),
        "achieved_gflops": round(step_flop / ms / 1e6, 2),
    }


def _run_json(cmd: list[str]) -> dict:
    """Runs `cmd` with the BFC allocator's statistics on; returns its last stdout line as JSON."""
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"},
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no stderr)"]
        raise RuntimeError(f"exit {proc.returncode}: {lines[-1]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_config(
    c: int,
    layers: int,
    batch: int,
    relaxation: str,
    steps: int,
    ops: list[str] | None = None,
    jit_compile: bool = False,
    mixed_precision: str = "none",
    threads: int = 2,
    reference: bool = True,
) -> dict:
    """One configuration in a fresh subprocess; with `reference`, the dense conv of the same
    FLOP in another, adding ``attainable_gflops`` and ``pct_of_attainable``. Raises
    RuntimeError when a subprocess fails."""
    spec = {
        "c": c,
        "layers": layers,
        "batch": batch,
        "relaxation": relaxation,
        "steps": steps,
        "ops": list(ops) if ops else None,
        "jit_compile": jit_compile,
        "mixed_precision": mixed_precision,
        "threads": threads,
    }
    row = _run_json([sys.executable, os.path.abspath(__file__), f"--child={json.dumps(spec)}"])
    if reference:
        dtype = "bfloat16" if mixed_precision == "bfloat16" else "float32"
        ref = _run_json(
            [
                sys.executable,
                os.path.join(HERE, "dense_reference.py"),
                f"--total_flop={row['gflop_per_step'] * 1e9}",
                f"--dtype={dtype}",
                f"--threads={threads}",
                "--matmul_n=0",
            ]
        )
        row["attainable_gflops"] = ref["attainable_gflops"]
        row["pct_of_attainable"] = round(100 * row["achieved_gflops"] / ref["attainable_gflops"], 1)
    return row


def format_row(r: dict) -> str:
    """One line of the printed table."""
    att = r.get("attainable_gflops")
    pct = r.get("pct_of_attainable")
    return (
        f"{r['C']:>3} {r['L']:>2} {r['batch']:>5} {r['n_ops']:>3} {r['relaxation']:<12} "
        f"{r['ms_per_step']:>9.1f} {r['images_per_s']:>7.1f} {r['tf_import_rss_mb']:>6} "
        f"{r['peak_rss_mb']:>8} {r['step_peak_rss_mb'] or '-':>8} {r['step_tensors_mb']:>10} "
        f"{r['trace_and_first_step_s']:>8.1f} {r['gflop_per_step']:>7.2f} "
        f"{r['achieved_gflops']:>8.2f} {att if att is not None else '-':>7} "
        f"{pct if pct is not None else '-':>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="8,5,32;16,8,64", help="C,L,batch triples separated by ';'"
    )
    parser.add_argument("--relaxations", default="gumbel,gumbel_hard")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--ops", default=None, help="comma-separated candidate ops (default 8)")
    parser.add_argument("--jit_compile", action="store_true", help="XLA-compile the step")
    parser.add_argument("--mixed_precision", default="none", choices=["none", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2, help="TF intra- and inter-op threads")
    parser.add_argument("--json", default=None, help="write the rows to this path")
    parser.add_argument("--no_reference", action="store_true", help="skip the dense reference")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(**json.loads(args.child))))
        return
    print(HEADER, flush=True)
    rows = []
    for size in args.sizes.split(";"):
        c, layers, batch = (int(v) for v in size.split(","))
        for relaxation in args.relaxations.split(","):
            try:
                r = run_config(
                    c,
                    layers,
                    batch,
                    relaxation,
                    args.steps,
                    ops=args.ops.split(",") if args.ops else None,
                    jit_compile=args.jit_compile,
                    mixed_precision=args.mixed_precision,
                    threads=args.threads,
                    reference=not args.no_reference,
                )
            except RuntimeError as e:
                print(f"{size} {relaxation}: failed: {e}", flush=True)
                continue
            rows.append(r)
            print(format_row(r), flush=True)
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
        os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
