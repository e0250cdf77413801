"""Performance estimators against the truth: the ground-truth set (stage ``truth``) and the
rank correlation of the estimates read off it (stage ``rank``).

    python benchmarks/estimators.py truth                       # 40 nasrl archs, 20 epochs
    python benchmarks/estimators.py truth --space=cell --n=30 --epochs=15
    python benchmarks/estimators.py rank                        # after truth, same flags
    python benchmarks/estimators.py proxy                       # after truth: proxy configs
    python benchmarks/estimators.py hypernet --hypernet_steps=1500  # nasrl, after truth
    python benchmarks/estimators.py lc_stop --orders=20         # lc's stopping rule
    python benchmarks/estimators.py plot                        # tau against cost, all rows

``truth`` trains `--n` architectures of one space (sampled uniformly with a seeded
generator, duplicates skipped) fully on digits, as a trial-based search's ``full``
estimator does (``SpaceHyperModel``: Adam 1e-3, batch 64, the data's normalisation), and
records per architecture: the validation accuracy after every epoch (the learning curve),
the final test accuracy, params, FLOPs and the seconds of every epoch. The result is cached
in ``--cache`` (default ``benchmarks/cache/truth_<space>.json``), written atomically after
every architecture, so a stopped run continues and a finished one is not run again. Each
architecture is seeded from (seed, index) alone, so the set does not depend on the order.

``hypernet`` (nasrl only) trains the SMASH-style hypernetwork of
:mod:`kerasnas.estimation.hypernet` on digits (batch 64, one sampled architecture per
step) and scores the truth set's architectures with generated weights, after every
`--hypernet_every` steps: rank correlation, regret and cost against the truth. Its cost is
also measured against one full training (20 epochs, the truth stage's trainer) of the truth
set's first architecture, timed in the same run before and after the hypernetwork.

``proxy`` trains every architecture of the truth set again under each lower-fidelity
configuration of ``PROXY_CONFIGS`` (:class:`~kerasnas.estimation.proxy.LowFidelity`: data
fraction, resolution, width; a few epochs), seeded as in ``truth``, and ranks the estimates
against the truth. Its cost is a ratio to a reference timed in the same run, architecture by
architecture between the configurations (so a loaded machine slows both alike): the
``full-2`` configuration (all the data, full resolution and width, 2 epochs) gives each
architecture's build + first epoch + evaluation and its second epoch's seconds, and full
training is estimated as that plus 18 more second epochs; ``--check_full`` architectures
are also trained the whole 20 epochs in the run to check that estimate. Cached in
``proxy_<space>.json`` next to the truth cache after every architecture (resumable).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
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


def _results_path(args: argparse.Namespace) -> str:
    return os.path.join(os.path.dirname(__file__), "results", f"estimators_{args.space}.json")


def record(args: argparse.Namespace, name: str, scores, truth, cost: float, stage: str) -> None:
    """Keeps one estimator's row (tau, Spearman, top-1/top-5 regret, cost as a fraction of
    full training) in ``benchmarks/results/estimators_<space>.json`` for the ``plot`` stage;
    a row of the same name is replaced."""
    import json

    from kerasnas import io

    path = _results_path(args)
    rows = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    rows[name] = {
        "stage": stage,
        "tau": kendall_tau(scores, truth),
        "spearman": spearman(scores, truth),
        "top1_regret": regret(scores, truth, 1),
        "top5_regret": regret(scores, truth, 5),
        "cost": float(cost),
    }
    io.write_json(path, rows)


def plot(args: argparse.Namespace) -> None:
    """Kendall tau against cost (fraction of full training) of every recorded estimator:
    ``benchmarks/results/estimators_<space>.png``."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = _results_path(args)
    if not os.path.exists(path):
        sys.exit(f"{path}: run the rank, proxy and hypernet stages first")
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    colours = {"rank": "tab:blue", "proxy": "tab:green", "hypernet": "tab:red"}
    labels = {
        "rank": "read off the truth run (epoch k, lc)",
        "proxy": "trained again, reduced (2 epochs)",
        "hypernet": "hypernetwork",
    }
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for stage, colour in colours.items():
        pts = [(r["cost"], r["tau"], n) for n, r in rows.items() if r["stage"] == stage]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colour, label=labels[stage])
        for x, y, name in pts:
            ax.annotate(name, (x, y), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("cost (fraction of full training's seconds)")
    ax.set_ylabel("Kendall tau with the truth (final validation accuracy)")
    ax.set_title(f"Estimators on {args.space} / digits: rank correlation against cost")
    ax.legend(loc="lower right")
    fig.tight_layout()
    out = path[: -len(".json")] + ".png"
    fig.savefig(out, dpi=110)
    print(out)


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two score lists (ties in either count as neither concordant nor
    discordant, with the tau-b normalisation)."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    s = float(np.sum(da[upper] * db[upper]))
    na, nb = float(np.sum(da[upper] != 0)), float(np.sum(db[upper] != 0))
    return s / np.sqrt(na * nb) if na and nb else float("nan")


def _ranks(x):
    import numpy as np

    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):  # ties: their mean rank
        ranks[x == v] = ranks[x == v].mean()
    return ranks


