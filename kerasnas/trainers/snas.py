"""SNAS: weights and architecture logits updated together, from the same batch.

loss = cross-entropy + lambda * resource penalty (see :func:`kerasnas.resource.penalty`;
lambda fixed, or adapted to a cost target: :mod:`kerasnas.trainers.penalty`);
the Gumbel-softmax temperature anneals linearly from `temperature_start` to
`temperature_end` over the epochs (with a time budget: over the budget, set before every
step, see :class:`~kerasnas.trainers.base.LoopConfig`).
"""

from __future__ import annotations

import tensorflow as tf

from kerasnas.errors import SettingError
from kerasnas.layers import set_temperature
from kerasnas.trainers.base import linear, linear_at
from kerasnas.trainers.config import SNASConfig
from kerasnas.trainers.penalty import PenalizedTrainer

GUMBEL_HARD_DISTRIBUTED = (
    "{relaxation}=gumbel_hard cannot be combined with a tf.distribute strategy "
    "({distribution}): its one-op branches would all-reduce batch-norm moments inside a "
    "conditional, which tf.distribute does not support"
)


class SNASTrainer(PenalizedTrainer):
    """Stochastic NAS on any Keras model with MixedOp layers (relaxation gumbel or
    gumbel_hard). Call :meth:`fit`; derive the child with the search space's ``derive`` or
    :func:`kerasnas.derive_model`."""

    name = "snas"
    relaxations = ("gumbel", "gumbel_hard")

    def __init__(
        self, model, config: SNASConfig | None = None, output_dir=None, verbose=1, strategy=None
    ):
        super().__init__(model, config or SNASConfig(), output_dir, verbose, strategy)
        if strategy is not None and any(m.relaxation == "gumbel_hard" for m in self.mixed):
            raise SettingError(GUMBEL_HARD_DISTRIBUTED)

    def temperature(self, epoch: int, fraction: float | None = None) -> float:
        """The temperature of `epoch` (linear, `temperature_end` at the last epoch) or,
        with a time budget, at `fraction` of it spent (`temperature_end` at 1)."""
        c = self.config
        if fraction is not None:
            return linear_at(fraction, c.temperature_start, c.temperature_end)
        return linear(epoch, c.epochs, c.temperature_start, c.temperature_end)

    def set_schedules(self, epoch, fraction=None):
        logs = super().set_schedules(epoch, fraction)
        tau = self.temperature(epoch, fraction)
        set_temperature(self.model, tau)
        return {**logs, "temperature": tau}

    def train_step(self, x, y):
        c = self.config
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            task, acc = self.loss_and_accuracy(y, logits)
            loss = task
            logs = {"loss": task, "accuracy": acc}
            if self.penalty.active:
                term, logs["penalty"] = self.penalty.term()
                loss = loss + term
        grads = tape.gradient(loss, self.weight_vars + self.arch_vars)
        n = len(self.weight_vars)
        # a gumbel_hard edge runs one op: its other candidates are not trained this step
        active = None
        if any(m.relaxation == "gumbel_hard" for m in self.mixed):
            active = self.candidate_masks(
                lambda m: m.sampled_index() if m.relaxation == "gumbel_hard" else None
            )
        self.apply_update(
            self.w_opt, grads[:n], self.weight_vars, c.w_grad_clip, c.w_weight_decay, active
        )
        self.apply_update(self.a_opt, grads[n:], self.arch_vars, c.a_grad_clip, c.a_weight_decay)
        return logs

    def estimator_name(self) -> str:
        return self.config.resource_estimator
