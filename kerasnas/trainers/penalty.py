"""The resource penalty of the trainers that learn architecture logits (SNAS, DARTS): a
fixed weight lambda, or a cost target whose weight adapts (:mod:`kerasnas.target`).

:class:`ResourcePenalty` is held by the trainer. In the compiled step,
:meth:`~ResourcePenalty.term` gives ``lambda * surrogate`` (the surrogate of
:func:`kerasnas.resource.penalty`), lambda read from a variable so that changing it does not
retrace. With a target, :meth:`~ResourcePenalty.after_step` runs after every step in Python:
it computes the derived child's cost and makes one dual-ascent step on lambda.

The derived child's cost is ``fixed + table cost``: the table cost sums the cost-table rows
(:attr:`kerasnas.layers.MixedOp.cost_table`) of the ops the child keeps, the fixed part is
what the child has besides them (stem, cell preprocessing, classifier). By default the child
is every MixedOp's argmax and the fixed part 0, i.e. the cost of the MixedOps alone (any
Keras model). A search space that knows better sets :attr:`~ResourcePenalty.table_cost` (its
derivation rule, e.g. DARTS' top-2) and :attr:`~ResourcePenalty.child_model` (the child as a
Keras model); :meth:`~ResourcePenalty.calibrate` then measures the fixed part once: counted
for params, flops and mac (:func:`kerasnas.resource.network_cost`, exact), and for latency
the child's LiteRT latency minus its table cost (the intercept of the table's prediction,
re-measured at the end of every epoch whose child changed, because per-op sums do not add up
exactly and the intercept differs from child to child).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas import distribute, resource
from kerasnas.target import DualAscent, Target, format_cost
from kerasnas.trainers.base import OneShotTrainer

# the settings of PenaltyConfig (what a checkpoint of a trainer without a penalty lacks)
PENALTY_FIELDS = (
    "resource",
    "resource_lambda",
    "resource_form",
    "target",
    "target_lr",
    "target_band",
    "target_project",
)
CALIBRATE_EVERY = 5  # epochs between latency calibrations of the fixed part
# with target_project, the share of the epochs after which a child outside the band is
# projected into it while the search goes on (the rest of the search adapts the weights)
PROJECT_FROM = 0.5


def argmax_table_cost(layers, res: str) -> float:
    """Cost of every MixedOp's most likely op, summed (units of `res`: count or ms)."""
    total = 0.0
    for layer in layers:
        p = keras.ops.convert_to_numpy(layer.probabilities())
        total += float(resource.cost_column(layer, res)[int(np.argmax(p))])
    return total


def measured_cost(model: keras.Model, res: str, num_threads: int = 1) -> float:
    """The cost of a built Keras model: counted (params, flops, mac) or its float TFLite
    latency in ms (LiteRT, `num_threads`)."""
    if res != "latency":
        return float(resource.network_cost(model).get(res))
    from kerasnas.export import litert

    return float(litert.child_latency_ms(litert.convert_keras_frozen(model), num_threads))


