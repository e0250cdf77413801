"""The trial-based strategies' settings, and how each makes its ``keras_tuner.Oracle``;
a trial's budget and reward (:class:`TrialConfig`). TensorFlow-free: keras-tuner is imported
when an oracle is made.

Each class is a strategy's ``settings`` in :mod:`kerasnas.strategies`; its
:func:`~kerasnas.options.option` fields are ``kerasnas-search`` flags, and
:meth:`OracleSettings.make_oracle` is its factory. The rules of a setting that the oracle
itself checks (e.g. ``sample_size <= population_size``) are checked there, not here.
Every oracle maximises the objective ``reward`` over the trials.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any, ClassVar

from kerasnas import options
from kerasnas.names import TRIAL_OPTIMIZERS, TRIAL_RESOURCES
from kerasnas.options import option

if TYPE_CHECKING:
    import keras_tuner

    from kerasnas.search_spaces.base import DiscreteSpace

__all__ = [
    "BayesianSettings",
    "EvolutionSettings",
    "HyperbandSettings",
    "LemonadeSettings",
    "MetaQNNSettings",
    "NASHSettings",
    "NSGA2Settings",
    "OracleSettings",
    "RENASSettings",
    "RandomSettings",
    "ReinforceSettings",
    "epsilon_schedule",
]

OBJECTIVE = "reward"


@dataclasses.dataclass
class TrialConfig:
    """The budget and reward of one trial: `epochs` of training (Hyperband sets its own, up
    to this) with `optimizer` at `learning_rate`, each trial seeded with
    ``trial_seed(seed, trial_id)``; the reward is the validation accuracy, or MnasNet's
    ``acc * (cost / reward_target) ** w`` (w = `reward_alpha` when cost <= target, else
    `reward_beta`) with `reward_target` set."""

    epochs: int = option(3, "Epochs per child (hyperband: most).", flag="trial_epochs", at_least=1)
    batch_size: int = option(64, "Minibatch size.", at_least=1)
    optimizer: str = option(
        "adam",
        "Child optimizer (sgd: momentum 0.9).",
        flag="trial_optimizer",
        choices=TRIAL_OPTIMIZERS,
    )
    learning_rate: float | None = option(
        None,
        "Child learning rate (None: 1e-3 adam, 0.05 sgd).",
        flag="trial_learning_rate",
        above=0,
    )
    seed: int = option(0, "Seed of the data split, the oracle and every trial.")
    reward_target: float | None = option(
        None, "MnasNet reward acc*(cost/target)^w (None: acc).", above=0
    )
    reward_resource: str = option("params", "Cost of the MnasNet reward.", choices=TRIAL_RESOURCES)
    reward_alpha: float = option(0.0, "MnasNet exponent w when cost <= target.")
    reward_beta: float = option(-0.07, "MnasNet exponent w when cost > target.")

    def validate(self) -> None:
        """Raises SettingError naming the first bad field."""
        options.validate(self)

    @property
    def lr(self) -> float:
        """The learning rate in use."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 1e-3 if self.optimizer == "adam" else 0.05


@dataclasses.dataclass
class OracleSettings:
    """Base of a trial-based strategy's settings (none of its own). ``needs_data``: the
    factory also takes ``input_shape=`` and ``num_classes=`` (the data's)."""

    needs_data: ClassVar[bool] = False

    def validate(self) -> None:
        """Raises SettingError naming the first bad field."""
        options.validate(self)

    def make_oracle(
        self, space: DiscreteSpace, *, max_trials: int, seed: int, max_epochs: int
    ) -> keras_tuner.Oracle:
        """The strategy's oracle over `space` for `max_trials` trials, seeded with `seed`;
        `max_epochs` is a trial's epoch budget."""
        raise NotImplementedError

    @staticmethod
    def common(space: DiscreteSpace, max_trials: int, seed: int) -> dict[str, Any]:
        """The arguments every kerasnas oracle takes."""
        import keras_tuner

        return {
            "objective": keras_tuner.Objective(OBJECTIVE, "max"),
            "max_trials": max_trials,
            "hyperparameters": space.hyperparameters(),
            "space": space,
            "seed": seed,
        }


