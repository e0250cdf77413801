"""Performance estimators against the truth: the ground-truth set (stage ``truth``).

    python benchmarks/estimators.py truth                       # 40 nasrl archs, 20 epochs
    python benchmarks/estimators.py truth --space=cell --n=30 --epochs=15

``truth`` trains `--n` architectures of one space (sampled uniformly with a seeded
generator, duplicates skipped) fully on digits, as a trial-based search's ``full``
estimator does (``SpaceHyperModel``: Adam 1e-3, batch 64, the data's normalisation), and
records per architecture: the validation accuracy after every epoch (the learning curve),
the final test accuracy, params, FLOPs and the seconds of every epoch. The result is cached
in ``--cache`` (default ``benchmarks/cache/truth_<space>.json``), written atomically after
every architecture, so a stopped run continues and a finished one is not run again. Each
architecture is seeded from (seed, index) alone, so the set does not depend on the order.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import zlib


def _arch_seed(seed: int, index: int) -> int:
    return zlib.crc32(f"truth/{seed}/{index}".encode()) % (2**31 - 1)


def truth(args: argparse.Namespace) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    from kerasnas import data, io, threads
    from kerasnas.evaluate import accuracy
    from kerasnas.latency import cpu_model
    from kerasnas.multitrial.hypermodel import SpaceHyperModel
    from kerasnas.search_spaces import get_space

    tf.get_logger().setLevel("ERROR")  # the evaluation's retracing notes
    line = threads.configure(intra_op_threads=1)[1]
    cache = args.cache or os.path.join(
        os.path.dirname(__file__), "cache", f"truth_{args.space}.json"
    )
    result = {"archs": []}
    if os.path.exists(cache):
        import json

        with open(cache, encoding="utf-8") as f:
            result = json.load(f)
    meta = {
        "space": args.space,
        "epochs": args.epochs,
        "seed": args.seed,
        "dataset": "digits",
        "batch_size": 64,
        "optimizer": "adam 1e-3",
        "cpu": f"{cpu_model()} ({platform.machine()})",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "threads": line,
    }
    for key in ("space", "epochs", "seed"):
        if result.get("meta", {}).get(key, meta[key]) != meta[key]:
            sys.exit(f"--cache: {cache} holds another set ({key}={result['meta'][key]!r})")
    result["meta"] = {**meta, **{k: v for k, v in result.get("meta", {}).items() if k == "cpu"}}
    bundle = data.load("digits", seed=args.seed)
    space = get_space(args.space)
    hypermodel = SpaceHyperModel(
        space, bundle.input_shape, bundle.num_classes, bundle.normalization_layer()
    )
    seen = {space.key(r["arch"]) for r in result["archs"]}
    index = len(result["archs"])
    attempts = 0
    print(f"{line}; cache {cache}; {len(seen)} of {args.n} done", flush=True)
    while len(result["archs"]) < args.n:
        attempts += 1
        if attempts > 20 * args.n:
            sys.exit(f"--n: the {args.space} space gave fewer than {args.n} distinct archs")
        seed = _arch_seed(args.seed, index + attempts)
        arch = space.sample(np.random.default_rng(seed))
        if space.key(arch) in seen:
            continue
        seen.add(space.key(arch))
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        hp = space.hyperparameters()
        for name, value in arch.items():
            hp.values[name] = value
        model = hypermodel.build(hp)
        curve, seconds = [], []
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            model.fit(bundle.train(epoch, 64), epochs=1, verbose=0)
            seconds.append(round(time.perf_counter() - t0, 3))
            curve.append(accuracy(model, bundle.valid(64)))
        cost = space.cost(arch, bundle.input_shape, bundle.num_classes)
        row = {
            "arch": arch,
            "seed": seed,
            "val_curve": curve,
            "test_accuracy": accuracy(model, bundle.test(64)),
            "params": int(cost.params),
            "flops": int(cost.flops),
            "epoch_seconds": seconds,
        }
        result["archs"].append(row)
        io.write_json(cache, result)
        print(
            f"{len(result['archs'])}/{args.n}: val {curve[-1]:.4f} (epoch 1 {curve[0]:.4f}) "
            f"test {row['test_accuracy']:.4f} {row['params']:,} params "
            f"{sum(seconds):.1f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("truth",))
    parser.add_argument("--space", default="nasrl", choices=("nasrl", "metaqnn", "cell"))
    parser.add_argument("--n", type=int, default=40, help="architectures")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of full training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    if args.n < 2 or args.epochs < 2:
        parser.error("--n and --epochs must be at least 2")
    truth(args)


if __name__ == "__main__":
    main()
