"""Lower-fidelity estimates (the NAS survey's first cheap estimator): fewer epochs, part of
the training data.

The score is the validation accuracy after the reduced training. It is biased low, and
useful only while the *ranking* of architectures stays that of full training (the survey's
caveat; ``benchmarks/estimators.py`` measures the rank correlation).
"""

from __future__ import annotations

from kerasnas.estimation.base import Estimate, Estimator, TrialContext

__all__ = ["LowFidelity"]


class LowFidelity(Estimator):
    """Trains each child for `epochs` epochs on `data_fraction` of the training split.

    Args:
      epochs: epochs of the proxy (None: the trial's budget), >= 1.
      data_fraction: fraction of the training split, in (0, 1]; the split's part 0 of
        ``round(1 / data_fraction)`` (examples 0, n, 2n, ... of its fixed order), so the
        fraction used is 1/n (1/2, 1/3, ...).
    """

    name = "proxy"

    def __init__(self, epochs: int | None = 1, data_fraction: float = 1.0):
        if epochs is not None and (
            isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
        ):
            raise ValueError(f"LowFidelity: epochs must be an int >= 1 or None, got {epochs!r}")
        if not 0.0 < data_fraction <= 1.0:
            raise ValueError(f"LowFidelity: data_fraction must be in (0, 1], got {data_fraction!r}")
        self.epochs = epochs
        self.parts = max(1, round(1.0 / data_fraction))

    @property
    def data_fraction(self) -> float:
        """The fraction of the training split in use (1/n)."""
        return 1.0 / self.parts

    def describe(self) -> str:
        epochs = "the budget's epochs" if self.epochs is None else f"{self.epochs} epoch(s)"
        return f"proxy: {epochs} on {self.data_fraction:.3g} of the training data"

    def estimate(self, trial: TrialContext) -> Estimate:
        epochs = trial.epochs if self.epochs is None else self.epochs
        model = trial.build(trial.arch)
        for epoch in range(epochs):
            data = None
            if self.parts > 1:
                data = trial.bundle.train(epoch, trial.batch_size, part=(0, self.parts))
            trial.train_epoch(model, epoch, dataset=data)
        return Estimate(trial.evaluate(model), model, epochs * self.data_fraction)
