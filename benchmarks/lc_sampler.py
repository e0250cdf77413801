"""Domhan et al.'s learning-curve model on the truth set: the joint and the blocked sampler.

For each of the 40 curves of ``benchmarks/cache/truth_nasrl.json`` (20 epochs of validation
accuracy), fit the first n epochs and predict epoch 20 with
``LearningCurveModel(sampler=...)``; print, per sampler and n, the mean absolute error of the
predicted mean, its mean error, the fraction of truths within 2 predictive std (coverage),
Kendall's tau of the predicted means against the truths (and of the epoch-n value, the naive
predictor), the mean seconds per fit and the mean acceptance of the weights' moves.

Then the stuck-start check: on ``--check`` curves, each sampler runs twice, its walkers
starting with the weights at 1/K (the default) and at the least-squares weights of the
per-family fits on the simplex; a sampler of the posterior gives both runs the same
prediction. Printed: the mean |difference| of the two runs' mean and std at epoch 20, and the
mean total-variation distance between their posterior mean weights.

    PYTHONPATH=. python benchmarks/lc_sampler.py [--curves=40] [--check=8] [--epochs=6,10]

Result (2026-12-04, 2 cores shared with 3 other jobs, load about 5: seconds are comparable
only within the run; defaults 100 walkers, 300 + 300 steps, thin 10):

| sampler | n | MAE | mean error | coverage 2 std | tau | tau of y_n | s / fit | acc. w |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| joint | 6 | 0.0490 | -0.0309 | 0.97 | 0.690 | 0.817 | 2.05 | 0.050 |
| blocked | 6 | 0.0995 | -0.0843 | 1.00 | 0.658 | 0.817 | 5.45 | 0.043 |
| joint | 10 | 0.0256 | -0.0223 | 1.00 | 0.746 | 0.865 | 1.90 | 0.050 |
| blocked | 10 | 0.0315 | -0.0208 | 1.00 | 0.687 | 0.865 | 3.05 | 0.041 |

| sampler | mean abs diff of mean | of std | TV distance of mean weights |
| --- | ---: | ---: | ---: |
| joint | 0.0226 | 0.0491 | 0.700 |
| blocked | 0.0311 | 0.2092 | 0.569 |

Neither sampler forgets its start: the posterior is improper (see the Caveat of
``kerasnas/estimation/curves.py``), and the last observed value ranks the curves better.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from kerasnas.estimation import curves

TRUTH = pathlib.Path(__file__).parent / "cache" / "truth_nasrl.json"


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two score lists (ties count as neither concordant nor discordant)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    da, db = np.sign(a[:, None] - a[None, :]), np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    na, nb = float(np.sum(da[upper] != 0)), float(np.sum(db[upper] != 0))
    return float(np.sum(da[upper] * db[upper])) / np.sqrt(na * nb) if na and nb else float("nan")


def ls_weights(curves_seen: np.ndarray, y: np.ndarray, iters: int = 3000) -> np.ndarray:
    """The least-squares weights (K,) on the simplex of family curves (n, K) for y (n,), by
    exponentiated gradient descent, floored at 1e-3 and renormalised."""
    w = np.full(curves_seen.shape[1], 1.0 / curves_seen.shape[1])
    for _ in range(iters):
        grad = 2.0 * curves_seen.T @ (curves_seen @ w - y)
        w = w * np.exp(-0.5 * grad / (np.abs(grad).max() + 1e-12))
        w /= w.sum()
    w = np.maximum(w, 1e-3)
    return w / w.sum()


_default_start = curves._start_walkers


def _ls_start(posterior, fits, walkers, rng):
    """The default start with each walker's v multiplied by K * (least-squares weights);
    walkers that leave the support take the place of ones that did not."""
    start = _default_start(posterior, fits, walkers, rng)
    n = len(posterior.y)
    pairs = zip(posterior.families, fits, strict=True)
    seen = np.stack([f(posterior.x, t)[0, :n] for f, t in pairs], axis=1)  # (n, K)
    moved = start.copy()
    moved[:, posterior.n_theta : -1] *= ls_weights(seen, posterior.y) * len(fits)
    total, _ = posterior.curves(moved)
    moved[:, -1] = np.maximum(np.sqrt(((total[:, :n] - posterior.y) ** 2).mean(1)), 2e-4)
    good = np.flatnonzero(np.isfinite(posterior(moved)))
    if not len(good):
        raise RuntimeError("no walker of the least-squares start lies in the support")
    bad = np.flatnonzero(~np.isfinite(posterior(moved)))
    moved[bad] = moved[good[np.arange(len(bad)) % len(good)]]
    return moved


def fit(curve, n: int, sampler: str, seed: int, ls: bool = False):
    curves._start_walkers = _ls_start if ls else _default_start
    try:
        began = time.perf_counter()
        p = curves.LearningCurveModel(seed=seed, sampler=sampler).fit(curve[:n], len(curve))
        return p, time.perf_counter() - began
    finally:
        curves._start_walkers = _default_start


def weights_acceptance(p) -> float:
    return float(p.block_acceptance[-1]) if p.block_acceptance is not None else p.acceptance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curves", type=int, default=40)
    parser.add_argument("--check", type=int, default=8)
    parser.add_argument("--epochs", default="6,10")
    parser.add_argument("--samplers", default="joint,blocked")
    args = parser.parse_args()
    archs = json.loads(TRUTH.read_text())["archs"][: args.curves]
    samplers = args.samplers.split(",")
    print("| sampler | n | MAE | mean error | coverage 2 std | tau | tau of y_n | s / fit", end="")
    print(" | acc. w |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in [int(e) for e in args.epochs.split(",")]:
        truth = np.array([a["val_curve"][-1] for a in archs])
        last_seen = np.array([a["val_curve"][n - 1] for a in archs])
        for sampler in samplers:
            rows = [fit(a["val_curve"], n, sampler, seed=i) for i, a in enumerate(archs)]
            mean = np.array([p.mean[-1] for p, _ in rows])
            std = np.array([p.std[-1] for p, _ in rows])
            err = mean - truth
            print(
                f"| {sampler} | {n} | {np.abs(err).mean():.4f} | {err.mean():+.4f} | "
                f"{np.mean(np.abs(err) <= 2 * std):.2f} | {kendall_tau(mean, truth):.3f} | "
                f"{kendall_tau(last_seen, truth):.3f} | {np.mean([s for _, s in rows]):.2f} | "
                f"{np.mean([weights_acceptance(p) for p, _ in rows]):.3f} |",
                flush=True,
            )
    print("\nstuck-start check (n = 6): equal-weight start vs least-squares-weight start")
    print("| sampler | mean abs diff of mean | of std | TV distance of mean weights |")
    print("| --- | ---: | ---: | ---: |")
    for sampler in samplers:
        d_mean, d_std, d_w = [], [], []
        for i, a in enumerate(archs[: args.check]):
            p, _ = fit(a["val_curve"], 6, sampler, seed=i)
            q, _ = fit(a["val_curve"], 6, sampler, seed=i, ls=True)
            d_mean.append(abs(p.mean[-1] - q.mean[-1]))
            d_std.append(abs(p.std[-1] - q.std[-1]))
            d_w.append(0.5 * np.abs(p.weights - q.weights).sum())
        print(
            f"| {sampler} | {np.mean(d_mean):.4f} | {np.mean(d_std):.4f} | {np.mean(d_w):.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
