"""The trainers' settings: dataclasses of :func:`~kerasnas.options.option` fields for the
shared loop (:class:`LoopConfig`), one-shot search (:class:`TrainerConfig` and SNAS', DARTS',
ENAS' and random sampling's) and retraining (:class:`RetrainConfig`). TensorFlow-free, so
the commands build their flags from them before importing TensorFlow; the trainers in
:mod:`kerasnas.trainers` take them (and export them under their old names)."""

from __future__ import annotations

import dataclasses

from kerasnas import options
from kerasnas.errors import SettingError
from kerasnas.names import CHILD_BN, DARTS_ORDERS, ESTIMATORS, RESOURCES
from kerasnas.names import PENALTY_FORMS as FORMS
from kerasnas.options import option

ORDERS = DARTS_ORDERS

__all__ = [
    "DARTSConfig",
    "ENASConfig",
    "LoopConfig",
    "PenaltyConfig",
    "RetrainConfig",
    "SNASConfig",
    "TrainerConfig",
    "WeightSharingConfig",
]


def _positive_int(config, name: str, minimum: int = 1) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclasses.dataclass
class LoopConfig:
    """Hyper-parameters of the shared loop and the weight optimizer (defaults: DARTS/SNAS).

    Weights: SGD with momentum `w_momentum`, coupled L2 decay `w_weight_decay`, gradients
    clipped to global norm `w_grad_clip`; the learning rate follows a cosine from `w_lr`
    (epoch 0) to `w_lr_min` over `epochs`, set once per epoch.

    `time_budget` (seconds; None: off): train until that many seconds are spent, then stop
    (`epochs` is an upper bound). The budget is checked after every step: the epoch in
    which it runs out ends early and still gets its end-of-epoch work, validation and
    checkpoint, so a run overshoots by at most one step plus that epoch-end work. What
    counts against it: the steps and the per-epoch search work (:meth:`Trainer.on_epoch_end`,
    e.g. ENAS' controller phase). What does not: start-up, i.e. the first call in the process
    of each compiled function the loop runs (its tracing, graph optimisation and that one
    call; :meth:`Trainer.startup`), measured as ``setup_seconds``; the per-epoch
    validation, summaries, logs and checkpoints (measurements only); what happens before or
    after :meth:`Trainer.fit`. Start-up is a fixed cost of the implementation, not of the
    algorithm: on digits it is 50-160 s per search and differs 3x between strategies (a
    weight-sharing step's graph holds 70 ``switch_case`` ops of 8 branches), so counting
    it would hand the strategies unequal training time. Every
    schedule (learning rate, SNAS temperature, drop-path rate) follows the fraction of the
    budget spent, set before every step instead of once per epoch, so it reaches its end
    value when the budget runs out. Results are not deterministic: the number of steps
    depends on the machine's speed and load.
    """

    epochs: int = option(50, "Training epochs.", at_least=1)
    batch_size: int = option(64, "Minibatch size.", at_least=1)
    w_lr: float = option(0.025, "Weight learning rate (SGD, cosine to w_lr_min).", above=0)
    w_lr_min: float = option(0.001, "Final weight learning rate.", at_least=0)
    w_momentum: float = option(0.9, "Momentum of the weights' SGD.", flag=False, at_least=0)
    w_weight_decay: float = option(3e-4, "Coupled L2 weight decay.", flag=False, at_least=0)
    w_grad_clip: float = option(5.0, "Global-norm gradient clip.", flag=False, above=0)
    jit_compile: bool = option(False, "Compile the training step with XLA.")
    seed: int = option(0, "Seed of data split, initialisation and sampling.")
    time_budget: float | None = option(
        None,
        "Seconds of training, then stop ({epochs} is then an upper bound); the schedules "
        "follow the fraction spent. Counts the steps and per-epoch search work, not start-up "
        "(tracing) or validation. Not deterministic. None: off (train {epochs} epochs).",
        above=0,
    )

    def validate(self) -> None:
        """Raises SettingError naming the first invalid field."""
        options.validate(self)


