"""SNAS: weights and architecture logits updated together, from the same batch.

loss = cross-entropy + lambda * resource penalty (see :func:`kerasnas.resource.penalty`);
the Gumbel-softmax temperature anneals linearly from `temperature_start` to
`temperature_end` over the epochs (with a time budget: over the budget, set before every
step, see :class:`~kerasnas.trainers.base.LoopConfig`).
"""

from __future__ import annotations

import tensorflow as tf

from kerasnas import distribute, resource
from kerasnas.errors import SettingError
from kerasnas.layers import set_temperature
from kerasnas.trainers.base import OneShotTrainer, linear, linear_at
from kerasnas.trainers.config import SNASConfig

GUMBEL_HARD_DISTRIBUTED = (
    "{relaxation}=gumbel_hard cannot be combined with a tf.distribute strategy "
    "({distribution}): its one-op branches would all-reduce batch-norm moments inside a "
    "conditional, which tf.distribute does not support"
)


class SNASTrainer(OneShotTrainer):
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
        self._latency_ready = False

    def prepare_resources(self) -> None:
        """Measures (or reads from the cache) the latency table of the model's MixedOps when
        ``config.resource == "latency"``; :meth:`fit` calls it before tracing the step."""
        c = self.config
        if c.resource != "latency" or self._latency_ready:
            return
        from kerasnas import latency

        latency.attach_latency(
            self.mixed,
            cache_dir=c.latency_cache,
            num_threads=c.latency_threads,
            verbose=self.verbose,
        )
        self._latency_ready = True

    def fit(self, data, resume: bool = False) -> list[dict]:
        self.prepare_resources()
        return super().fit(data, resume)

    def config_dict(self) -> dict:
        config = super().config_dict()
        config.pop("latency_cache", None)  # where the table lives does not change the search
        return config

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
            if c.resource_lambda > 0:
                surrogate, value = resource.penalty(
                    self.mixed, c.resource, c.resource_form, c.resource_estimator
                )
                loss = loss + c.resource_lambda * distribute.share(surrogate)
                logs["penalty"] = distribute.share(value)
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

    def epoch_extras(self):
        extras = super().epoch_extras()
        extras[f"expected_{self.config.resource}"] = resource.expected_cost(
            self.mixed, self.config.resource
        )
        return extras