class ResourcePenalty:
    """The penalty term of a trainer (see the module doc).

    Args:
      layers: the model's MixedOp layers.
      config: a :class:`~kerasnas.trainers.config.PenaltyConfig`.
      estimator: the gradient estimator of :func:`kerasnas.resource.penalty`.
    """

    def __init__(self, layers, config, estimator: str = "reparam"):
        self.layers = layers
        self.config = config
        self.estimator = estimator
        self.resource = config.penalty_resource
        self.target = None if config.target is None else Target.parse(config.target)
        self.controller = (
            None
            if self.target is None
            else DualAscent(
                self.target.value, config.target_lr, config.target_band, config.resource_lambda
            )
        )
        self.weight = keras.Variable(
            float(config.resource_lambda), trainable=False, name="penalty_weight", dtype="float32"
        )
        # the derived child: its table cost, and the model (for the fixed part)
        self.table_cost: Callable[[], float] = lambda: argmax_table_cost(layers, self.resource)
        self.child_model: Callable[[], keras.Model] | None = None
        # with target_project: moves the derived child into the band (returns what it did,
        # None when there was nothing to do); called at the end of epochs from PROJECT_FROM
        self.project_child: Callable[[], str | None] | None = None
        self.projections: list[dict[str, Any]] = []
        # what identifies the derived child (latency: re-measured when it changes)
        self.child_key: Callable[[], Hashable] | None = None
        self._measured_key: Hashable | None = None
        self.fixed = 0.0
        self.calibrate_every = CALIBRATE_EVERY
        self.calibrations: list[dict[str, float]] = []
        self.last_cost: float | None = None

    def weight_value(self) -> float:
        """The current penalty weight lambda."""
        return float(self.weight.numpy())

    @property
    def active(self) -> bool:
        """Whether the step adds the penalty (a target, or a weight > 0)."""
        return self.target is not None or self.config.resource_lambda > 0

    def term(self, estimator: str | None = None):
        """(``lambda * surrogate``, the penalty's logged value) for the compiled step."""
        c = self.config
        surrogate, value = resource.penalty(
            self.layers, self.resource, c.resource_form, estimator or self.estimator
        )
        weight = tf.cast(self.weight.value, surrogate.dtype)
        return weight * distribute.share(surrogate), distribute.share(value)

    def child_cost(self) -> float:
        """Cost of the child the search would return now (units of the resource)."""
        return self.fixed + self.table_cost()

    def calibrate(self, log=None) -> None:
        """Measures the fixed part on the current child (see the module doc); no-op
        without :attr:`child_model`."""
        if self.child_model is None:
            return
        if self.child_key is not None:
            self._measured_key = self.child_key()
        child = self.child_model()
        table = self.table_cost()
        measured = measured_cost(child, self.resource, self.config.latency_threads)
        self.fixed = measured - table
        self.calibrations.append({"measured": measured, "table": table, "fixed": self.fixed})
        if log is not None and len(self.calibrations) == 1:
            log(
                f"cost target {self.target}: the child's fixed part (stem, input normalisation, "
                f"classifier) is {format_cost(self.fixed, self.resource)}"
            )

    def after_step(self) -> None:
        """With a target: one dual-ascent step on lambda with the derived child's cost."""
        if self.controller is None:
            return
        self.last_cost = self.child_cost()
        self.weight.assign(self.controller.update(self.last_cost))

    def outside_band(self) -> bool:
        """Whether the derived child's cost is outside the target's band."""
        return abs(self.controller.error(self.child_cost())) > self.controller.band

    def project(self, epoch: int, epochs: int, budget_fraction: float | None = None) -> str | None:
        """With :attr:`project_child`: from epoch ``PROJECT_FROM * epochs`` on (with a time
        budget: from epochs that began with ``budget_fraction`` >= ``PROJECT_FROM`` of it
        spent), a child outside the band at an epoch's end is projected into it; returns
        the message. The last epoch is left to the job's final projection."""
        if budget_fraction is None:
            due = math.ceil(PROJECT_FROM * epochs) <= epoch + 1 < epochs
        else:  # the last epoch is not known in advance: one more projection is harmless
            due = budget_fraction >= PROJECT_FROM and epoch + 1 < epochs
        if (
            self.controller is None
            or self.project_child is None
            or not due
            or not self.outside_band()
        ):
            return None
        before = self.child_cost()
        message = self.project_child()
        if message is not None:
            self.projections.append(
                {"epoch": epoch + 1, "before": before, "after": self.child_cost()}
            )
        return message

    def on_epoch_end(self, epoch: int) -> None:
        """Re-measures a latency target's fixed part at the end of every epoch whose derived
        child differs from the child last measured (without :attr:`child_key`: every
        :attr:`calibrate_every` epochs). The intercept differs from child to child (on
        digits, -0.015 to +0.022 ms for children of 0.03-0.09 ms), so the controller steers
        by the measured latency of the child it is judging, not a stale intercept."""
        if self.controller is None or self.resource != "latency":
            return
        if self.child_key is not None:
            if self.child_key() != self._measured_key:
                self.calibrate()
        elif self.calibrate_every and (epoch + 1) % self.calibrate_every == 0:
            self.calibrate()

    def extras(self) -> dict[str, float]:
        """Per-epoch figures: the expected cost of the distribution and, with a target, the
        weight, the derived child's cost and its ratio to the target."""
        res = self.resource
        out = {f"expected_{res}": resource.expected_cost(self.layers, res)}
        if self.controller is not None:
            cost = self.child_cost()
            out["penalty_weight"] = self.weight_value()
            out["penalty_multiplier"] = self.controller.mu
            out[f"child_{res}"] = cost
            out["target_ratio"] = self.target.ratio(cost)
        return out

    def state(self) -> dict[str, Any]:
        """JSON-able state for checkpoints (the weight itself is a checkpointed variable)."""
        state = {
            "fixed": self.fixed,
            "calibrations": self.calibrations,
            "projections": self.projections,
        }
        if self.controller is not None:
            state["controller"] = self.controller.state()
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        self.fixed = float(state.get("fixed", 0.0))
        self.calibrations = list(state.get("calibrations", []))
        self.projections = list(state.get("projections", []))
        if self.controller is not None:
            self.controller.set_state(state.get("controller", {}))

    def summary(self) -> dict[str, Any]:
        """The target's outcome for metrics.json (empty without a target)."""
        if self.target is None:
            return {}
        cost = self.child_cost()
        return {
            "target": str(self.target),
            "target_resource": self.resource,
            "target_value": self.target.value,
            "predicted_child_cost": cost,
            "predicted_target_ratio": self.target.ratio(cost),
            "final_penalty_weight": self.weight_value(),
            "fixed_cost": self.fixed,
            "calibrations": self.calibrations,
            "search_projections": self.projections,
        }


