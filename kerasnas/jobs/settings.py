"""The jobs' settings: what a one-shot search (:class:`OneShotSettings`), a trial-based
search (:class:`TrialSettings`) and a retraining (:class:`RetrainSettings`) take, as
dataclasses of :func:`~kerasnas.options.option` fields. TensorFlow-free, so the commands
build and check their flags from them before importing TensorFlow; the jobs in
:mod:`kerasnas.jobs.one_shot`, :mod:`~kerasnas.jobs.trial_based` and
:mod:`~kerasnas.jobs.retrain` run them (and export them under their old names)."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from kerasnas import strategies
from kerasnas.errors import SettingError
from kerasnas.estimation.settings import EstimationSettings
from kerasnas.jobs.base import JobSettings
from kerasnas.multitrial.settings import OracleSettings, TrialConfig
from kerasnas.names import DISTRIBUTIONS, EXPORT_FORMATS, PRIMITIVES, SEARCH_SPACES
from kerasnas.options import REQUIRED, option
from kerasnas.trainers.config import LoopConfig, RetrainConfig

__all__ = [
    "DEFAULT_EXPORT",
    "OneShotSettings",
    "RetrainSettings",
    "TrialSettings",
    "default_config",
    "default_retrain_config",
]

DEFAULT_EXPORT = ("tflite", "tflite_int8")
# compute precisions of the supernet (variables, BN statistics and the loss stay float32);
# float16 would need loss scaling, which the weight and logit updates do not do
PRECISIONS: tuple[str, ...] = ("none", "bfloat16")
# the job's defaults where they differ from the papers' (see default_config)
JOB_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "a_lr": 0.3,
    "a_weight_decay": 0.0,
    # ENAS: the authors' ratio of controller updates to weight steps (30 per ~280 steps of
    # a CIFAR-10 epoch) on digits' 17 steps per epoch
    "controller_steps": 2,
    # ENAS: no conv prior on the controller's ops (the authors' b_soft of 10 on the
    # separable convolutions of their 5-op space; on the 8 DARTS ops it would favour all
    # 4 convolutions): conv-heavy children are the ones weight sharing trains slowest; on
    # digits, 60 epochs, seed 0, supernet valid 0.53 with the prior, 0.76 without
    "controller_op_bias": False,
}


def default_config(strategy: str = "snas", **overrides: Any) -> LoopConfig:
    """The search job's trainer configuration for `strategy` (also the command line's
    defaults): the papers', except 30 epochs, an architecture learning rate of 0.3 instead
    of 3e-4, no L2 decay on the logits, 2 ENAS controller steps per epoch instead of 30 (the
    authors' ~1 per 10 weight steps) and no op prior in ENAS' controller (where the strategy
    has these settings; see JOB_DEFAULTS for why). A digits search
    makes about 500 steps where SNAS makes about 10^5; with 3e-4 the logits barely move.
    At that learning rate the papers' coupled decay (1e-3) must go: once the temperature is
    low, the loss's gradient on the logits vanishes, the decay term is all Adam sees, and
    Adam's normalised steps (0.3 each) pull every logit back towards 0, so the distribution
    never sharpens (the quick start ended at 0.77 nats per edge with the decay and a_lr
    0.2, at 0.11 without it and a_lr 0.3; see the README's "SNAS that converges"). Unknown
    keys of `overrides` raise TypeError."""
    cls = strategies.get(strategy, strategies.ONE_SHOT).settings_class()
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{**{k: v for k, v in JOB_DEFAULTS.items() if k in names}, **overrides})


@dataclasses.dataclass(kw_only=True)
class OneShotSettings(JobSettings):
    """Everything a one-shot search run needs. Sizes: C = init_channels, L = layers,
    N = nodes. ``relaxation``, ``derive`` and ``config`` default (None) to the strategy's
    own (the registry's first relaxation and derivation, :func:`default_config`)."""

    output_dir: str = option(
        REQUIRED,
        "Directory for the genotype, child model, metrics, TensorBoard logs and checkpoints.",
    )
    strategy: str = option("snas", "The search strategy.", choices=strategies.names())
    init_channels: int = option(8, "C: channels of the first cells.", at_least=2)
    layers: int = option(5, "L: number of cells (reductions at L//3 and 2L//3).", at_least=3)
    nodes: int = option(4, "N: intermediate nodes per cell.", at_least=1)
    ops: tuple[str, ...] = option(PRIMITIVES, "Candidate ops, comma separated.")
    relaxation: str | None = option(
        None,
        "How the supernet mixes ops; default: the strategy's own. snas: gumbel (soft sample, "
        "all ops run, the default) or gumbel_hard (straight-through one-hot, one op per edge "
        "runs); darts: softmax; enas, random_ws: controlled.",
    )
    derive: str | None = option(
        None,
        "How the child is read off; default: the strategy's own. argmax (snas): every edge "
        "its most likely op, none deletes it. top2 (darts): 2 inputs per node. best_sampled "
        "(enas, random_ws): the best of the sampled children on the validation split. The "
        "child inherits the supernet's weights either way.",
    )
    recalibrate_child: int = option(
        8,
        "Training batches the child's batch-norm statistics are recomputed on before it is "
        "scored, saved and exported (the supernet's averages describe the mixture or the "
        "other children, not this child); 0: keep the supernet's.",
        at_least=0,
    )
    export: tuple[str, ...] = option(
        DEFAULT_EXPORT,
        "Export the child into <output_dir>/export, each format verified against "
        "child.keras: some of saved_model, tflite, tflite_fp16, tflite_dynamic, "
        "tflite_int8; empty: none.",
        choices=tuple(EXPORT_FORMATS),
    )
    mixed_precision: str = option(
        "none",
        "Supernet compute precision: none (float32) or bfloat16 (Keras' mixed_bfloat16: "
        "float32 variables, batch-norm statistics and loss; for GPUs/TPUs, slower on most "
        "CPUs). The child is float32.",
    )
    distribution: str = option(
        "none",
        "snas, darts: train the supernet under tf.distribute. mirrored: every GPU of this "
        "machine (else its logical CPUs); multi_worker: the machines of TF_CONFIG (only the "
        "chief writes {output_dir}). {batch_size} is the global batch.",
        choices=DISTRIBUTIONS,
    )
    config: LoopConfig | None = None
    kind: ClassVar[str] = strategies.ONE_SHOT
    seed_of: ClassVar[str] = "config"

    def __post_init__(self):
        if self.strategy not in strategies.names(strategies.ONE_SHOT):
            return  # validate() says so
        entry = strategies.get(self.strategy)
        if self.relaxation is None:
            self.relaxation = entry.relaxations[0]
        if self.derive is None:
            self.derive = entry.derivations[0]
        if self.config is None:
            self.config = default_config(self.strategy)

    def validate(self) -> None:
        """Raises SettingError naming the first setting that does not fit the strategy."""
        super().validate()
        entry = strategies.get(self.strategy)
        if self.relaxation not in entry.relaxations:
            raise SettingError(
                f"{{relaxation}} must be one of {entry.relaxations} for {{strategy}}="
                f"{self.strategy}, got {self.relaxation!r}"
            )
        if self.derive not in entry.derivations:
            raise SettingError(
                f"{{derive}} must be one of {entry.derivations} for {{strategy}}="
                f"{self.strategy}, got {self.derive!r}"
            )
        if not [op for op in self.ops if op != "none"]:
            raise SettingError(
                f"{{ops}} must hold an op other than 'none' (every cell would be empty), "
                f"got {','.join(self.ops)}"
            )
        if self.mixed_precision not in PRECISIONS:
            hint = " (float16 needs loss scaling, which kerasnas does not do)"
            raise SettingError(
                f"{{mixed_precision}} must be one of {PRECISIONS}, got {self.mixed_precision!r}"
                + (hint if self.mixed_precision == "float16" else "")
            )
        if self.distribution != "none":
            if not entry.distributed:
                allowed = ",".join(s.name for s in strategies.REGISTRY.values() if s.distributed)
                raise SettingError(
                    f"{{distribution}} applies to {{strategy}}={allowed} only, not {self.strategy}"
                )
            if self.distribution == "multi_worker" and self.config.time_budget is not None:
                raise SettingError(
                    "{config.time_budget} cannot be combined with {distribution}=multi_worker "
                    "(each worker would time its own budget and stop after other steps)"
                )
            if self.resume and self.distribution == "multi_worker":
                raise SettingError(
                    "{resume} cannot be combined with {distribution}=multi_worker "
                    "(only the chief keeps checkpoints)"
                )
        entry.check_ops(tuple(self.ops))


@dataclasses.dataclass(kw_only=True)
class TrialSettings(JobSettings):
    """Everything a trial-based search needs.

    `space_args` are the space's constructor arguments (``get_space(search_space,
    **space_args)``; the metaqnn space's ``image_size`` defaults to the data's). `config` is
    the strategy's settings (the registry's ``settings`` class; None: its defaults);
    `trial` the budget and reward of one trial, whose ``seed`` seeds the data split, the
    oracle and every trial; `estimation` how each trial is scored (:mod:`kerasnas.estimation`).
    """

    output_dir: str = option(
        REQUIRED, "Directory for the architecture, best model, history and keras-tuner's project."
    )
    strategy: str = option("random", "The search strategy.")
    search_space: str = option(
        "cell",
        "cell: the SNAS cell space ({init_channels}, {layers}, {nodes}, {ops}; one op per "
        "edge, 'none' dropped); nasrl: Zoph & Le's chain; metaqnn: MetaQNN's layers.",
        choices=SEARCH_SPACES,
    )
    max_trials: int = option(20, "Trials (children trained).", at_least=1)
    time_budget: float | None = option(
        None,
        "Seconds of trials (their summed wall-clock time, the estimator's work included) "
        "after which no new trial starts; {max_trials} still caps the count (None: no "
        "budget). One-process searches only.",
        above=0,
    )
    trial: TrialConfig = dataclasses.field(default_factory=TrialConfig)
    estimation: EstimationSettings = dataclasses.field(default_factory=EstimationSettings)
    space_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: OracleSettings | None = None
    export: tuple[str, ...] = option(
        (),
        "Export the best child into <output_dir>/export (see above).",
        choices=tuple(EXPORT_FORMATS),
    )
    retrain_top: int = option(
        0,
        "After the search, train the K trials of highest reward again from scratch with "
        "full training ({trial_epochs}, all the data, full resolution and width); the best "
        "by validation accuracy becomes best.keras. 0: off.",
        at_least=0,
    )
    front_export: int | None = option(
        None,
        "After the search, write pareto.csv and pareto.png of all completed trials (test "
        "accuracy of each trial's child against its cost) and export up to K points of their "
        "Pareto front into front/<trial>/ (child.keras, architecture, verified float TFLite "
        "with its LiteRT latency); every trial's model is kept for it. None: 8 for nsga2, "
        "0 (none of this) for the other strategies.",
        at_least=0,
    )
    distributed_timeout: float = option(
        600.0,
        "Distributed mode (KERASTUNER_* variables): seconds a worker waits for the chief, "
        "and the chief's longest run.",
        above=0,
    )
    worker_timeout: float = option(
        120.0,
        "Distributed mode: seconds without word from a worker (workers report after every "
        "epoch of a trial) before the chief hands its trial to another worker.",
        above=0,
    )

    kind: ClassVar[str] = strategies.TRIAL_BASED
    nested: ClassVar[tuple[str, ...]] = ("trial", "estimation")
    seed_of: ClassVar[str] = "trial"

    def __post_init__(self):
        if self.config is None and self.strategy in strategies.names(strategies.TRIAL_BASED):
            self.config = strategies.get(self.strategy).settings_class()()

    def validate(self) -> None:
        """Raises SettingError naming the first bad setting, also where the estimator's
        settings do not fit the space (the data's checks: ``TrialSearch.prepare``)."""
        super().validate()
        if self.estimation.estimator == "hypernet":
            strides = self.space_args.get("strides")
            if self.search_space != "nasrl" or (strides is not None and list(strides) != [1]):
                raise SettingError(
                    f"{{estimator}}=hypernet needs {{search_space}}=nasrl with stride 1, "
                    f"got {self.search_space}" + (f" with strides {strides}" if strides else "")
                )
        e = self.estimation
        if e.estimator != "proxy":
            return
        if e.proxy_depth != 1.0 and self.search_space != "cell":
            raise SettingError(
                f"{{estimation.proxy_depth}} applies to {{search_space}}=cell only, not "
                f"{self.search_space}: a chain architecture's depth is part of the "
                "architecture; reduce {estimation.proxy_width} or "
                "{estimation.proxy_resolution} instead"
            )
        if e.proxy_resolution is not None and self.search_space == "metaqnn":
            raise SettingError(
                "{estimation.proxy_resolution} does not apply to {search_space}=metaqnn: its "
                "rules (kernels and pools smaller than the representation) are those of its "
                "image size, and many of its architectures do not build on smaller images; "
                "reduce {estimation.proxy_width} or {estimation.proxy_data_fraction} instead"
            )


PUBLISHED = ("DARTS_V1", "DARTS_V2")


def default_retrain_config(**overrides: Any) -> RetrainConfig:
    """The job's defaults: a budget for the 8x8 digits that takes about two minutes on 2
    cores (the papers, on CIFAR-10: 600 epochs, batch 96, lr 0.025, auxiliary weight 0.4,
    drop-path 0.2, cutout 16; see :class:`RetrainConfig`)."""
    return RetrainConfig(
        **{"epochs": 20, "batch_size": 64, "drop_path": 0.2, "cutout": 0, **overrides}
    )


@dataclasses.dataclass(kw_only=True)
class RetrainSettings(JobSettings):
    """Everything a retraining run needs. Sizes: C = init_channels, L = layers."""

    genotype: str = option(
        REQUIRED,
        "The architecture: a genotype JSON file (e.g. a search's genotype.json; the DARTS flat "
        "form is read too) or DARTS_V1 / DARTS_V2 (the published cells). Required.",
    )
    output_dir: str = option(
        REQUIRED,
        "Directory for model.keras, metrics, history, TensorBoard logs and checkpoints.",
    )
    init_channels: int = option(16, "C: channels of the first cells (papers: 36).")
    layers: int = option(8, "L: number of cells, reductions at L//3 and 2L//3 (papers: 20).")
    auxiliary: bool = option(
        False,
        "Train with DARTS' auxiliary head after cell 2L//3 (papers: on). It is left out of "
        "model.keras.",
    )
    retrain: RetrainConfig = dataclasses.field(default_factory=default_retrain_config)
    nested: ClassVar[tuple[str, ...]] = ("retrain",)
    seed_of: ClassVar[str] = "retrain"
