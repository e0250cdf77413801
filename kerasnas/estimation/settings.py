"""The estimator of a trial-based search as settings (``kerasnas-search`` flags), and the
:class:`~kerasnas.estimation.base.Estimator` they make. TensorFlow-free."""

from __future__ import annotations

import dataclasses

from kerasnas import options
from kerasnas.errors import SettingError
from kerasnas.options import option

__all__ = ["ESTIMATORS", "EstimationSettings"]

ESTIMATORS = ("full", "proxy", "lc", "morphism", "hypernet")


@dataclasses.dataclass
class EstimationSettings:
    """How each trial is scored: ``full`` training (the trial's epochs, from scratch),
    ``proxy`` (lower fidelity: `proxy_epochs` epochs on `proxy_data_fraction` of the
    training data, images downsampled to `proxy_resolution` pixels, filters scaled by
    `proxy_width`, the cell space's cells by `proxy_depth`), ``lc`` (full training, stopped
    when the extrapolated learning curve is unlikely to beat the best trial; Domhan et al.
    2015), ``morphism`` (a child an oracle
    made by network morphisms of a completed trial, ``nash`` or ``lemonade``, starts from
    that trial's weights and trains `morphism_epochs` epochs; other trials train in full;
    every trial's model is kept in its trial directory) or ``hypernet`` (the ``nasrl`` space
    only: a SMASH-style hypernetwork, trained once for `hypernet_steps` minibatches of
    sampled architectures, scores every trial with generated weights; no trial is trained,
    the best is trained when the search ends; Brock et al. 2018)."""

    estimator: str = option("full", "How each trial is scored.", choices=ESTIMATORS)
    proxy_epochs: int = option(1, "proxy: epochs of training per child.", at_least=1)
    proxy_data_fraction: float = option(
        0.5, "proxy: fraction of the training data (1/n: 0.5, 0.333, ...).", above=0
    )
    proxy_resolution: int | None = option(
        None,
        "proxy: side in pixels the images are downsampled to (e.g. 4 or 6 for 8x8 digits; "
        "None: the data's).",
        at_least=1,
    )
    proxy_width: float = option(
        1.0, "proxy: filters / channels / units multiplier, in (0, 1].", above=0
    )
    proxy_depth: float = option(
        1.0, "proxy: cell space: number-of-cells multiplier, in (0, 1] (min 3 cells).", above=0
    )
    lc_threshold: float = option(
        0.05, "lc: stop when P(final accuracy > best so far) is below this.", above=0, below=1
    )
    lc_min_fraction: float = option(
        0.3, "lc: first check after this fraction of the trial's epochs.", above=0, below=1
    )
    lc_every: int = option(1, "lc: epochs between checks after the first.", at_least=1)
    morphism_epochs: int = option(
        1, "morphism: epochs of a child trained from its parent's weights.", at_least=1
    )
    hypernet_steps: int = option(
        1000,
        "hypernet: training minibatches of the hypernetwork (one sampled arch each).",
        at_least=1,
    )
    hypernet_seed: int | None = option(
        None,
        "hypernet: seed of its weights, sampling and data order (default: the search's).",
        at_least=0,
    )
    hypernet_lr: float = option(1e-3, "hypernet: Adam's learning rate.", above=0)

    def validate(self) -> None:
        """Raises SettingError naming the first bad field (the rules that need the space or
        the data are the search job's: ``TrialSettings.validate``, ``TrialSearch.prepare``)."""
        options.validate(self)
        for name in ("proxy_data_fraction", "proxy_width", "proxy_depth"):
            value = getattr(self, name)
            if value > 1:
                raise SettingError(f"{{{name}}} must be in (0, 1], got {value}")

    def make(self, seed: int = 0):
        """The :class:`~kerasnas.estimation.base.Estimator` of these settings."""
        if self.estimator == "proxy":
            from kerasnas.estimation.proxy import LowFidelity

            return LowFidelity(
                self.proxy_epochs,
                self.proxy_data_fraction,
                resolution=self.proxy_resolution,
                width_multiplier=float(self.proxy_width),
                depth_multiplier=float(self.proxy_depth),
            )
        if self.estimator == "lc":
            from kerasnas.estimation.lc import LearningCurveStopping

            return LearningCurveStopping(
                self.lc_min_fraction, self.lc_every, self.lc_threshold, seed=seed
            )
        if self.estimator == "morphism":
            from kerasnas.estimation.inheritance import MorphismInheritance

            return MorphismInheritance(self.morphism_epochs, seed=seed)
        if self.estimator == "hypernet":
            from kerasnas.estimation.hypernet import HyperNetEstimator

            return HyperNetEstimator(
                self.hypernet_steps,
                seed if self.hypernet_seed is None else self.hypernet_seed,
                self.hypernet_lr,
            )
        from kerasnas.estimation.base import FullTraining

        return FullTraining()