@dataclasses.dataclass
class TrainerConfig(LoopConfig):
    """Hyper-parameters of one-shot trainers that learn architecture logits (defaults: the
    SNAS/DARTS code): the loop's (see :class:`LoopConfig`) plus Adam for the logits
    (learning rate `a_lr` per step, betas, coupled L2 decay, global-norm clipping)."""

    a_lr: float = option(3e-4, "Architecture-logit learning rate (Adam).", above=0)
    a_beta_1: float = 0.5
    a_beta_2: float = 0.999
    a_weight_decay: float = option(1e-3, "Logits' coupled L2 decay.", at_least=0)
    a_grad_clip: float = option(10.0, "Logits' global-norm clip.", flag=False, above=0)
    # the collapse guard and its figures (kerasnas.trainers.collapse)
    collapse_guard: bool = option(
        False,
        "Stop the search when it collapses (DARTS-ES): the Hessian eigenvalue grows past "
        "{collapse_ratio} over {collapse_window} epochs, or the normal cell's parameter-free "
        "share passes {collapse_share}; the architecture of an earlier epoch is kept.",
    )
    collapse_ratio: float = option(
        1.3,
        "Growth of the mean |eigenvalue| over a window that stops the search (> 1); 0: no "
        "eigenvalue rule (nor eigenvalue, unless {hessian_every}), the share rule only.",
        at_least=0,
    )
    collapse_window: int = option(
        5, "Epochs of each window the eigenvalue is averaged over (DARTS-ES: 5).", at_least=1
    )
    collapse_share: float = option(
        0.6, "Normal-cell parameter-free share that stops the search (>= 1: never).", at_least=0
    )
    collapse_warmup: int = option(5, "Epochs the collapse guard never stops in.", at_least=0)
    hessian_every: int = option(
        0,
        "Epochs between measurements of the Hessian eigenvalue w.r.t. the logits (and at "
        "the last epoch); 0: never, unless {collapse_guard} (then every epoch).",
        at_least=0,
    )
    hessian_batches: int = option(
        1, "Validation batches the Hessian eigenvalue is measured on.", at_least=1
    )
    hessian_iterations: int = option(
        10, "Power iterations (Hessian-vector products per batch) of the eigenvalue.", at_least=1
    )

    def validate(self) -> None:
        super().validate()
        if 0 < self.collapse_ratio <= 1:
            raise SettingError(
                f"{{collapse_ratio}} must be > 1, or 0 (no eigenvalue rule), "
                f"got {self.collapse_ratio!r}"
            )


