"""What every performance estimator shares: the trial it is given, what it returns.

A trial-based search (:class:`~kerasnas.multitrial.runner.ArchTuner`) asks its estimator,
once per trial, how good the trial's architecture is. The oracle sees only the returned
:class:`Estimate`'s accuracy (through the reward), so any oracle works with any estimator.
The estimator gets a :class:`TrialContext`: the architecture, the data, the budget, what
the search knows so far, and the trial runner's own building, training and evaluation, so
that every estimator trains a child exactly as full training does unless it means not to.

:class:`FullTraining` is the survey's baseline: ``epochs`` epochs from scratch, then the
validation accuracy.

An estimator that builds on earlier trials' trained weights (``keeps_models``) has the
runner save every trial's model and reads them back with :attr:`TrialContext.load_model`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import keras

    from kerasnas.data import DataBundle
    from kerasnas.search_spaces.base import Arch, DiscreteSpace

__all__ = ["Estimate", "Estimator", "FullTraining", "TrialContext"]


def _no_model(trial_id: str) -> None:
    return None


@dataclasses.dataclass
class Estimate:
    """An estimator's answer for one trial.

    Attributes:
      val_accuracy: the accuracy the reward is computed from, in [0, 1]: measured on the
        validation split, or predicted (``predicted_accuracy``) for a trial stopped early.
      model: the trained model (saved when it is the best so far), or None.
      epochs: epochs trained (fractional for a data-fraction proxy: epochs x fraction).
      curve: validation accuracy after each epoch, where the estimator measured it.
      stopped_early: whether the estimator ended the training before its budget.
      predicted_accuracy, predicted_std: a prediction of the accuracy after the full budget,
        where the estimator made one.
      inherited_from: the trial whose weights the model started from, if any.
    """

    val_accuracy: float
    model: keras.Model | None
    epochs: float
    curve: list[float] = dataclasses.field(default_factory=list)
    stopped_early: bool = False
    predicted_accuracy: float | None = None
    predicted_std: float | None = None
    inherited_from: str | None = None

    def record(self) -> dict[str, Any]:
        """The fields ``history.csv`` and ``result.json`` keep (not the model)."""
        return {
            "epochs_trained": self.epochs,
            "stopped_early": self.stopped_early,
            "predicted_accuracy": self.predicted_accuracy,
            "predicted_std": self.predicted_std,
            "inherited_from": self.inherited_from,
            "val_curve": list(self.curve),
        }


@dataclasses.dataclass
class TrialContext:
    """One trial, as an estimator sees it.

    Attributes:
      trial_id: keras-tuner's id of the trial.
      arch: the architecture (``space.from_hyperparameters``).
      space, bundle: the search space and the data.
      epochs: the full-training budget of this trial (Hyperband may set a smaller one).
      batch_size: the minibatch size.
      best_accuracy: the best validation accuracy of the trials completed so far (-inf
        before the first).
      completed: ``result.json`` of every trial completed so far (oldest first).
      build: ``build(arch, space=None, resolution=None)`` -> a compiled model of `arch`
        (of `space`, None: the search's; e.g. a reduced one), seeded by the trial; with
        `resolution` (H, W) the model resizes the data's images to it before its layers.
      train_epoch: ``train_epoch(model, epoch, dataset=None)`` trains one epoch on the
        train split (or `dataset`) and tells a distributed chief the trial is alive.
      evaluate: ``evaluate(model)`` -> validation accuracy.
      values: the trial's hyperparameter values as the oracle issued them: the
        architecture's decisions and any extra entries (e.g. ``tuner/epochs``, or the
        ``morphism/*`` lineage of :mod:`~kerasnas.estimation.inheritance`).
      load_model: ``load_model(trial_id)`` -> the trained model of a completed trial, or
        None when it was not kept (the runner keeps every trial's model only for an
        estimator with ``keeps_models``; otherwise only models that were best so far).
      directory: a directory of the search where an estimator may keep files that a
        resumed search reads again (the keras-tuner project), or None.
    """

    trial_id: str
    arch: Arch
    space: DiscreteSpace
    bundle: DataBundle
    epochs: int
    batch_size: int
    best_accuracy: float
    completed: list[dict[str, Any]]
    build: Callable[..., keras.Model]
    train_epoch: Callable[..., None]
    evaluate: Callable[[keras.Model], float]
    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    load_model: Callable[[str], keras.Model | None] = _no_model
    directory: str | None = None


class Estimator:
    """Estimates how good an architecture is (see the module doc). Subclasses set ``name``
    and implement :meth:`estimate`; settings are constructor arguments, validated there with
    a ``ValueError`` that names the argument.

    ``keeps_models``: when True the runner saves every trial's trained model (not only the
    best so far) in its trial directory, for :attr:`TrialContext.load_model`."""

    name: ClassVar[str] = ""
    keeps_models: ClassVar[bool] = False

    def estimate(self, trial: TrialContext) -> Estimate:
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the search's progress output."""
        return self.name


class FullTraining(Estimator):
    """The trial's full budget from scratch, then its validation accuracy."""

    name = "full"

    def estimate(self, trial: TrialContext) -> Estimate:
        model = trial.build(trial.arch)
        for epoch in range(trial.epochs):
            trial.train_epoch(model, epoch)
        return Estimate(trial.evaluate(model), model, trial.epochs)
