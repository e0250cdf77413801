"""Start-up of a one-shot search: time per phase up to the first step, steady step, peak memory.

    python benchmarks/startup.py                                  # both sizes, every strategy
    python benchmarks/startup.py --sizes=8,5,32 --strategies=gumbel,gumbel_hard
    python benchmarks/startup.py --darts_dir=/path/to/darts/cnn   # beside the PyTorch reference

Each row runs in a fresh process, so its times and its peak are its own. Phases, in seconds
since the parent started the process (``first step`` is the time to first step):

- ``import``: Python start and ``import tensorflow, keras, kerasnas``;
- ``data``: one random batch (B, H, W, channels), ``--image``, default 32,32,3, and labels,
  as tensors;
- ``build``: the cell supernet (N=4 nodes, the 8 DARTS/SNAS ops) and its trainer;
- ``trace``: Python tracing of the training step, gradients included
  (``get_concrete_function``);
- ``first step``: the first call, which also runs graph optimisation (grappler) and creates
  the kernels, then one step;
- ``steady``: the median of ``--steps`` further steps (ms/step);
- ``peak``: the process' peak resident memory (``ru_maxrss``, MB).

Strategies: ``gumbel`` and ``gumbel_hard`` (SNAS' step), ``darts1``/``darts2`` (DARTS' first-
and second-order step), ``enas`` and ``random`` (one child of the supernet per step, the
ENAS weight phase; random search with weight sharing runs the same step).

``--darts_dir`` is a directory holding the DARTS authors' search network
(``model_search.py``, ``operations.py``, ``genotypes.py`` of their ``cnn`` folder; not part
of this repository). With it, and PyTorch installed, a ``darts-pytorch`` row per size runs
their network's weight step (SGD with momentum 0.9, weight decay 3e-4, gradient clipping at
5, as their ``train_search.py``) on the same inputs and threads, with the same phases
(``trace`` empty); ratios to it are printed below the table.

Threads: the kerasnas rows run ``--intra_op_threads`` threads per op (default 1, as the jobs
do; see ``kerasnas/threads.py``) and ``--threads`` ops at once; the reference runs
``--threads`` threads per op (PyTorch runs one op at a time). Both use ``--threads`` cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

STRATEGIES = ("gumbel", "gumbel_hard", "darts1", "darts2", "enas", "random")
REFERENCE = "darts-pytorch"
PHASES = ("import", "data", "build", "trace", "first_step")
_IMAGE = (32, 32, 3)  # (H, W, channels) of the inputs; --image


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tf_row(
    strategy: str, c: int, layers: int, batch: int, steps: int, threads: int, intra: int, t0: float
):
    """One kerasnas configuration, in this (fresh) process; returns its row."""
    marks = {}
    import keras  # noqa: F401
    import tensorflow as tf

    import kerasnas  # noqa: F401
    from kerasnas import threads as pools
    from kerasnas.graph_options import lean_function
    from kerasnas.search_spaces.cell import CellSpace

    pools.configure(intra_op_threads=intra, inter_op_threads=threads)
    marks["import"] = time.time() - t0

    import numpy as np

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch, *_IMAGE)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, size=batch).astype("int32"))
    marks["data"] = time.time() - t0

    space = CellSpace(_IMAGE, 10, init_channels=c, layers=layers, nodes=4)
    args = (x, y)
    if strategy in ("gumbel", "gumbel_hard"):
        from kerasnas.trainers import SNASConfig, SNASTrainer

        net = space.build_supernet(strategy, seed=0)
        trainer = SNASTrainer(net, SNASConfig(epochs=10, batch_size=batch), verbose=0)
    elif strategy in ("darts1", "darts2"):
        from kerasnas.trainers import DARTSConfig, DARTSTrainer

        net = space.build_supernet("softmax", seed=0)
        config = DARTSConfig(epochs=10, batch_size=batch, order=int(strategy[-1]))
        trainer = DARTSTrainer(net, config, verbose=0)
        args = (x, y, x, y)
    else:
        from kerasnas.trainers import ENASConfig, ENASTrainer, RandomWSTrainer, WeightSharingConfig

        net = space.build_supernet("controlled", seed=0)
        if strategy == "enas":
            trainer = ENASTrainer(net, space, ENASConfig(epochs=10, batch_size=batch), verbose=0)
        else:
            config = WeightSharingConfig(epochs=10, batch_size=batch)
            trainer = RandomWSTrainer(net, space, config, verbose=0)
        archs = trainer.sample_archs(1, np.random.default_rng(0))
        args = (x, y, tf.constant(trainer.choice_vectors(archs)[0]))
    trainer.on_epoch_begin(0)
    # as the trainer compiles it (kerasnas.graph_options: one grappler pass, see its docs)
    step = lean_function(tf.function(trainer.train_step, input_signature=trainer.step_signature()))
    marks["build"] = time.time() - t0

    step.get_concrete_function(*trainer.step_signature())
    marks["trace"] = time.time() - t0

    float(step(*args)["loss"])
    marks["first_step"] = time.time() - t0

    float(step(*args)["loss"])  # warm-up
    times = []
    for _ in range(steps):
        s = time.perf_counter()
        float(step(*args)["loss"])
        times.append(time.perf_counter() - s)
    return marks, times


def _torch_row(darts_dir: str, c: int, layers: int, batch: int, steps: int, threads: int, t0):
    """The DARTS authors' search network, one weight step, in this (fresh) process."""
    marks = {}
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    sys.path.insert(0, darts_dir)
    torch.Tensor.cuda = lambda self, *a, **k: self  # their code moves the logits to a GPU
    from model_search import Network

    marks["import"] = time.time() - t0
    torch.manual_seed(0)
    x = torch.randn(batch, _IMAGE[2], _IMAGE[0], _IMAGE[1])
    y = torch.randint(0, 10, (batch,))
    marks["data"] = time.time() - t0
    criterion = nn.CrossEntropyLoss()
    model = Network(c, 10, layers, criterion)
    optimizer = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    marks["build"] = time.time() - t0

    def step():
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        return float(loss)

    model.train()
    step()
    marks["first_step"] = time.time() - t0
    step()
    times = []
    for _ in range(steps):
        s = time.perf_counter()
        step()
        times.append(time.perf_counter() - s)
    return marks, times