@dataclasses.dataclass
class PenaltyConfig(TrainerConfig):
    """A resource penalty on the architecture (SNAS and DARTS); see TrainerConfig too.

    resource: "params", "flops" or "mac" (units: millions) or "latency" (ms, from a LiteRT
    table measured on this machine, see :mod:`kerasnas.latency`); resource_lambda 0 disables
    the penalty. resource_form: "log" or "linear". latency_cache: directory of the latency
    tables (None: the default, ``~/.cache/kerasnas/latency``); latency_threads: LiteRT
    threads the latency is measured with.

    target: a cost the derived child must land on instead of a fixed weight, e.g.
    ``params:30k`` or ``latency:0.05ms`` (see :mod:`kerasnas.target`); the weight then
    adapts after every step by dual ascent (step `target_lr`, tolerance `target_band`; the
    multiplier starts at `resource_lambda`).
    The target's resource is the penalty's (`resource` must be left at its default or
    agree).
    """

    resource: str = option(
        "params",
        "Cost the penalty charges: trainable params, mult-adds, memory access, or latency "
        "(ms, a LiteRT table measured on this machine and cached, see {latency_cache}).",
        choices=RESOURCES,
    )
    resource_lambda: float = option(
        0.0,
        "Weight of the resource penalty (0: none); with {target}, the multiplier it starts from.",
        at_least=0,
    )
    resource_form: str = option("log", "Penalise log(C) or C (in millions).", choices=FORMS)
    latency_cache: str | None = option(
        None,
        "Directory of the {resource}=latency tables (default $KERASNAS_CACHE/latency, "
        "else ~/.cache/kerasnas/latency).",
    )
    latency_threads: int = option(
        1, "LiteRT threads the latency is measured with.", flag=False, at_least=1
    )
    target: str | None = option(
        None,
        "Cost the derived child must land on, instead of a hand-tuned {resource_lambda}: "
        "params:30k, flops:300k, mac:1.2M or latency:0.05ms (LiteRT on this machine). The "
        "penalty weight adapts after every step (dual ascent on log(child cost / target), "
        "the child being the one the search would return now). None: a fixed weight.",
    )
    target_lr: float = option(
        0.01,
        "With {target}: step of the penalty's multiplier per training step and unit of "
        "|log(child cost / target)| (dual ascent, kerasnas.target).",
        above=0,
    )
    target_band: float = option(
        0.05,
        "With {target}: the tolerance on |log(child cost / target)| the multiplier stops "
        "growing inside (0.05: about 5%).",
        above=0,
    )

    target_project: bool = option(
        True,
        "With {target}: if the searched child ends outside the band ({target_band}), derive "
        "the most probable child inside it instead (greedy single-edge changes, "
        "kerasnas.search_spaces.projection); metrics.json keeps the searched child's cost.",
    )

    def validate(self) -> None:
        super().validate()
        if self.target is None:
            return
        from kerasnas.target import Target

        target = Target.parse(self.target)
        default = PenaltyConfig.__dataclass_fields__["resource"].default
        if self.resource not in (default, target.resource):
            raise SettingError(
                f"{{target}} {self.target!r} charges {target.resource}, but {{resource}} is "
                f"{self.resource!r}: leave {{resource}} out (the target sets it) or make "
                "them agree"
            )

    @property
    def penalty_resource(self) -> str:
        """The resource the penalty charges: the target's when there is one."""
        if self.target is None:
            return self.resource
        from kerasnas.target import Target

        return Target.parse(self.target).resource


@dataclasses.dataclass
class SNASConfig(PenaltyConfig):
    """SNAS hyper-parameters (defaults from the authors' code); see PenaltyConfig and
    TrainerConfig too. resource_estimator: "reparam", "score" or "expected" (the gradient
    of the penalty)."""

    temperature_start: float = option(
        1.0, "Gumbel-softmax temperature at the first epoch.", above=0
    )
    temperature_end: float = option(
        0.03, "Temperature at the last epoch (linear schedule).", above=0
    )
    resource_estimator: str = option(
        "reparam",
        "Gradient of the penalty: reparameterised, score function, or exact expectation.",
        choices=ESTIMATORS,
    )


@dataclasses.dataclass
class DARTSConfig(PenaltyConfig):
    """DARTS hyper-parameters (defaults from the authors' code); see PenaltyConfig (a
    resource penalty on the architecture step, exact expectation) and TrainerConfig too.

    order: 1 (first-order approximation) or 2 (unrolled, through one virtual weight step).
    unrolled_eps: numerator of the finite-difference step of the second-order
    Hessian-vector product (eps = unrolled_eps / ||v||).
    """

    order: int = option(
        1,
        "DARTS order: 1 = first order (alternate steps); 2 = second order (one virtual weight "
        "step, Hessian-vector product by finite differences).",
        flag="darts_order",
        choices=ORDERS,
    )
    unrolled_eps: float = option(
        0.01, "Finite-difference step numerator (2nd order).", flag=False, above=0
    )


@dataclasses.dataclass
class WeightSharingConfig(LoopConfig):
    """Hyper-parameters of weight-sharing search (see LoopConfig too; the supernet's
    architecture logits are not learnt): `final_samples` children are sampled at the end
    and the best on the validation split is kept."""

    final_samples: int = option(
        10, "Children sampled at the end (the best is the result).", flag=False, at_least=1
    )
    child_bn: str = option(
        "recalibrate",
        "Batch norm of a scored child: 'recalibrate' (statistics recomputed on "
        "recalibration_batches training batches first), 'batch' (each batch's own "
        "statistics), 'moving' (the supernet's moving averages).",
        choices=CHILD_BN,
    )
    recalibration_batches: int = option(
        8, "Training batches a child's batch norm is recalibrated on.", at_least=1
    )


