"""Learning-curve extrapolation as an estimator: stop trials unlikely to beat the best.

Domhan, Springenberg and Hutter (IJCAI 2015): train a trial epoch by epoch, measuring the
validation accuracy after each; from a minimum number of epochs on, fit the learning-curve
model (:mod:`kerasnas.estimation.curves`) to the curve so far and predict the accuracy at
the last epoch of the budget; stop the trial when the predicted probability of beating the
best accuracy so far falls below `threshold` (the paper: 5%). A stopped trial reports the
predicted mean as its accuracy (the paper returns the prediction to the optimiser); a trial
that runs to the end reports its measured accuracy. Before any trial has completed there is
no best, so the first trial always runs in full.

Costs: one validation pass per epoch (full training measures only the last) and one curve
fit per check (about 1 s on one core with the default sampler).
"""

from __future__ import annotations

import math
import zlib

from kerasnas.estimation.base import Estimate, Estimator, TrialContext
from kerasnas.estimation.curves import LearningCurveModel

__all__ = ["LearningCurveStopping"]


class LearningCurveStopping(Estimator):
    """Stops a trial whose extrapolated curve is unlikely to beat the best so far.

    Args:
      min_fraction: the first check comes after this fraction of the budget's epochs (at
        least 2 epochs), in (0, 1).
      every: epochs between checks after the first, >= 1.
      threshold: stop when P(final accuracy > best so far) < threshold, in (0, 1).
      seed: seeds the curve model's sampler (with the trial id).
    """

    name = "lc"

    def __init__(
        self, min_fraction: float = 0.3, every: int = 1, threshold: float = 0.05, seed: int = 0
    ):
        if not 0.0 < min_fraction < 1.0:
            raise ValueError(
                f"LearningCurveStopping: min_fraction must be in (0, 1), got {min_fraction!r}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"LearningCurveStopping: every must be an int >= 1, got {every!r}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(
                f"LearningCurveStopping: threshold must be in (0, 1), got {threshold!r}"
            )
        self.min_fraction = float(min_fraction)
        self.every = every
        self.threshold = float(threshold)
        self.seed = int(seed)

    def describe(self) -> str:
        return (
            f"lc: stop when P(beat best) < {self.threshold:g}, checks from "
            f"{self.min_fraction:.0%} of the epochs, every {self.every}"
        )

    def first_check(self, epochs: int) -> int:
        """The epoch (1-based) of the first check for a budget of `epochs`."""
        return max(2, math.ceil(self.min_fraction * epochs))

    def estimate(self, trial: TrialContext) -> Estimate:
        model = trial.build(trial.arch)
        curve: list[float] = []
        first = self.first_check(trial.epochs)
        prediction = None
        seed = zlib.crc32(f"{self.seed}/{trial.trial_id}".encode()) % (2**31 - 1)
        for epoch in range(trial.epochs):
            trial.train_epoch(model, epoch)
            curve.append(trial.evaluate(model))
            n = epoch + 1
            if n < first or n == trial.epochs or (n - first) % self.every:
                continue
            prediction = LearningCurveModel(seed=seed).fit(curve, trial.epochs)
            if not math.isfinite(trial.best_accuracy):
                continue
            if prediction.prob_greater(trial.best_accuracy) < self.threshold:
                mean = float(prediction.mean[-1])
                return Estimate(
                    mean,
                    model,
                    n,
                    curve,
                    stopped_early=True,
                    predicted_accuracy=mean,
                    predicted_std=float(prediction.std[-1]),
                )
        return Estimate(
            curve[-1],
            model,
            trial.epochs,
            curve,
            predicted_accuracy=None if prediction is None else float(prediction.mean[-1]),
            predicted_std=None if prediction is None else float(prediction.std[-1]),
        )
