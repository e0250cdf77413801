"""Multi-objective evolution by non-dominated sorting: NSGA-II (Deb, Pratap, Agarwal and
Meyarivan, IEEE TEC 2002) over (accuracy, cost), as a ``keras_tuner.Oracle``.

Objectives, both minimised: ``1 - reward`` (the reward is the trial's validation accuracy
unless a MnasNet reward is set, which already mixes in a cost: leave it off here) and the
architecture's cost, ``space.cost(...)``'s `objective_cost` (``params``, ``flops`` or
``mac``: analytic, computed by the oracle from the architecture; latency would need a
TFLite conversion per trial, so it is not offered). The front is invariant to monotone
changes of either objective; the crowding distance is not, and it takes the cost as its
logarithm, so that crowding spreads the population evenly over orders of magnitude of cost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kerasnas.errors import SettingError
from kerasnas.multitrial.oracles import _WAIT, ArchOracle
from kerasnas.pareto import crowding_distance, non_dominated_sort
from kerasnas.search_spaces.base import Arch, SpaceError

__all__ = ["COST_OBJECTIVES", "NSGA2Oracle"]

COST_OBJECTIVES = ("params", "flops", "mac")


class NSGA2Oracle(ArchOracle):
    """NSGA-II over (reward, cost) on any discrete space, generation by generation.

    Generation 0 is `population_size` random architectures (``space.sample``, none twice).
    Each later generation is `population_size` children of the current population: a
    parent is the best of `tournament_size` members drawn without replacement, by
    non-dominated rank, then crowding distance (larger first); with probability
    `crossover_rate` the child starts as a uniform crossover of two such parents (each
    decision's value from either, on the space's index encoding, then repaired by
    ``space.from_indices`` like any assignment: so every space supports it), else as a copy
    of one; then it gets one ``space.mutate`` (the mutation of aging evolution: one active
    decision changed so that the model changes). A child already issued is drawn again (up
    to 20 times). When every child of a generation has its result (IDLE until then), the
    population becomes the best `population_size` of parents and children together
    ((mu + lambda) selection): whole fronts by rank, the last one cut by crowding distance
    (ties: the earlier trial). Failed trials take no part. Deterministic given the seed;
    ``get_state`` holds the population and the generation in progress, so a reloaded
    oracle continues exactly.

    Args:
      population_size: mu = lambda, the population and the children per generation.
      tournament_size: members per tournament (NSGA-II: 2).
      crossover_rate: the chance that a child starts as a crossover of two parents.
      objective_cost: the cost objective, a field of ``space.cost`` (see the module doc).
      input_shape: (height, width, channels) of the inputs (for ``space.cost``).
      num_classes: classes of the classifier (for ``space.cost``).
      cost: the cost of an architecture, instead of ``space.cost`` (synthetic problems).
    """

    def __init__(
        self,
        population_size: int = 10,
        tournament_size: int = 2,
        crossover_rate: float = 0.5,
        objective_cost: str = "params",
        input_shape: Sequence[int] | None = None,
        num_classes: int = 10,
        cost: Callable[[Arch], float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if population_size < 2 or not 1 <= tournament_size <= population_size:
            raise SettingError(
                "need {population_size} >= 2 and 1 <= {sample_size} <= {population_size}, "
                f"got {population_size} and {tournament_size}"
            )
        if not 0.0 <= crossover_rate <= 1.0:
            raise SettingError(f"{{crossover_rate}} must be in [0, 1], got {crossover_rate!r}")
        if objective_cost not in COST_OBJECTIVES:
            raise SettingError(
                f"{{objective_cost}} must be one of {', '.join(COST_OBJECTIVES)}, got "
                f"{objective_cost!r}"
            )
        if cost is None and (input_shape is None or len(input_shape) != 3):
            raise SettingError(
                f"{{input_shape}} must be (height, width, channels), got {input_shape!r}"
            )
        self.population_size = int(population_size)
        self.tournament_size = int(tournament_size)
        self.crossover_rate = float(crossover_rate)
        self.objective_cost = objective_cost
        self.input_shape = None if input_shape is None else tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self._cost = cost
        self._population: list[list] = []  # [trial_id, architecture, reward, cost]
        self._children: list[list] = []  # this generation's evaluated children, as above
        self._queue: list[Arch] = []  # this generation's architectures still to issue
        self._pending: list[str] = []  # trial ids issued, result not in
        self._generation = -1  # the generation in progress (-1: none started)

    # -- objectives --------------------------------------------------------------------------

    def cost(self, arch: Arch) -> float:
        """The cost objective of `arch`."""
        if self._cost is not None:
            return float(self._cost(arch))
        return float(
            self.space.cost(arch, self.input_shape, self.num_classes).get(self.objective_cost)
        )

    @staticmethod
    def objectives(members: Sequence[Sequence[Any]]) -> np.ndarray:
        """(1 - reward, log cost) of [trial_id, architecture, reward, cost] members: shape
        (n, 2), both minimised."""
        return np.array(
            [[1.0 - float(m[2]), float(np.log(max(float(m[3]), 1e-12)))] for m in members]
        ).reshape(-1, 2)

    @classmethod
    def rank_and_crowding(cls, members: Sequence[Sequence[Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Each member's non-dominated rank (0: the first front) and crowding distance
        within its front."""
        f = cls.objectives(members)
        rank, crowd = np.zeros(len(members), int), np.zeros(len(members))
        for r, front in enumerate(non_dominated_sort(f)):
            rank[front] = r
            crowd[front] = crowding_distance(f, front)
        return rank, crowd

    @classmethod
    def select(cls, members: Sequence[Sequence[Any]], size: int) -> list[int]:
        """Indices of the `size` members (mu + lambda) selection keeps: whole fronts by
        rank, the last one cut by crowding distance (larger first; ties: lower index)."""
        f = cls.objectives(members)
        kept: list[int] = []
        for front in non_dominated_sort(f):
            if len(kept) + len(front) <= size:
                kept.extend(front)
                continue
            crowd = crowding_distance(f, front)
            order = sorted(range(len(front)), key=lambda k: (-crowd[k], front[k]))
            kept.extend(front[k] for k in order[: size - len(kept)])
            break
        return sorted(kept)

    # -- the population ------------------------------------------------------------------------

    @property
    def population(self) -> list[tuple[str, Arch, float, float]]:
        """The current population: (trial id, architecture, reward, cost)."""
        return [(t, dict(a), r, c) for t, a, r, c in self._population]

    @property
    def generation(self) -> int:
        """The generation in progress (0: the random one; -1: none started)."""
        return self._generation

    def _tournament(self, rank: np.ndarray, crowd: np.ndarray) -> int:
        size = min(self.tournament_size, len(self._population))
        picks = self._rng.choice(len(self._population), size=size, replace=False)
        return int(min(picks, key=lambda i: (rank[i], -crowd[i], i)))

    def _crossover(self, a: Arch, b: Arch) -> Arch:
        ia, ib = self.space.to_indices(a), self.space.to_indices(b)
        mask = self._rng.random(len(ia)) < 0.5
        try:
            return self.space.from_indices(
                [x if m else y for x, y, m in zip(ia, ib, mask, strict=True)]
            )
        except SpaceError:  # a mix the space cannot repair: the first parent
            return dict(a)

    def _child(self, rank: np.ndarray, crowd: np.ndarray) -> Arch:
        parent = self._population[self._tournament(rank, crowd)][1]
        if self._rng.random() < self.crossover_rate:
            other = self._population[self._tournament(rank, crowd)][1]
            parent = self._crossover(parent, other)
        try:
            return self.space.mutate(parent, self._rng)
        except SpaceError:  # nothing of it can change: a random architecture
            return self.space.sample(self._rng)

    def _offspring(self) -> list[Arch]:
        rank, crowd = self.rank_and_crowding(self._population)
        children, keys = [], set()
        for _ in range(self.population_size):
            child = self._child(rank, crowd)
            for _ in range(20):
                key = self.space.key(child)
                if key not in self._seen and key not in keys:
                    break
                child = self._child(rank, crowd)
            keys.add(self.space.key(child))
            children.append(child)
        return children

    def _random_generation(self) -> list[Arch]:
        archs, keys = [], set()
        for _ in range(self.population_size):
            arch = self._random_unseen()
            if arch is None or self.space.key(arch) in keys:
                break
            keys.add(self.space.key(arch))
            self._seen.add(self.space.key(arch))  # so that the next draw avoids it
            archs.append(arch)
        for arch in archs:
            self._seen.discard(self.space.key(arch))
        return archs

    # -- keras-tuner hooks ---------------------------------------------------------------------

    def _propose(self, trial_id: str) -> Any:
        if not self._queue and not self._pending:
            self._generation += 1
            self._queue = self._offspring() if self._population else self._random_generation()
            if not self._queue:
                return None  # the space is exhausted
        if not self._queue:
            return _WAIT
        self._pending.append(trial_id)
        return self._queue.pop(0)

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        if trial_id not in self._pending:
            return
        self._pending.remove(trial_id)
        if reward is not None:
            self._children.append([trial_id, dict(values), float(reward), self.cost(values)])
        if self._pending or self._queue:
            return
        merged = self._population + self._children
        self._population = [merged[i] for i in self.select(merged, self.population_size)]
        self._children = []

    # -- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "population": self._population,
            "children": self._children,
            "queue": self._queue,
            "pending": self._pending,
            "generation": self._generation,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._population = [[t, dict(a), float(r), float(c)] for t, a, r, c in state["population"]]
        self._children = [[t, dict(a), float(r), float(c)] for t, a, r, c in state["children"]]
        self._queue = [dict(a) for a in state["queue"]]
        self._pending = list(state["pending"])
        self._generation = int(state["generation"])