@dataclasses.dataclass
class RandomSettings(OracleSettings):
    """Random search (no settings)."""

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.oracles import RandomSearchOracle

        return RandomSearchOracle(**self.common(space, max_trials, seed))


@dataclasses.dataclass
class EvolutionSettings(OracleSettings):
    """Aging evolution: the population and the tournament size."""

    population_size: int = option(10, "evolution, renas, nsga2: population.")
    sample_size: int = option(3, "evolution, renas, nsga2: tournament size.")

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.oracles import RegularizedEvolutionOracle

        return RegularizedEvolutionOracle(
            population_size=self.population_size,
            sample_size=self.sample_size,
            **self.common(space, max_trials, seed),
        )


@dataclasses.dataclass
class ReinforceSettings(OracleSettings):
    """Zoph & Le's controller: architectures per REINFORCE step, Adam learning rate,
    entropy bonus."""

    batch_size: int = option(5, "reinforce, renas: m per update.", flag="controller_batch_size")
    learning_rate: float = option(
        6e-4, "reinforce, renas: controller Adam lr.", flag="controller_learning_rate", above=0
    )
    entropy_weight: float = option(0.0, "reinforce, renas: entropy bonus.", at_least=0)

    def controller(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, "entropy_weight": self.entropy_weight}

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.oracles import ReinforceOracle

        return ReinforceOracle(
            batch_size=self.batch_size,
            **self.controller(),
            **self.common(space, max_trials, seed),
        )


@dataclasses.dataclass
class RENASSettings(ReinforceSettings, EvolutionSettings):
    """RENAS: evolution's population and tournament, the controller's settings."""

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.oracles import RENASOracle

        return RENASOracle(
            population_size=self.population_size,
            sample_size=self.sample_size,
            batch_size=self.batch_size,
            **self.controller(),
            **self.common(space, max_trials, seed),
        )


