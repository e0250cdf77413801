"""Architecture search strategies as ``keras_tuner.Oracle`` subclasses: random search,
regularized (aging) evolution, the REINFORCE controller of Zoph & Le, and RENAS.

A strategy searches a :class:`~kerasnas.search_spaces.DiscreteSpace` (``space=``; default:
the :class:`~kerasnas.search_spaces.HyperParameterSpace` of the oracle's ``hp.Choice``
entries, made when first needed) and knows it only through the space's operators: it
samples, mutates and encodes architectures with them, and ``space.key`` decides which
architectures are the same: one model is issued once and its reward reused, whichever
assignment reaches it. The values of a trial are the *canonical* architecture of the space
(validated, inactive decisions at their defaults; a cell node's two pairs keep the order they
were proposed in, so the layers of the built model are created in that order). The reward
of a trial is its objective ("val_accuracy" by default; negated for an objective to
minimise). Rewards reach the oracle through ``end_trial`` (a stock ``keras_tuner.Tuner``,
or workers in distributed mode) or through :meth:`ArchOracle.record_result` (benchmarks
driving ``populate_space`` directly). ``get_state`` holds everything the search has learnt,
the random generator included, as JSON: a reloaded oracle continues exactly as an
uninterrupted one.
"""

from __future__ import annotations

from typing import Any

import keras_tuner
import numpy as np

from kerasnas.errors import SettingError
from kerasnas.multitrial.controller import Controller, ControllerConfig, MutationController
from kerasnas.search_spaces.base import Arch, DiscreteSpace
from kerasnas.search_spaces.hyperparameters import HyperParameterSpace

RUNNING = keras_tuner.engine.trial.TrialStatus.RUNNING
IDLE = keras_tuner.engine.trial.TrialStatus.IDLE
STOPPED = keras_tuner.engine.trial.TrialStatus.STOPPED
COMPLETED = keras_tuner.engine.trial.TrialStatus.COMPLETED
FAILED = keras_tuner.engine.trial.TrialStatus.FAILED
_WAIT = object()  # _propose's "nothing to propose until results come in"
_ENUMERATE_LIMIT = 100_000


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-serialisable state of a numpy Generator."""
    return rng.bit_generator.state


def rng_from_state(state: dict[str, Any]) -> np.random.Generator:
    """The numpy Generator of a :func:`rng_state`."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