class PenalizedTrainer(OneShotTrainer):
    """A one-shot trainer with a resource penalty (SNAS, DARTS): holds a
    :class:`ResourcePenalty` (``self.penalty``) and runs its per-step, per-epoch and
    checkpoint work; subclasses add ``self.penalty.term()`` to their architecture loss.

    `estimator`: the penalty's gradient estimator (:func:`kerasnas.resource.penalty`).
    """

    estimator = "expected"

    def __init__(self, model, config, *args: Any, **kwargs: Any):
        super().__init__(model, config, *args, **kwargs)
        with self.scope():
            self.penalty = ResourcePenalty(self.mixed, self.config, self.estimator_name())
        self._latency_ready = False
        self.latency_table = None  # a kerasnas.latency.LatencyTable, for latency penalties

    def estimator_name(self) -> str:
        return self.estimator

    def prepare_resources(self) -> None:
        """Measures (or reads from the cache) the latency table of the model's MixedOps when
        the penalty charges latency, then calibrates a target's fixed part; :meth:`fit`
        calls it before tracing the step."""
        c = self.config
        if self.penalty.resource == "latency" and not self._latency_ready:
            from kerasnas import latency

            self.latency_table = latency.attach_latency(
                self.mixed,
                cache_dir=c.latency_cache,
                num_threads=c.latency_threads,
                verbose=self.verbose,
            )
            self._latency_ready = True
        if self.penalty.target is not None and not self.penalty.calibrations:
            self.penalty.calibrate(print if self.verbose else None)
            if self.latency_table is not None:
                self.latency_table.save()  # what calibrating measured (cell preprocessing)

    def config_dict(self) -> dict[str, Any]:
        config = super().config_dict()
        config.pop("latency_cache", None)  # where the table lives does not change the search
        config.pop("target_project", None)  # nor does how the child is derived at the end
        if self.config.target is None:  # checkpoints from before targets resume
            config.pop("target", None)
            config.pop("target_lr", None)
            config.pop("target_band", None)
        return config

    def fit(self, data, resume: bool = False) -> list[dict]:
        self.prepare_resources()
        return super().fit(data, resume)

    def after_step(self) -> None:
        self.penalty.after_step()

    def on_epoch_end(self, data, epoch: int) -> dict[str, float]:
        out = super().on_epoch_end(data, epoch)
        self.penalty.on_epoch_end(epoch)  # latency: the current child measured first
        # with a time budget, the fraction spent when the epoch began
        message = self.penalty.project(epoch, self.config.epochs, self.budget_fraction())
        if message is not None:
            if self.verbose:
                print(f"epoch {epoch + 1}: {message}", flush=True)
            self.penalty.on_epoch_end(epoch)  # and the projected child
        return out

    def epoch_extras(self) -> dict[str, float]:
        return {**super().epoch_extras(), **self.penalty.extras()}

    def extra_variables(self) -> list:
        # the weight only with a target (a fixed weight is the config's): checkpoints of
        # fixed-weight searches keep their old layout
        extra = [self.penalty.weight] if self.penalty.target is not None else []
        return [*super().extra_variables(), *extra]

    def extra_state(self) -> dict[str, Any]:
        state = super().extra_state()
        if self.penalty.target is not None:
            state["penalty"] = self.penalty.state()
        return state

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        if "penalty" in state:
            self.penalty.set_state(state["penalty"])