def spearman(a, b) -> float:
    """Spearman's rank correlation (Pearson on the ranks, ties averaged)."""
    import numpy as np

    ra, rb = _ranks(a), _ranks(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def regret(scores, truth, k: int) -> float:
    """Best true value minus the best true value among the `k` top-scored architectures."""
    import numpy as np

    top = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    return float(max(truth) - max(truth[i] for i in top))


def rank(args: argparse.Namespace) -> None:
    """Estimates read off the cached curves: validation accuracy after k epochs (the
    ``proxy`` estimator with all the data: the same training, stopped early) and the
    learning-curve model's prediction of the last epoch from the first `lc_fraction`."""
    import json

    import numpy as np

    from kerasnas.estimation.curves import LearningCurveModel

    cache = args.cache or os.path.join(
        os.path.dirname(__file__), "cache", f"truth_{args.space}.json"
    )
    with open(cache, encoding="utf-8") as f:
        archs = json.load(f)["archs"]
    if len(archs) < 3:
        sys.exit(f"--cache: {cache} holds {len(archs)} architectures; run the truth stage")
    truth = [a["val_curve"][-1] for a in archs]
    test = [a["test_accuracy"] for a in archs]
    epochs = len(archs[0]["val_curve"])
    full_seconds = float(np.mean([sum(a["epoch_seconds"]) for a in archs]))
    rows = []
    for k in sorted({1, 2, max(1, epochs // 4), max(1, epochs // 2)}):
        scores = [a["val_curve"][k - 1] for a in archs]
        cost = float(np.mean([sum(a["epoch_seconds"][:k]) for a in archs])) / full_seconds
        rows.append((f"proxy: {k} of {epochs} epochs", scores, cost, None))
    n = max(2, int(np.ceil(args.lc_fraction * epochs)))
    preds, stds, fit_seconds = [], [], []
    for i, a in enumerate(archs):
        t0 = time.perf_counter()
        p = LearningCurveModel(seed=i).fit(a["val_curve"][:n], epochs)
        fit_seconds.append(time.perf_counter() - t0)
        preds.append(float(p.mean[-1]))
        stds.append(float(p.std[-1]))
    cost = float(np.mean([sum(a["epoch_seconds"][:n]) for a in archs]) + np.mean(fit_seconds))
    rows.append((f"lc: first {n} of {epochs} epochs", preds, cost / full_seconds, stds))
    print(
        f"{len(archs)} architectures of {args.space}, {epochs} epochs of full training "
        f"({full_seconds:.1f} s each on average); truth: final validation accuracy"
    )
    print(
        f"{'estimator':<28} {'tau':>6} {'rho':>6} {'tau test':>8} "
        f"{'top1':>7} {'top5':>7} {'cost':>6}"
    )
    for name, scores, cost, _ in rows:
        record(args, name, scores, truth, cost, "rank")
        print(
            f"{name:<28} {kendall_tau(scores, truth):6.3f} {spearman(scores, truth):6.3f} "
            f"{kendall_tau(scores, test):8.3f} {regret(scores, truth, 1):7.4f} "
            f"{regret(scores, truth, 5):7.4f} {cost:6.3f}"
        )
    err = np.asarray(preds) - np.asarray(truth)
    inside = np.abs(err) <= 2 * np.asarray(stds)
    print(
        f"lc from {n} of {epochs} epochs: MAE {np.mean(np.abs(err)):.4f}, mean error "
        f"{np.mean(err):+.4f}, truth within 2 std in {int(inside.sum())}/{len(err)}, "
        f"fit {np.mean(fit_seconds):.2f} s"
    )


def _full_training_seconds(space, bundle, row: dict, epochs: int) -> float:
    """Seconds of one full training of the truth architecture `row` as the truth stage
    trains it (same model, seed, data, per-epoch evaluation)."""
    import keras

    from kerasnas.evaluate import accuracy
    from kerasnas.multitrial.hypermodel import SpaceHyperModel

    hypermodel = SpaceHyperModel(
        space, bundle.input_shape, bundle.num_classes, bundle.normalization_layer()
    )
    keras.backend.clear_session()
    keras.utils.set_random_seed(row["seed"])
    hp = space.hyperparameters()
    hp.values.update(row["arch"])
    model = hypermodel.build(hp)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.fit(bundle.train(epoch, 64), epochs=1, verbose=0)
        accuracy(model, bundle.valid(64))
    return time.perf_counter() - t0


def hypernet(args: argparse.Namespace) -> None:
    """The hypernetwork's ranking of the truth set (see the module doc)."""
    import json

    import numpy as np
    import tensorflow as tf

    from kerasnas import data, threads
    from kerasnas.estimation.hypernet import HyperNet
    from kerasnas.search_spaces import get_space

    if args.space != "nasrl":
        sys.exit("hypernet: --space must be nasrl")
    tf.get_logger().setLevel("ERROR")
    line = threads.configure(intra_op_threads=1)[1]
    cache = args.cache or os.path.join(
        os.path.dirname(__file__), "cache", f"truth_{args.space}.json"
    )
    with open(cache, encoding="utf-8") as f:
        archs = json.load(f)["archs"]
    truth = [a["val_curve"][-1] for a in archs]
    test = [a["test_accuracy"] for a in archs]
    epochs = len(archs[0]["val_curve"])
    cached_total = float(sum(sum(a["epoch_seconds"]) for a in archs))
    bundle = data.load("digits", seed=args.seed)
    space = get_space(args.space)
    x, y = bundle.numpy("train")
    xv, yv = bundle.numpy("valid")
    calibration = x[: 4 * 64]
    print(f"{line}; {len(archs)} truth architectures, {epochs} epochs ({cache})", flush=True)
    totals = [sum(a["epoch_seconds"]) for a in archs]
    ref = int(np.argmin(np.abs(np.asarray(totals) - np.mean(totals))))  # a typical one
    ref_before = _full_training_seconds(space, bundle, archs[ref], epochs)
    print(f"reference: full training of truth arch {ref}: {ref_before:.1f} s", flush=True)
    net = HyperNet(
        space,
        bundle.input_shape,
        bundle.num_classes,
        bundle.mean,
        bundle.std,
        args.hypernet_hidden,
        args.hypernet_seed,
    )
    rng = np.random.default_rng(args.hypernet_seed)
    params = [a["params"] for a in archs]
    rows, train_seconds, done = [], 0.0, 0
    while done < args.hypernet_steps:
        chunk = min(args.hypernet_every, args.hypernet_steps - done)
        t0 = time.perf_counter()
        losses = net.train(x, y, chunk, 64, args.hypernet_lr, rng, args.hypernet_schedule)
        train_seconds += time.perf_counter() - t0
        done += chunk
        t0 = time.perf_counter()
        scores = [net.score(a["arch"], xv, yv, calibration) for a in archs]
        score_seconds = time.perf_counter() - t0
        rows.append((done, scores, train_seconds, score_seconds, float(np.mean(losses[-100:]))))
        print(
            f"step {done}: loss {rows[-1][4]:.3f}, mean score {np.mean(scores):.3f}, "
            f"tau {kendall_tau(scores, truth):.3f} ({train_seconds:.0f} s + {score_seconds:.0f} s)",
            flush=True,
        )
    ref_after = _full_training_seconds(space, bundle, archs[ref], epochs)
    reference = (ref_before + ref_after) / 2
    load = reference / totals[ref]
    print(
        f"reference: full training of truth arch {ref}: {ref_after:.1f} s after, "
        f"{reference:.1f} s on average ({load:.2f} x its cached {totals[ref]:.1f} s; the set's "
        f"mean {np.mean(totals):.1f} s)"
    )
    print(
        f"{'estimator':<28} {'tau':>6} {'rho':>6} {'tau test':>8} {'top1':>7} {'top5':>7} "
        f"{'seconds':>8} {'x full':>6} {'of set':>6} {'tau params':>10}"
    )
    print(
        f"{'params (no training)':<28} {kendall_tau(params, truth):6.3f} "
        f"{spearman(params, truth):6.3f} {kendall_tau(params, test):8.3f} "
        f"{regret(params, truth, 1):7.4f} {regret(params, truth, 5):7.4f}"
    )
    for steps, scores, train_s, score_s, _ in rows:
        cost = train_s + score_s
        if steps == rows[-1][0]:
            name = f"hypernet: {steps} steps"
            record(args, name, scores, truth, cost / (load * cached_total), "hypernet")
        print(
            f"{f'hypernet: {steps} steps':<28} {kendall_tau(scores, truth):6.3f} "
            f"{spearman(scores, truth):6.3f} {kendall_tau(scores, test):8.3f} "
            f"{regret(scores, truth, 1):7.4f} {regret(scores, truth, 5):7.4f} "
            f"{cost:8.1f} {cost / reference:6.2f} {cost / (load * cached_total):6.3f} "
            f"{kendall_tau(scores, params):10.3f}"
        )
    print(
        f"seconds: hypernet training + scoring the set; x full: in full trainings of truth "
        f"arch {ref} timed in this run; of set: fraction of the truth set's full training, its "
        "cached seconds scaled by this run's load factor; tau params: with the parameter count"
    )


def lc_stop(args: argparse.Namespace) -> None:
    """The ``lc`` estimator's stopping rule replayed on the cached curves, over `--orders`
    random trial orders: each trial is checked after every epoch from the first
    ``ceil(lc_fraction * epochs)`` (at least 2) on, stopped when P(final > best so far) <
    `--lc_threshold` and then reports the predicted mean, as
    :class:`~kerasnas.estimation.lc.LearningCurveStopping` does in a search (the first trial
    of an order runs in full; the best so far counts the stopped trials' reports too). A fit
    depends on the architecture and the epochs seen only (seeded by them), so fits are
    shared between orders. Prints whether the trial that ends up best was ever stopped, the
    regret of the architecture the search would return, and the epochs trained."""
    import json
    import math

    import numpy as np

    from kerasnas.estimation.curves import LearningCurveModel

    cache = args.cache or os.path.join(
        os.path.dirname(__file__), "cache", f"truth_{args.space}.json"
    )
    with open(cache, encoding="utf-8") as f:
        archs = json.load(f)["archs"]
    curves = [a["val_curve"] for a in archs]
    truth = np.array([c[-1] for c in curves])
    m = len(curves[0])
    first = max(2, math.ceil(args.lc_fraction * m))
    fits: dict[tuple[int, int], object] = {}
    t0 = time.perf_counter()

    def prediction(i: int, n: int):
        if (i, n) not in fits:
            fits[(i, n)] = LearningCurveModel(seed=1000 * i + n).fit(curves[i][:n], m)
        return fits[(i, n)]

    regrets, best_stopped, tied_stopped, epochs_used, stops_of_good = [], 0, [], [], 0
    for order_seed in range(args.orders):
        order = np.random.default_rng(order_seed).permutation(len(curves))
        best, reports, stopped, used = -math.inf, {}, set(), 0
        for i in order:
            value, n_used = curves[i][-1], m
            if math.isfinite(best):
                for n in range(first, m):
                    p = prediction(int(i), n)
                    if p.prob_greater(best) < args.lc_threshold:
                        value, n_used = float(p.mean[-1]), n
                        stopped.add(int(i))
                        break
            reports[int(i)] = value
            used += n_used
            best = max(best, value)
        returned = max(reports, key=reports.get)
        top = truth.max()
        eventual = next(int(i) for i in order if truth[i] == top)
        regrets.append(float(top - truth[returned]))
        best_stopped += eventual in stopped
        tied_stopped.append(sum(truth[i] == top for i in stopped))
        stops_of_good += sum(truth[i] >= top - 0.01 for i in stopped)
        epochs_used.append(used / (m * len(curves)))
        print(
            f"order {order_seed}: stopped {len(stopped)}/{len(curves)}, epochs "
            f"{epochs_used[-1]:.3f} of full, regret {regrets[-1]:.4f}, "
            f"{len(fits)} fits so far ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    print(
        f"lc stopping rule, threshold {args.lc_threshold:g}, checks from epoch {first} of {m}, "
        f"{args.orders} trial orders of {len(curves)} {args.space} architectures:"
    )
    print(
        f"  the trial that ends up best (the first of the order at the top truth, "
        f"{top:.4f}) stopped in {best_stopped}/{args.orders} orders; architectures tied at "
        f"the top stopped: {sum(tied_stopped)} in all; within 0.01 of the top: {stops_of_good}"
    )
    print(
        f"  regret of the returned architecture: mean {np.mean(regrets):.4f}, max "
        f"{np.max(regrets):.4f}; epochs trained: {np.mean(epochs_used):.3f} of full "
        f"(range {np.min(epochs_used):.3f}-{np.max(epochs_used):.3f})"
    )


# name -> (LowFidelity arguments); every configuration trains 2 epochs
PROXY_CONFIGS: dict[str, dict] = {
    "full-2": {"epochs": 2},
    "data-1/2": {"epochs": 2, "data_fraction": 0.5},
    "data-1/4": {"epochs": 2, "data_fraction": 0.25},
    "res-6": {"epochs": 2, "resolution": 6},
    "res-4": {"epochs": 2, "resolution": 4},
    "width-0.5": {"epochs": 2, "width_multiplier": 0.5},
    "data-1/2+res-6+width-0.5": {
        "epochs": 2,
        "data_fraction": 0.5,
        "resolution": 6,
        "width_multiplier": 0.5,
    },
}


def _proxy_context(space, bundle, hypermodel, arch, seed, epochs, clock):
    """A TrialContext as the trial runner makes it (seeded by `seed`, Keras' session
    cleared per build); `clock` collects the seconds of every training epoch."""
    import keras

    from kerasnas.estimation import TrialContext
    from kerasnas.evaluate import accuracy

    def build(a, space_=None, resolution=None):
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        sp = space if space_ is None else space_
        hp = sp.hyperparameters()
        hp.values.update(sp.validate(a))
        return hypermodel.variant(sp, resolution).build(hp)

    def train_epoch(model, epoch, dataset=None):
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # Keras: "shuffle=True ... ignored" for a Dataset
            warnings.simplefilter("ignore", UserWarning)
            model.fit(bundle.train(epoch, 64) if dataset is None else dataset, epochs=1, verbose=0)
        clock.append(time.perf_counter() - t0)

    return TrialContext(
        trial_id="0",
        arch=arch,
        space=space,
        bundle=bundle,
        epochs=epochs,
        batch_size=64,
        best_accuracy=float("-inf"),
        completed=[],
        build=lambda a, space=None, resolution=None: build(a, space, resolution),
        train_epoch=train_epoch,
        evaluate=lambda m: accuracy(m, bundle.valid(64)),
    )


def proxy(args: argparse.Namespace) -> None:
    """Trains the truth set under every proxy configuration (see the module doc), then
    prints Kendall tau, Spearman, top-1/top-5 regret and the cost fraction of each."""
    import json

    import keras
    import tensorflow as tf

    from kerasnas import data, io, threads
    from kerasnas.estimation.proxy import LowFidelity
    from kerasnas.latency import cpu_model
    from kerasnas.multitrial.hypermodel import SpaceHyperModel
    from kerasnas.search_spaces import get_space

    tf.get_logger().setLevel("ERROR")
    line = threads.configure(intra_op_threads=1)[1]
    here = os.path.join(os.path.dirname(__file__), "cache")
    truth_cache = args.cache or os.path.join(here, f"truth_{args.space}.json")
    with open(truth_cache, encoding="utf-8") as f:
        truth_set = json.load(f)
    archs = truth_set["archs"]
    epochs = len(archs[0]["val_curve"])
    configs = {k: v for k, v in PROXY_CONFIGS.items() if not args.configs or k in args.configs}
    name = os.path.basename(truth_cache).replace("truth_", "proxy_", 1)
    cache = os.path.join(os.path.dirname(truth_cache), name)
    result = {"configs": {}, "full": {}}
    if os.path.exists(cache):
        with open(cache, encoding="utf-8") as f:
            result = json.load(f)
    result["meta"] = {
        "truth": os.path.basename(truth_cache),
        "epochs_full": epochs,
        "cpu": f"{cpu_model()} ({platform.machine()})",
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "threads": line,
        "configs": PROXY_CONFIGS,
    }
    bundle = data.load("digits", seed=truth_set["meta"]["seed"])
    space = get_space(args.space)
    hypermodel = SpaceHyperModel(
        space, bundle.input_shape, bundle.num_classes, bundle.normalization_layer()
    )
    print(f"{line}; cache {cache}; {len(archs)} architectures x {len(configs)} configs")
    for i, row in enumerate(archs):
        for name, kwargs in configs.items():
            done = result["configs"].setdefault(name, {})
            if str(i) in done:
                continue
            clock: list[float] = []
            ctx = _proxy_context(space, bundle, hypermodel, row["arch"], row["seed"], 2, clock)
            t0 = time.perf_counter()
            estimate = LowFidelity(**kwargs).estimate(ctx)
            seconds = time.perf_counter() - t0
            done[str(i)] = {
                "val_accuracy": float(estimate.val_accuracy),
                "seconds": round(seconds, 4),
                "epoch_seconds": [round(t, 4) for t in clock],
                "params": int(estimate.model.count_params()),
            }
        if i < args.check_full and str(i) not in result["full"]:
            clock = []
            ctx = _proxy_context(space, bundle, hypermodel, row["arch"], row["seed"], epochs, clock)
            t0 = time.perf_counter()
            estimate = LowFidelity(epochs=epochs).estimate(ctx)
            result["full"][str(i)] = {
                "val_accuracy": float(estimate.val_accuracy),
                "seconds": round(time.perf_counter() - t0, 4),
                "epoch_seconds": [round(t, 4) for t in clock],
            }
        io.write_json(cache, result)
        print(
            f"{i + 1}/{len(archs)}: "
            + " ".join(
                f"{n} {result['configs'][n][str(i)]['val_accuracy']:.3f}"
                f"/{result['configs'][n][str(i)]['seconds']:.1f}s"
                for n in configs
            ),
            flush=True,
        )
    proxy_report(result, archs, list(configs), args)


def _full_estimate(reference: dict, epochs: int) -> float:
    """Seconds of full training estimated from a 2-epoch reference run: its total (build,
    first epoch, evaluation, second epoch) plus `epochs` - 2 more second epochs."""
    return reference["seconds"] + (epochs - 2) * reference["epoch_seconds"][1]


def proxy_report(result: dict, archs: list, names: list[str], args: argparse.Namespace) -> None:
    """The table of the ``proxy`` stage (also for a finished cache)."""
    import numpy as np

    truth = [a["val_curve"][-1] for a in archs]
    test = [a["test_accuracy"] for a in archs]
    epochs = result["meta"]["epochs_full"]
    ref = result["configs"]["full-2"]
    n = len(archs)
    full = [_full_estimate(ref[str(i)], epochs) for i in range(n)]
    print(
        f"{n} architectures, truth: validation accuracy after {epochs} epochs (full data, "
        f"resolution and width); cost: seconds (build + training + evaluation) over full "
        f"training's, estimated in the same run ({np.mean(full):.1f} s each on average)"
    )
    for i, r in result.get("full", {}).items():
        print(
            f"check: arch {i} trained {epochs} epochs in the run: {r['seconds']:.1f} s, "
            f"estimate {full[int(i)]:.1f} s; val {r['val_accuracy']:.4f} "
            f"(truth {truth[int(i)]:.4f})"
        )
    curve2 = [a["val_curve"][1] for a in archs]
    same = sum(abs(ref[str(i)]["val_accuracy"] - curve2[i]) < 1e-9 for i in range(n))
    print(f"full-2 equals the truth run's epoch-2 accuracy for {same}/{n} architectures")
    print(
        f"{'config (2 epochs each)':<26} {'tau':>6} {'rho':>6} {'tau test':>8} "
        f"{'top1':>7} {'top5':>7} {'cost':>6} {'cost chk':>8} {'mean acc':>8}"
    )
    checked = sorted(int(i) for i in result.get("full", {}))
    full_real = [result["full"][str(i)]["seconds"] for i in checked]
    for name in names:
        rows = result["configs"][name]
        scores = [rows[str(i)]["val_accuracy"] for i in range(n)]
        cost = float(np.mean([rows[str(i)]["seconds"] for i in range(n)]) / np.mean(full))
        check = (
            float(np.mean([rows[str(i)]["seconds"] for i in checked]) / np.mean(full_real))
            if checked
            else float("nan")
        )
        record(args, f"proxy {name}", scores, truth, cost, "proxy")
        print(
            f"{name:<26} {kendall_tau(scores, truth):6.3f} {spearman(scores, truth):6.3f} "
            f"{kendall_tau(scores, test):8.3f} {regret(scores, truth, 1):7.4f} "
            f"{regret(scores, truth, 5):7.4f} {cost:6.3f} {check:8.3f} {np.mean(scores):8.4f}"
        )
    print(
        "cost: over full training estimated from full-2 (all archs); cost chk: over the "
        f"{len(checked)} archs also trained {epochs} epochs in the run"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("truth", "rank", "proxy", "hypernet", "lc_stop", "plot"))
    parser.add_argument("--space", default="nasrl", choices=("nasrl", "metaqnn", "cell"))
    parser.add_argument("--n", type=int, default=40, help="architectures")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of full training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--lc_fraction", type=float, default=0.3, help="rank: lc's epochs seen")
    parser.add_argument("--lc_threshold", type=float, default=0.05, help="lc_stop: threshold")
    parser.add_argument("--orders", type=int, default=20, help="lc_stop: trial orders")
    parser.add_argument(
        "--configs", default="", help="proxy: comma-separated PROXY_CONFIGS names (default all)"
    )
    parser.add_argument(
        "--check_full", type=int, default=8, help="proxy: archs also trained in full"
    )
    parser.add_argument("--hypernet_steps", type=int, default=1500)
    parser.add_argument("--hypernet_every", type=int, default=500, help="steps between scorings")
    parser.add_argument("--hypernet_lr", type=float, default=1e-3)
    parser.add_argument(
        "--hypernet_schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="cosine: decayed to 0 over every --hypernet_every steps (a restart each)",
    )
    parser.add_argument("--hypernet_hidden", type=int, default=64)
    parser.add_argument("--hypernet_seed", type=int, default=0)
    args = parser.parse_args()
    if args.n < 2 or args.epochs < 2:
        parser.error("--n and --epochs must be at least 2")
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in args.configs if c not in PROXY_CONFIGS]
    if unknown or (args.configs and "full-2" not in args.configs):
        parser.error(f"--configs: some of {', '.join(PROXY_CONFIGS)}, with full-2")
    stages = {"truth": truth, "rank": rank, "proxy": proxy, "hypernet": hypernet}
    stages.update(lc_stop=lc_stop, plot=plot)
    stages[args.stage](args)


if __name__ == "__main__":
    main()