@dataclasses.dataclass
class ENASConfig(WeightSharingConfig):
    """ENAS hyper-parameters; the controller's defaults are those of the authors' CIFAR-10
    micro search (``scripts/cifar10_micro_search.sh`` and ``src/cifar10/main.py`` of
    melodyguan/enas): Adam learning rate `controller_lr` 0.0035; logits shaped as ``c *
    tanh(l / temperature)`` with ``c`` the tanh constant 1.10 for inputs and 1.10 / the op
    tanh reduction 2.5 for ops, no temperature (None switches either off); entropy weight
    1e-4; baseline decay 0.99; `controller_steps` 30 REINFORCE updates per epoch, each on
    `controller_batch` 10 children (the script's ``controller_num_aggregate``); one LSTM
    layer of 64 units (`controller_units` x `controller_layers`); `controller_op_bias`: the
    authors' op prior favouring the convolutions (see
    :mod:`kerasnas.multitrial.micro_controller`)."""

    controller_lr: float = 3.5e-3
    controller_tanh_constant: float | None = 1.1
    controller_op_tanh_reduce: float = 2.5
    controller_temperature: float | None = None
    controller_entropy_weight: float = 1e-4
    controller_baseline_decay: float = 0.99
    controller_steps: int = 30
    controller_batch: int = 10
    controller_units: int = 64
    controller_layers: int = 1
    controller_op_bias: bool = True

    def validate(self) -> None:
        super().validate()
        if not self.controller_lr > 0:
            raise ValueError(f"controller_lr must be > 0, got {self.controller_lr!r}")
        for name in ("controller_tanh_constant", "controller_temperature"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 or None, got {value!r}")
        if not self.controller_op_tanh_reduce > 0:
            raise ValueError(
                f"controller_op_tanh_reduce must be > 0, got {self.controller_op_tanh_reduce!r}"
            )
        if not self.controller_entropy_weight >= 0:
            raise ValueError(
                f"controller_entropy_weight must be >= 0, got {self.controller_entropy_weight!r}"
            )
        if not 0 <= self.controller_baseline_decay < 1:
            raise ValueError(
                f"controller_baseline_decay must be in [0, 1), "
                f"got {self.controller_baseline_decay!r}"
            )
        _positive_int(self, "controller_steps", minimum=0)
        for name in ("controller_batch", "controller_units", "controller_layers"):
            _positive_int(self, name)


@dataclasses.dataclass
class RetrainConfig(LoopConfig):
    """Hyper-parameters of retraining; defaults are those of the DARTS/SNAS papers on
    CIFAR-10 (600 epochs, batch 96, SGD 0.025 cosine to 0, momentum 0.9, weight decay 3e-4,
    clipping 5, auxiliary weight 0.4, drop-path 0.2), except cutout, whose length depends
    on the image size (the papers: 16 pixels on 32x32 images).

    auxiliary_weight: weight of the auxiliary head's cross-entropy (used when the model has
      one). drop_path: the largest drop-path rate, reached after the last epoch.
    cutout: side of the cutout square in pixels, 0 = off.
    """

    epochs: int = option(600, "Training epochs (papers: 600).", at_least=1)
    batch_size: int = option(96, "Minibatch size (papers: 96).", at_least=1)
    w_lr_min: float = option(0.0, "Final learning rate.", flag=False, at_least=0)
    auxiliary_weight: float = option(
        0.4, "Weight of the auxiliary head's loss (papers: 0.4).", at_least=0
    )
    drop_path: float = option(
        0.2,
        "Largest drop-path probability; epoch e (0-based) uses drop_path * e / epochs, as "
        "DARTS' train.py (papers: 0.2). 0 = off.",
        at_least=0,
        below=1,
    )
    cutout: int = option(
        0,
        "Cutout square side in pixels on training images, 0 = off (papers: 16 on 32x32 CIFAR).",
        at_least=0,
    )