def child(spec: dict) -> dict:
    global _IMAGE
    t0 = spec["t0"]
    _IMAGE = tuple(spec.get("image", _IMAGE))
    size = (spec["C"], spec["L"], spec["batch"], spec["steps"], spec["threads"])
    if spec["strategy"] == REFERENCE:
        marks, times = _torch_row(spec["darts_dir"], *size, t0)
    else:
        marks, times = _tf_row(spec["strategy"], *size, spec.get("intra", 1), t0)
    return {
        **{k: spec[k] for k in ("strategy", "C", "L", "batch", "threads")},
        **{f"{k}_s": round(v, 2) for k, v in marks.items()},
        "steady_ms": round(statistics.median(times) * 1000, 1),
        "peak_mb": round(_peak_mb()),
    }


def run_row(spec: dict) -> dict:
    """Runs one row in a fresh process; returns it (or its error)."""
    spec = {**spec, "t0": time.time()}
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no stderr)"]
        return {**spec, "error": lines[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(row: dict) -> str:
    if "error" in row:
        head = f"{row['strategy']:<14} {row['C']:>3} {row['L']:>2} {row['batch']:>5}"
        return f"{head}  error: {row['error']}"
    cells = [f"{row.get(f'{p}_s', ''):>10}" for p in PHASES]
    return (
        f"{row['strategy']:<14} {row['C']:>3} {row['L']:>2} {row['batch']:>5} "
        + " ".join(cells)
        + f" {row['steady_ms']:>10} {row['peak_mb']:>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="8,5,32;16,8,64", help="C,L,batch;C,L,batch...")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--steps", type=int, default=3, help="steady steps timed per row")
    parser.add_argument(
        "--threads", type=int, default=2, help="TF: ops at once; PyTorch: threads per op"
    )
    parser.add_argument(
        "--intra_op_threads", type=int, default=1, help="TF: threads per op (the jobs' default)"
    )
    parser.add_argument("--image", default="32,32,3", help="H,W,channels of the inputs")
    parser.add_argument("--darts_dir", default=None, help="the DARTS authors' cnn/ folder")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        parser.error(f"--strategies: unknown {unknown}; choose from {', '.join(STRATEGIES)}")
    if args.darts_dir and not os.path.isfile(os.path.join(args.darts_dir, "model_search.py")):
        parser.error(f"--darts_dir: no model_search.py in {args.darts_dir}")
    sizes = [tuple(int(v) for v in s.split(",")) for s in args.sizes.split(";") if s]
    try:
        image = [int(v) for v in args.image.split(",")]
    except ValueError:
        image = []
    if len(image) != 3 or min(image) < 1:
        parser.error(f"--image: expected H,W,channels (e.g. 8,8,1), got {args.image!r}")
    if args.darts_dir and image[2] != 3:
        parser.error("--image: the DARTS reference (--darts_dir) takes 3 channels")
    print(
        f"{'strategy':<14} {'C':>3} {'L':>2} {'batch':>5} "
        + " ".join(f"{p + ' s':>10}" for p in PHASES)
        + f" {'steady ms':>10} {'peak MB':>8}",
        flush=True,
    )
    rows = []
    for c, layers, batch in sizes:
        names = ([REFERENCE] if args.darts_dir else []) + strategies
        for name in names:
            spec = {"strategy": name, "C": c, "L": layers, "batch": batch}
            spec.update(steps=args.steps, threads=args.threads, darts_dir=args.darts_dir)
            spec["intra"] = args.intra_op_threads
            spec["image"] = image
            row = run_row(spec)
            rows.append(row)
            print(_fmt(row), flush=True)
    refs = {(r["C"], r["L"], r["batch"]): r for r in rows if r["strategy"] == REFERENCE}
    if refs:
        print("\nratios to the PyTorch reference (first step, steady step, peak):")
        for r in rows:
            ref = refs.get((r["C"], r["L"], r["batch"]))
            if r["strategy"] == REFERENCE or ref is None or "error" in r:
                continue
            print(
                f"{r['strategy']:<14} {r['C']:>3} {r['L']:>2} {r['batch']:>5} "
                f"{r['first_step_s'] / ref['first_step_s']:>6.2f}x "
                f"{r['steady_ms'] / ref['steady_ms']:>6.2f}x {r['peak_mb'] / ref['peak_mb']:>6.2f}x"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
