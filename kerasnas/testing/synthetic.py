"""A synthetic reward over a small space whose best architecture is known, for testing and
benchmarking search strategies without training networks.

Design: decisions d0..d{D-1} with K values each (ints for even decisions, strings for odd
ones). score(a) = sum_i main_i[a_i] + sum_i pair_i[a_i, a_{i+1}], with main ~ N(0, 1) and
pair ~ N(0, interaction^2) drawn from one seeded generator: mostly additive per-decision
effects plus smaller interactions between neighbouring decisions, the structure real NAS
rewards show (a good kernel size helps in most contexts). The reward maps the score affinely
onto [0.5, 0.95] (a "validation accuracy"); the best architecture is found by enumeration
and is unique.
"""

from __future__ import annotations

import itertools
from typing import Any

import keras_tuner
import numpy as np

_INTS = (1, 3, 5, 7, 9, 11)
_STRINGS = ("relu", "tanh", "elu", "selu", "gelu", "swish")


class SyntheticReward:
    """The fixed reward table of the module doc; call it with an architecture dict."""

    def __init__(
        self,
        num_decisions: int = 5,
        num_values: int = 4,
        interaction: float = 0.5,
        seed: int = 0,
    ):
        if not 1 <= num_values <= len(_INTS) or num_decisions < 1:
            raise ValueError(f"need 1 <= num_values <= {len(_INTS)} and num_decisions >= 1")
        self.values = [
            list(_INTS[:num_values]) if i % 2 == 0 else list(_STRINGS[:num_values])
            for i in range(num_decisions)
        ]
        self.names = [f"d{i}" for i in range(num_decisions)]
        rng = np.random.default_rng(seed)
        self.main = rng.normal(size=(num_decisions, num_values))
        self.pair = interaction * rng.normal(
            size=(max(num_decisions - 1, 0), num_values, num_values)
        )
        scores = {
            idx: self._score(idx)
            for idx in itertools.product(range(num_values), repeat=num_decisions)
        }
        low, high = min(scores.values()), max(scores.values())
        self._table = {k: 0.5 + 0.45 * (s - low) / (high - low) for k, s in scores.items()}
        ranked = sorted(self._table, key=self._table.get, reverse=True)
        if self._table[ranked[0]] == self._table[ranked[1]]:
            raise ValueError("the best architecture is not unique; pick another seed")
        self.best_indices = ranked[0]
        self.best = self._values(ranked[0])
        self.best_reward = self._table[ranked[0]]

    def _score(self, idx: tuple[int, ...]) -> float:
        s = sum(self.main[i, k] for i, k in enumerate(idx))
        return s + sum(self.pair[i, idx[i], idx[i + 1]] for i in range(len(idx) - 1))

    def _values(self, idx: tuple[int, ...]) -> dict[str, Any]:
        return {n: v[k] for n, v, k in zip(self.names, self.values, idx, strict=True)}

    def __len__(self) -> int:
        return len(self._table)

    def __call__(self, values: dict[str, Any]) -> float:
        idx = tuple(v.index(values[n]) for n, v in zip(self.names, self.values, strict=True))
        return self._table[idx]

    def hyperparameters(self) -> keras_tuner.HyperParameters:
        """The space as hp.Choice entries, in decision order."""
        hp = keras_tuner.HyperParameters()
        for name, values in zip(self.names, self.values, strict=True):
            hp.Choice(name, values)
        return hp


def trials_to_best(
    oracle: keras_tuner.Oracle, problem: SyntheticReward, max_trials: int
) -> int | None:
    """Runs `oracle` on `problem` trial by trial (populate_space, then record_result; no
    keras-tuner bookkeeping) and returns the 1-based trial that first proposes the best
    architecture, or None if it is not found within `max_trials`."""
    for t in range(max_trials):
        trial_id = str(t)
        response = oracle.populate_space(trial_id)
        if response["status"] == "IDLE":
            raise RuntimeError("the oracle waits for results it has already been given")
        if response["status"] != "RUNNING":
            return None
        values = response["values"]
        oracle.record_result(trial_id, problem(values))
        if all(values[n] == problem.best[n] for n in problem.names):
            return t + 1
    return None