def epsilon_schedule(max_trials: int, explore: int | None) -> list[tuple[float, int]]:
    """MetaQNN's schedule shrunk to `max_trials`: `explore` trials at epsilon 1, then 0.9,
    0.8, ..., 0.1 in equal stages over the rest (0.1 stays after)."""
    explore = max(1, max_trials // 2) if explore is None else explore
    per = max(1, math.ceil((max_trials - explore) / 9))
    return [(1.0, explore)] + [(round(0.9 - 0.1 * i, 1), per) for i in range(9)]


@dataclasses.dataclass
class MetaQNNSettings(OracleSettings):
    """MetaQNN: how many trials explore at epsilon 1 before epsilon falls."""

    epsilon_explore: int | None = option(
        None, "metaqnn: trials at epsilon 1 (None: half).", at_least=0
    )

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        from kerasnas.multitrial.qlearning import QLearningOracle

        return QLearningOracle(
            epsilon_schedule=epsilon_schedule(max_trials, self.epsilon_explore),
            **self.common(space, max_trials, seed),
        )


def _stock(space: DiscreteSpace, max_trials: int, seed: int) -> dict[str, Any]:
    """keras-tuner's own oracles take seed 0 for "random": they get seed + 1."""
    import keras_tuner

    return {
        "objective": keras_tuner.Objective(OBJECTIVE, "max"),
        "max_trials": max_trials,
        "hyperparameters": space.hyperparameters(),
        "seed": seed + 1,
    }


@dataclasses.dataclass
class BayesianSettings(OracleSettings):
    """keras-tuner's Bayesian optimisation (no settings)."""

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        import keras_tuner

        return keras_tuner.oracles.BayesianOptimizationOracle(**_stock(space, max_trials, seed))


@dataclasses.dataclass
class HyperbandSettings(OracleSettings):
    """keras-tuner's Hyperband: its reduction factor (its most epochs are a trial's)."""

    factor: int = option(3, "hyperband: reduction factor.", flag="hyperband_factor", at_least=2)

    def make_oracle(self, space, *, max_trials, seed, max_epochs):
        import keras_tuner

        args = _stock(space, max_trials, seed)
        args.pop("max_trials")
        oracle = keras_tuner.oracles.HyperbandOracle(
            max_epochs=max_epochs, factor=self.factor, hyperband_iterations=None, **args
        )
        oracle.max_trials = max_trials  # Hyperband has no trial budget of its own
        return oracle


@dataclasses.dataclass
class NASHSettings(OracleSettings):
    """NASH's hill climbing with network morphisms (Elsken et al. 2017): children per step
    and morphisms per child. The paper's 8 and 5 (CIFAR-10, 8 steps) are scaled down for
    the digits budgets (16-20 trials): 4 trials per step gives 3-4 steps, and 2 morphisms
    per child keep a 2-6 layer space from filling up (widest filters, deepest net) within
    those steps. Use with ``--estimator=morphism``."""

    n_neigh: int = option(
        4, "nash: trials per step (children, and the best trained further).", at_least=2
    )
    n_nm: int = option(2, "nash: random morphisms per child.", at_least=1)

    needs_data: ClassVar[bool] = True

    def make_oracle(self, space, *, max_trials, seed, max_epochs, input_shape, num_classes):
        from kerasnas.multitrial.morphing import NASHOracle

        return NASHOracle(
            n_neigh=self.n_neigh,
            n_nm=self.n_nm,
            input_shape=input_shape,
            num_classes=num_classes,
            **self.common(space, max_trials, seed),
        )


@dataclasses.dataclass
class LemonadeSettings(OracleSettings):
    """LEMONADE's evolution over the Pareto front of (reward, parameters) (Elsken et al.
    2019): initial networks, children generated and accepted per generation, morphisms per
    child. Scaled for digits budgets: 3 initial networks and 4 trained children per
    generation give 3-4 generations in 16-20 trials (the paper generates and accepts
    hundreds per generation over many generations). Use with ``--estimator=morphism``."""

    n_init: int = option(3, "lemonade: initial networks.", at_least=1)
    n_children: int = option(16, "lemonade: children generated per generation.", at_least=1)
    n_accept: int = option(4, "lemonade: children trained per generation.", at_least=1)
    max_morphisms: int = option(3, "lemonade: most random morphisms per child.", at_least=1)

    needs_data: ClassVar[bool] = True

    def make_oracle(self, space, *, max_trials, seed, max_epochs, input_shape, num_classes):
        from kerasnas.multitrial.morphing import LemonadeOracle

        return LemonadeOracle(
            n_init=self.n_init,
            n_children=self.n_children,
            n_accept=self.n_accept,
            n_nm=self.max_morphisms,
            input_shape=input_shape,
            num_classes=num_classes,
            **self.common(space, max_trials, seed),
        )


@dataclasses.dataclass
class NSGA2Settings(OracleSettings):
    """NSGA-II over (reward, cost) (Deb et al. 2002): the population (also the children per
    generation), the tournament size (the paper's binary tournament), the crossover rate
    and the cost objective (analytic: parameters, FLOPs or memory accesses of
    ``space.cost``). See :class:`~kerasnas.multitrial.nsga.NSGA2Oracle`."""

    population_size: int = option(10, "evolution, renas, nsga2: population.", at_least=2)
    sample_size: int = option(2, "evolution, renas, nsga2: tournament size.", at_least=1)
    crossover_rate: float = option(
        0.5,
        "nsga2: chance a child starts as a uniform crossover of two parents (then mutated).",
        at_least=0,
    )
    objective_cost: str = option(
        "params", "nsga2: the cost objective beside accuracy.", choices=("params", "flops", "mac")
    )

    needs_data: ClassVar[bool] = True

    def make_oracle(self, space, *, max_trials, seed, max_epochs, input_shape, num_classes):
        from kerasnas.multitrial.nsga import NSGA2Oracle

        return NSGA2Oracle(
            population_size=self.population_size,
            tournament_size=self.sample_size,
            crossover_rate=self.crossover_rate,
            objective_cost=self.objective_cost,
            input_shape=input_shape,
            num_classes=num_classes,
            **self.common(space, max_trials, seed),
        )
