"""The search strategies, each registered once: its name (the same in every command), kind,
settings class, factory, relaxations, derivations, label and plot colour.

The commands' allowed values, ``kerasnas-compare``'s list, the README's tables and the
settings checks all read this registry. Importing it is cheap: classes and factories are
named as ``"module:attribute"`` and imported when first used.

Kinds:

- ``one_shot``: one weight-shared supernet of the cell space is trained
  (:mod:`kerasnas.jobs.one_shot`). ``settings`` is the trainer's configuration class,
  ``factory`` the trainer class (:class:`~kerasnas.trainers.base.OneShotTrainer`).
- ``trial_based``: an oracle proposes architectures of a discrete space and every trial
  trains one child (:mod:`kerasnas.jobs.trial_based`). ``settings`` is the strategy's
  settings class (a dataclass of :func:`~kerasnas.options.option` fields), ``factory`` a
  callable ``(settings, space, max_trials=, seed=, max_epochs=) -> keras_tuner.Oracle``
  (also ``input_shape=, num_classes=`` when the settings class sets ``needs_data``).

Adding a strategy: write its module (trainer or oracle, and its settings class) and add one
:func:`register` call below; its options become ``kerasnas-search`` flags.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from kerasnas.errors import SettingError

ONE_SHOT = "one_shot"
TRIAL_BASED = "trial_based"
KINDS = (ONE_SHOT, TRIAL_BASED)

__all__ = ["KINDS", "ONE_SHOT", "REGISTRY", "TRIAL_BASED", "Strategy", "get", "names", "register"]


def _load(ref: str) -> Any:
    module, _, path = ref.partition(":")
    obj = importlib.import_module(module)
    for attribute in path.split("."):
        obj = getattr(obj, attribute)
    return obj


@dataclasses.dataclass(frozen=True)
class Strategy:
    """One search strategy (see the module doc).

    Attributes:
      name: the name on every command line and in every output.
      kind: ``one_shot`` or ``trial_based``.
      label: the name in plots and reports, e.g. "SNAS".
      color: its matplotlib colour in plots.
      summary: one line for ``--help`` and the README.
      settings: ``"module:Class"`` of its settings (see the module doc).
      factory: ``"module:callable"`` that makes its trainer or oracle.
      relaxations: one-shot: the MixedOp relaxations it trains (first: default).
      derivations: one-shot: the rules that read the child off (first: default).
      distributed: one-shot: it can train under ``tf.distribute``.
      needs_ops: one-shot: candidate ops the supernet must include.
    """

    name: str
    kind: str
    label: str
    color: str
    summary: str
    settings: str
    factory: str
    relaxations: tuple[str, ...] = ()
    derivations: tuple[str, ...] = ()
    distributed: bool = False
    needs_ops: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"strategy {self.name!r}: kind must be one of {KINDS}")
        if self.kind == ONE_SHOT and not (self.relaxations and self.derivations):
            raise ValueError(f"one-shot strategy {self.name!r} needs relaxations and derivations")

    def settings_class(self) -> type:
        """The settings class (imported on first use)."""
        return _load(self.settings)

    def make(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the factory (imported on first use) with the given arguments."""
        return _load(self.factory)(*args, **kwargs)

    def check_ops(self, ops: tuple[str, ...]) -> None:
        """SettingError (naming ``{ops}``) when `ops` lacks one of :attr:`needs_ops`."""
        missing = [op for op in self.needs_ops if op not in ops]
        if missing:
            raise SettingError(
                f"{{strategy}}={self.name} needs {', '.join(repr(m) for m in missing)} among "
                "{ops}: it samples cells with two inputs per node and switches the other "
                "edges off with 'none'"
            )


REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    """Adds `strategy` to the registry (its name must be new)."""
    if strategy.name in REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is registered twice")
    REGISTRY[strategy.name] = strategy
    return strategy


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered names (of one kind), in registration order."""
    return tuple(s.name for s in REGISTRY.values() if kind is None or s.kind == kind)


# a name that means another strategy in a given kind: (name, kind) -> the name to use
INSTEAD = {("random", ONE_SHOT): "random_ws"}


def get(name: str, kind: str | None = None) -> Strategy:
    """The strategy called `name` (of `kind` when given); SettingError naming
    ``{strategy}`` and the allowed names otherwise."""
    allowed = names(kind)
    if name in allowed:
        return REGISTRY[name]
    hint = ""
    if name in REGISTRY:
        other = REGISTRY[name]
        hint = f"; {name!r} is a {other.kind.replace('_', '-')} strategy ({other.summary})"
        if (name, kind) in INSTEAD:
            meant = REGISTRY[INSTEAD[name, kind]]
            hint += f"; the one meant here is {meant.name!r} ({meant.summary})"
    raise SettingError(f"{{strategy}} must be one of {', '.join(allowed)}, got {name!r}{hint}")


_WS = "kerasnas.trainers.enas"
_ORACLES = "kerasnas.multitrial.settings"

register(
    Strategy(
        "snas",
        ONE_SHOT,
        "SNAS",
        "tab:red",
        "SNAS: weights and logits from the same batch, Gumbel-softmax relaxation (Xie et al. 2019)",
        "kerasnas.trainers.config:SNASConfig",
        "kerasnas.trainers.snas:SNASTrainer.create",
        relaxations=("gumbel", "gumbel_hard"),
        derivations=("argmax", "top2"),
        distributed=True,
    )
)
register(
    Strategy(
        "darts",
        ONE_SHOT,
        "DARTS",
        "tab:blue",
        "DARTS: bilevel, softmax relaxation, first or second order (Liu et al. 2019)",
        "kerasnas.trainers.config:DARTSConfig",
        "kerasnas.trainers.darts:DARTSTrainer.create",
        relaxations=("softmax",),
        derivations=("top2", "argmax"),
        distributed=True,
    )
)
register(
    Strategy(
        "enas",
        ONE_SHOT,
        "ENAS",
        "tab:green",
        "ENAS: children of an LSTM controller share the supernet's weights (Pham et al. 2018)",
        "kerasnas.trainers.config:ENASConfig",
        f"{_WS}:ENASTrainer.create",
        relaxations=("controlled",),
        derivations=("best_sampled",),
        needs_ops=("none",),
    )
)
register(
    Strategy(
        "random_ws",
        ONE_SHOT,
        "random (WS)",
        "tab:gray",
        "random sampling with weight sharing: uniform children (Li & Talwalkar 2019)",
        "kerasnas.trainers.config:WeightSharingConfig",
        f"{_WS}:RandomWSTrainer.create",
        relaxations=("controlled",),
        derivations=("best_sampled",),
        needs_ops=("none",),
    )
)
for _name, _settings, _label, _color, _summary in (
    ("reinforce", "Reinforce", "REINFORCE", "tab:purple", "Zoph & Le's LSTM controller, REINFORCE"),
    ("metaqnn", "MetaQNN", "MetaQNN", "tab:brown", "MetaQNN's epsilon-greedy Q-learning"),
    ("evolution", "Evolution", "evolution", "tab:orange", "regularized (aging) evolution"),
    ("renas", "RENAS", "RENAS", "tab:pink", "evolution with mutations from a learned controller"),
    ("random", "Random", "random", "tab:olive", "random search, no architecture twice"),
    ("bayesian", "Bayesian", "Bayesian", "tab:cyan", "keras-tuner's Bayesian optimisation"),
    ("hyperband", "Hyperband", "Hyperband", "black", "keras-tuner's Hyperband"),
    ("nash", "NASH", "NASH", "tab:red", "hill climbing with network morphisms (NASH)"),
    (
        "lemonade",
        "Lemonade",
        "LEMONADE",
        "tab:blue",
        "Pareto-front evolution with network morphisms (LEMONADE)",
    ),
    (
        "nsga2",
        "NSGA2",
        "NSGA-II",
        "tab:green",
        "multi-objective evolution over (accuracy, cost), non-dominated sorting (NSGA-II)",
    ),
):
    register(
        Strategy(
            _name,
            TRIAL_BASED,
            _label,
            _color,
            _summary,
            f"{_ORACLES}:{_settings}Settings",
            f"{_ORACLES}:{_settings}Settings.make_oracle",
        )
    )