class ArchOracle(keras_tuner.Oracle):
    """Base: the space, a seeded generator, issued and evaluated architectures, the reward
    hook. Subclasses implement ``_propose`` and ``_on_result`` and extend ``_state``.

    `space` (default: the HyperParameterSpace of `hyperparameters`, built when first needed)
    is what is searched; without `hyperparameters`, the oracle's are ``space.hyperparameters()``.
    """

    def __init__(
        self,
        objective: Any = "val_accuracy",
        max_trials: int = 100,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        seed: int | None = None,
        allow_new_entries: bool = True,
        tune_new_entries: bool = True,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
        space: DiscreteSpace | None = None,
    ):
        if space is not None and not isinstance(space, DiscreteSpace):
            raise ValueError(f"space must be a DiscreteSpace or None, got {space!r}")
        if space is not None and hyperparameters is None:
            hyperparameters = space.hyperparameters()
        super().__init__(
            objective=objective,
            max_trials=max_trials,
            hyperparameters=hyperparameters,
            allow_new_entries=allow_new_entries,
            tune_new_entries=tune_new_entries,
            seed=seed,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        if seed is not None:
            self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self._given_space = space
        self._space: DiscreteSpace | None = None
        self._issued: dict[str, dict[str, Any]] = {}  # trial_id -> architecture
        self._seen: set[str] = set()  # keys of issued architectures
        self._rewards: dict[str, float] = {}  # key -> reward of an evaluated architecture

    # -- the space -------------------------------------------------------------------------

    @property
    def space(self) -> DiscreteSpace:
        """The space searched (built when first needed)."""
        if self._space is None:
            if self._given_space is not None:
                self._space = self._given_space
            else:
                self._space = HyperParameterSpace(self.hyperparameters)
            self._build()
        return self._space

    def _build(self) -> None:
        """Called once the space is known (controllers are built here)."""

    def was_issued(self, arch: dict[str, Any]) -> bool:
        """Whether an architecture with the model of `arch` was issued (``space.key``)."""
        return self.space.key(arch) in self._seen

    def known_reward(self, arch: dict[str, Any]) -> float | None:
        """The reward of the architecture with the model of `arch`, None if not evaluated."""
        return self._rewards.get(self.space.key(arch))

    def _random_unseen(self) -> Arch | None:
        """A random architecture (``space.sample``) not issued before if there is one (None
        when the space is exhausted); a repeat only when the space is too large to
        enumerate."""
        arch = None
        for _ in range(1000):
            arch = self.space.sample(self._rng)
            if self.space.key(arch) not in self._seen:
                return arch
        if self.space.size() <= _ENUMERATE_LIMIT:
            unseen = [a for a in self.space.enumerate() if self.space.key(a) not in self._seen]
            return unseen[self._rng.integers(len(unseen))] if unseen else None
        return arch

    # -- keras-tuner hooks -----------------------------------------------------------------

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """The next architecture (canonical): RUNNING with values, IDLE (waiting for
        results) or STOPPED (space exhausted)."""
        values = self._propose(trial_id)
        if values is _WAIT:
            return {"status": IDLE, "values": None}
        if values is None:
            return {"status": STOPPED, "values": None}
        values = self.space.canonical(values)
        self._issued[trial_id] = values
        self._seen.add(self.space.key(values))
        return {"status": RUNNING, "values": dict(values)}

    @keras_tuner.synchronized
    def end_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        """keras-tuner's bookkeeping, then the reward (or failure) goes to the strategy."""
        super().end_trial(trial)
        trial = self.trials[trial.trial_id]
        if trial.trial_id not in self._issued:
            return
        if trial.status == COMPLETED:
            self.record_result(trial.trial_id, self._reward(trial.score))
        elif trial.status == FAILED:
            self.record_result(trial.trial_id, None)
        else:  # INVALID: keras-tuner retries it
            return
        self.save()

    def _reward(self, score: float) -> float:
        return float(score) if self.objective.direction == "max" else -float(score)

    def record_result(self, trial_id: str, reward: float | None) -> None:
        """The reward of an issued trial (None: it failed) reaches the strategy."""
        values = self._issued.get(trial_id)
        if values is None:
            raise KeyError(f"trial {trial_id!r} was not issued by this oracle")
        if reward is not None:
            self._rewards[self.space.key(values)] = float(reward)
        self._on_result(trial_id, values, reward)

    def _propose(self, trial_id: str) -> Any:
        raise NotImplementedError

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        pass

    # -- state -----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {}

    def _set_state(self, state: dict[str, Any]) -> None:
        pass

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["kerasnas"] = {
            "rng": rng_state(self._rng),
            "issued": self._issued,
            "seen": sorted(self._seen),
            "rewards": self._rewards,
            "strategy": self._state() if self._space is not None else None,
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.seed = state["seed"]
        mine = state["kerasnas"]
        self._rng = rng_from_state(mine["rng"])
        self._issued = {k: dict(v) for k, v in mine["issued"].items()}
        self._seen = set(mine["seen"])
        self._rewards = {k: float(v) for k, v in mine["rewards"].items()}
        self._space = None
        if mine["strategy"] is not None:
            _ = self.space
            self._set_state(mine["strategy"])


class RandomSearchOracle(ArchOracle):
    """The space's random architectures (``space.sample``, seeded; for a HyperParameterSpace
    every Choice uniformly and independently); no architecture twice unless the space is
    too large to enumerate and 1,000 draws in a row were repeats; STOPPED when the space is
    exhausted."""

    def _propose(self, trial_id: str) -> Any:
        return self._random_unseen()


def _tournament(population: list, sample_size: int, rng: np.random.Generator) -> int:
    """Index of the best of `sample_size` members drawn without replacement."""
    picks = rng.choice(len(population), size=min(sample_size, len(population)), replace=False)
    return int(max(picks, key=lambda i: population[i][1]))


class RegularizedEvolutionOracle(ArchOracle):
    """Aging evolution (Real et al., AAAI 2019).

    The first `population_size` trials are random architectures; after that each trial
    mutates the best of `sample_size` members drawn from the population (``space.mutate``:
    one active decision set to another value, chosen uniformly among those that keep the
    architecture valid and change its model; decisions this switches on get random values).
    A result joins the population as its youngest member and the oldest member leaves once
    there are more than `population_size`. With `avoid_repeats`, a mutation that gives an
    architecture already issued is redrawn (up to 20 times).
    """

    def __init__(
        self,
        population_size: int = 100,
        sample_size: int = 25,
        avoid_repeats: bool = True,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if population_size < 1 or not 1 <= sample_size <= population_size:
            raise SettingError(
                f"need {{population_size}} >= 1 and 1 <= {{sample_size}} <= {{population_size}}, "
                f"got {population_size} and {sample_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self.avoid_repeats = avoid_repeats
        self._population: list[list] = []  # [architecture, reward], oldest first
        self._num_random = 0

    def _propose(self, trial_id: str) -> Any:
        if self._num_random < self.population_size:
            self._num_random += 1
            return self._random_unseen()
        if not self._population:
            return _WAIT
        parent = self._population[_tournament(self._population, self.sample_size, self._rng)][0]
        child = self.space.mutate(parent, self._rng)
        for _ in range(20):
            if not self.avoid_repeats or self.space.key(child) not in self._seen:
                break
            child = self.space.mutate(parent, self._rng)
        return child

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        if reward is None:
            return
        self._population.append([values, reward])
        if len(self._population) > self.population_size:
            self._population.pop(0)

    @property
    def population(self) -> list[tuple[dict[str, Any], float]]:
        """The population, oldest first, as (architecture, reward)."""
        return [(dict(v), r) for v, r in self._population]

    def _state(self) -> dict[str, Any]:
        return {"population": self._population, "num_random": self._num_random}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._population = [[dict(v), float(r)] for v, r in state["population"]]
        self._num_random = state["num_random"]


class ReinforceOracle(ArchOracle):
    """NAS with reinforcement learning (Zoph & Le, ICLR 2017).

    The :class:`~kerasnas.multitrial.controller.Controller` samples `batch_size` (m)
    architectures from its current policy; when the m rewards are in it makes one
    REINFORCE step and samples the next m (until then, a further request gets IDLE). With
    `reuse_rewards`, a sampled architecture that was already evaluated is not trained again:
    its known reward enters the batch (a repeat is trained again only after
    `max_known_batches` batches in a row brought nothing new). Growing depth (needs the
    space's depth decision, e.g. ``num_layers``): with `start_depth` set, the controller
    emits depth ``min(max depth, start_depth + depth_step * (samples // depth_every))`` (the
    largest depth value not above it) instead of sampling it; the paper starts at 6 and adds
    2 every 1,600 samples. Controller: `controller_config`, or its fields as
    keywords (``units``, ``learning_rate``, ``entropy_weight``, ...; see
    :class:`~kerasnas.multitrial.controller.ControllerConfig`).
    """

    def __init__(
        self,
        batch_size: int = 5,
        start_depth: int | None = None,
        depth_step: int = 2,
        depth_every: int = 1600,
        reuse_rewards: bool = True,
        max_known_batches: int = 20,
        controller_config: ControllerConfig | None = None,
        **kwargs: Any,
    ):
        self.controller_config = ControllerConfig.take(kwargs, controller_config)
        super().__init__(**kwargs)
        if batch_size < 1 or depth_every < 1 or depth_step < 0:
            raise SettingError(
                "need {batch_size} >= 1, {depth_every} >= 1, {depth_step} >= 0, got "
                f"{batch_size}, {depth_every}, {depth_step}"
            )
        self.batch_size = batch_size
        self.start_depth = start_depth
        self.depth_step = depth_step
        self.depth_every = depth_every
        self.reuse_rewards = reuse_rewards
        self.max_known_batches = max_known_batches
        self.controller: Controller | None = None
        self._batch: list[list] = []  # [tokens, counted, key] of the current batch
        self._to_issue: list[str] = []  # keys of the batch still to hand out
        self._waiting: list[str] = []  # keys handed out, reward not in yet
        self._failed: list[str] = []  # keys of the batch whose trial failed
        self._num_samples = 0

    def _build(self) -> None:
        if self.start_depth is not None and self._space.depth_index is None:
            raise ValueError("start_depth needs a depth decision (e.g. num_layers) in the space")
        self.controller = Controller(self._space, self.controller_config, seed=self.seed)

    def current_depth(self) -> int | None:
        """The depth the controller emits now (None: it samples ``num_layers``)."""
        if self.start_depth is None:
            return None
        values = self.space.decision(self.space.depth_index).values
        target = self.start_depth + self.depth_step * (self._num_samples // self.depth_every)
        below = [v for v in values if v <= target]
        return max(below) if below else min(values)

    def _sample_batch(self) -> None:
        space = self.space
        depth = self.current_depth()
        forced = None
        if depth is not None:
            forced = {space.depth_index: space.values(space.depth_decision).index(depth)}
        tokens, counted = self.controller.sample(self.batch_size, self._rng, forced)
        self._num_samples += self.batch_size
        self._batch = []
        for row, mask in zip(tokens, counted, strict=True):
            key = space.key(space.from_indices(row))
            self._batch.append([row.tolist(), mask.tolist(), key])
            if key not in self._to_issue and (not self.reuse_rewards or key not in self._rewards):
                self._to_issue.append(key)

    def _maybe_update(self) -> None:
        """The REINFORCE step once every reward of the batch is in."""
        if not self._batch or self._to_issue or self._waiting:
            return
        rows = [r for r in self._batch if r[2] in self._rewards and r[2] not in self._failed]
        if rows:
            self.controller.train(
                np.array([r[0] for r in rows], np.int32),
                np.array([r[1] for r in rows], bool),
                [self._rewards[r[2]] for r in rows],
            )
        self._batch, self._failed = [], []

    def _propose(self, trial_id: str) -> Any:
        self.space  # noqa: B018 (builds the controller)
        for _ in range(self.max_known_batches):
            if self._to_issue:
                key = self._to_issue.pop(0)
                self._waiting.append(key)
                return self._from_key(key)
            if self._waiting:
                return _WAIT
            self._maybe_update()
            self._sample_batch()
        # only known architectures for a while: evaluate the first one again
        key = self._batch[0][2]
        self._waiting.append(key)
        return self._from_key(key)

    def _from_key(self, key: str) -> dict[str, Any]:
        for row in self._batch:
            if row[2] == key:
                return self.space.from_indices(row[0])
        raise KeyError(key)

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        key = self.space.key(values)
        if key not in self._waiting:
            return
        self._waiting.remove(key)
        if reward is None:
            self._failed.append(key)
        self._maybe_update()

    def _state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.get_state(),
            "batch": self._batch,
            "to_issue": self._to_issue,
            "waiting": self._waiting,
            "failed": self._failed,
            "num_samples": self._num_samples,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.controller.set_state(state["controller"])
        self._batch = state["batch"]
        self._to_issue = state["to_issue"]
        self._waiting = state["waiting"]
        self._failed = state["failed"]
        self._num_samples = state["num_samples"]


class RENASOracle(ArchOracle):
    """RENAS: aging evolution whose mutations come from a learned controller.

    Population, sampling and aging as in :class:`RegularizedEvolutionOracle`. The
    :class:`~kerasnas.multitrial.controller.MutationController` reads the parent and emits
    which decision to change and its new value; it is trained by REINFORCE, every
    `batch_size` offspring, on the fitness gain reward(child) - reward(parent). A proposed
    child that was already issued is redrawn (up to 20 times); when it was evaluated, its
    known gain still trains the controller.

    The controller chooses among the decisions ``space.mutable`` lists (active, with a
    value that keeps the architecture valid and changes its model) and, for the chosen one,
    among all its other values. The child is ``space.apply(parent, decision, value)``:
    decisions the change switches on get random values, and a value that breaks one of the
    space's rules is repaired like any assignment (e.g. a cell input set equal to the node's
    other input moves that other input; a MetaQNN layer not allowed there ends the network).
    Repair is deterministic, so the gain is still a function of the proposal and REINFORCE
    stays unbiased; a proposal repaired back into the parent is an issued architecture
    (redrawn, its gain 0 trains the controller). Controller: `controller_config` or its
    fields as keywords, as :class:`ReinforceOracle`.
    """

    def __init__(
        self,
        population_size: int = 100,
        sample_size: int = 25,
        batch_size: int = 5,
        controller_config: ControllerConfig | None = None,
        **kwargs: Any,
    ):
        self.controller_config = ControllerConfig.take(kwargs, controller_config)
        super().__init__(**kwargs)
        if population_size < 1 or not 1 <= sample_size <= population_size or batch_size < 1:
            raise SettingError(
                "need {population_size} >= 1, 1 <= {sample_size} <= {population_size}, "
                f"{{batch_size}} >= 1, got {population_size}, {sample_size}, {batch_size}"
            )
        self.population_size = population_size
        self.sample_size = sample_size
        self.batch_size = batch_size
        self.controller: MutationController | None = None
        self._population: list[list] = []
        self._num_random = 0
        self._offspring: dict[
            str, list
        ] = {}  # trial_id -> [parent, mutable, which, value, parent reward]
        self._gains: list[list] = []  # [parent, mutable, which, value, gain] awaiting a step

    def _build(self) -> None:
        self.controller = MutationController(self._space, self.controller_config, seed=self.seed)

    def _propose(self, trial_id: str) -> Any:
        space = self.space
        if self._num_random < self.population_size:
            self._num_random += 1
            return self._random_unseen()
        if not self._population:
            return _WAIT
        parent, parent_reward = self._population[
            _tournament(self._population, self.sample_size, self._rng)
        ]
        tokens = space.to_indices(parent)
        mutable = [False] * len(space)
        for i in space.mutable(parent):
            mutable[i] = True
        for _ in range(20):
            which, value = self.controller.propose([tokens], [mutable], self._rng)
            which, value = int(which[0]), int(value[0])
            child = space.apply(parent, which, value, self._rng)
            record = [tokens, mutable, which, value]
            key = space.key(child)
            if key not in self._seen:
                break
            if key in self._rewards:
                self._add_gain(record + [self._rewards[key] - parent_reward])
        self._offspring[trial_id] = record + [parent_reward]
        return child

    def _add_gain(self, row: list) -> None:
        self._gains.append(row)
        if len(self._gains) >= self.batch_size:
            columns = list(zip(*self._gains, strict=True))
            self.controller.train(*columns)
            self._gains = []

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        offspring = self._offspring.pop(trial_id, None)
        if reward is None:
            return
        self._population.append([values, reward])
        if len(self._population) > self.population_size:
            self._population.pop(0)
        if offspring is not None:
            self._add_gain(offspring[:4] + [reward - offspring[4]])

    def _state(self) -> dict[str, Any]:
        return {
            "controller": self.controller.get_state(),
            "population": self._population,
            "num_random": self._num_random,
            "offspring": self._offspring,
            "gains": self._gains,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self.controller.set_state(state["controller"])
        self._population = [[dict(v), float(r)] for v, r in state["population"]]
        self._num_random = state["num_random"]
        self._offspring = state["offspring"]
        self._gains = state["gains"]
