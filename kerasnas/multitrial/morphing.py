"""Search strategies that grow networks by network morphisms, their children inheriting the
parents' trained weights: NASH's hill climbing (Elsken, Metzen and Hutter 2017) and
LEMONADE's multi-objective Lamarckian evolution (Elsken, Metzen and Hutter, ICLR 2019).

Every child is a completed trial's architecture changed by random function-preserving
morphisms (:func:`kerasnas.estimation.inheritance.random_child`); the oracle writes the
parent's trial id and the morphisms into the trial's hyperparameter values
(``morphism/parent``, ``morphism/ops``), where ``--estimator=morphism``
(:class:`~kerasnas.estimation.inheritance.MorphismInheritance`) reads them to start the
child from the parent's weights. Any other estimator trains every child from scratch.

Supported spaces: those :mod:`kerasnas.estimation.morphism` supports (``nasrl``). The
oracles need the input shape (the morphisms depend on the image size) and the number of
classes (LEMONADE's cheap objective, the parameter count, is ``space.cost``'s).
Initial networks: the smallest (by parameters) of `initial_samples` random architectures:
the papers start from small, trivial networks and let the morphisms grow them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasnas.errors import SettingError
from kerasnas.estimation import inheritance
from kerasnas.multitrial.oracles import _WAIT, RUNNING, ArchOracle
from kerasnas.pareto import front_indices

__all__ = ["LemonadeOracle", "MorphismOracle", "NASHOracle", "kde"]


def _positive(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SettingError(f"{{{name}}} must be an int >= {minimum}, got {value!r}")
    return value


class MorphismOracle(ArchOracle):
    """Base of the morphism strategies: the lineage entries, the initial networks, children.

    Args:
      input_shape: (height, width, channels) of the inputs.
      num_classes: classes of the classifier (for parameter counts).
      initial_samples: random architectures the initial networks are the smallest of.
    """

    def __init__(
        self,
        input_shape: Sequence[int] | None = None,
        num_classes: int = 10,
        initial_samples: int = 20,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if input_shape is None or len(input_shape) != 3:
            raise SettingError(
                f"{{input_shape}} must be (height, width, channels), got {input_shape!r}"
            )
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = _positive("num_classes", num_classes)
        self.initial_samples = _positive("initial_samples", initial_samples)
        self._lineage: dict[str, list] = {}  # trial_id -> [parent trial id, ops JSON]
        self._queue: list[list] = []  # [architecture, parent id or None, ops JSON or None]
        self._pending: list[str] = []  # trial ids issued, result not in
        self._started = False

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.input_shape[0], self.input_shape[1]

    def params(self, arch: dict[str, Any]) -> int:
        """The parameter count of `arch` (``space.cost``)."""
        return int(self.space.cost(arch, self.input_shape, self.num_classes).params)

    def smallest(self, n: int) -> list[dict[str, Any]]:
        """The `n` smallest (by parameters, then draw order) distinct architectures among
        `initial_samples` random ones."""
        found: dict[str, tuple[int, int, dict[str, Any]]] = {}
        for i in range(self.initial_samples):
            arch = self.space.sample(self._rng)
            found.setdefault(self.space.key(arch), (self.params(arch), i, arch))
        return [a for _, _, a in sorted(found.values(), key=lambda t: t[:2])[:n]]

    def child(
        self, parent: dict[str, Any], n_ops: int, avoid: set[str] = frozenset()
    ) -> tuple[dict[str, Any], list] | None:
        """A child of `parent` by `n_ops` random morphisms, not issued before and not in
        `avoid` when one is found in 20 draws (else a repeat); None when no morphism applies."""
        best = None
        for _ in range(20):
            arch, ops = inheritance.random_child(
                self.space, parent, n_ops, self.image_hw, self._rng
            )
            if not ops:
                return None
            best = best or (arch, ops)
            key = self.space.key(arch)
            if key not in self._seen and key not in avoid:
                return arch, ops
        return best

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        """As :meth:`ArchOracle.populate_space`, plus the lineage entries of a child."""
        response = super().populate_space(trial_id)
        if response["status"] == RUNNING and trial_id in self._lineage:
            parent, ops = self._lineage[trial_id]
            response["values"].update({inheritance.PARENT: parent, inheritance.OPS: ops})
        return response

    def _issue(self, trial_id: str) -> dict[str, Any]:
        arch, parent, ops = self._queue.pop(0)
        if parent is not None:
            self._lineage[trial_id] = [parent, ops]
        self._pending.append(trial_id)
        return arch

    def lineage(self, trial_id: str) -> tuple[str | None, list]:
        """(parent trial id, morphisms) of an issued trial; (None, []) for an initial one."""
        if trial_id not in self._lineage:
            return None, []
        parent, ops = self._lineage[trial_id]
        return parent, inheritance.decode(ops)

    def _state(self) -> dict[str, Any]:
        return {
            "lineage": self._lineage,
            "queue": self._queue,
            "pending": self._pending,
            "started": self._started,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._lineage = {k: list(v) for k, v in state["lineage"].items()}
        self._queue = [list(q) for q in state["queue"]]
        self._pending = list(state["pending"])
        self._started = state["started"]


class NASHOracle(MorphismOracle):
    """NASH: hill climbing with network morphisms (Elsken, Metzen and Hutter 2017).

    The first trial is the initial network (trained as the estimator trains a trial without
    a parent). Each step then issues `n_neigh` trials: `n_neigh` - 1 children of the
    current best, each by `n_nm` random morphisms, and (with `train_parent`, as NASH) the
    best itself again (``morphism/ops`` = ``[]``: its weights trained further), so that
    children that trained longer in all are not favoured; the best reward of the step's
    trials makes the next best (without `train_parent`, the current best competes with its
    earlier reward). A step waits for all its results (IDLE meanwhile).
    """

    def __init__(self, n_neigh: int = 4, n_nm: int = 2, train_parent: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.n_neigh = _positive("n_neigh", n_neigh, 2 if train_parent else 1)
        self.n_nm = _positive("n_nm", n_nm)
        self.train_parent = bool(train_parent)
        self._best: list | None = None  # [trial_id, architecture, reward]
        self._step: dict[str, float | None] = {}  # trial_id -> reward of this step

    @property
    def best(self) -> tuple[str, dict[str, Any], float] | None:
        """(trial id, architecture, reward) of the current parent."""
        return None if self._best is None else (self._best[0], dict(self._best[1]), self._best[2])

    def _propose(self, trial_id: str) -> Any:
        if not self._started:
            self._started = True
            self._queue = [[self.smallest(1)[0], None, None]]
        if self._queue:
            return self._issue(trial_id)
        if self._pending:
            return _WAIT
        if self._best is None:  # the initial network failed: another one
            self._queue = [[self._random_unseen(), None, None]]
            return self._issue(trial_id)
        best_id, best_arch, _ = self._best
        keys: set[str] = set()
        for _ in range(self.n_neigh - int(self.train_parent)):
            found = self.child(best_arch, self.n_nm, keys)
            if found is not None:
                keys.add(self.space.key(found[0]))
                self._queue.append([found[0], best_id, inheritance.encode(found[1])])
        if not self._queue:
            return None  # no morphism applies to the best any more
        if self.train_parent:
            self._queue.append([dict(best_arch), best_id, "[]"])
        return self._issue(trial_id)

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        if trial_id not in self._pending:
            return
        self._pending.remove(trial_id)
        self._step[trial_id] = reward
        if self._pending or self._queue:
            return
        candidates = [(r, t) for t, r in self._step.items() if r is not None]
        if self._best is not None and not self.train_parent:
            candidates.append((self._best[2], self._best[0]))
        if candidates:
            reward, best = max(candidates, key=lambda c: (c[0], -int(c[1])))
            self._best = [best, dict(self._issued[best]), float(reward)]
        self._step = {}

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "best": self._best, "step": self._step}

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._best = None if state["best"] is None else list(state["best"])
        self._step = dict(state["step"])


def kde(samples: Sequence[float], at: Sequence[float]) -> np.ndarray:
    """A Gaussian kernel density estimate of `samples` evaluated `at` (bandwidth: Scott's
    rule, std * n^(-1/5), at least 0.05)."""
    x = np.asarray(samples, float)
    h = max(float(np.std(x)) * len(x) ** -0.2, 0.05)
    z = (np.asarray(at, float)[:, None] - x[None, :]) / h
    return np.exp(-0.5 * z**2).mean(axis=1) / (h * np.sqrt(2 * np.pi))


class LemonadeOracle(MorphismOracle):
    """LEMONADE: Lamarckian evolution over the Pareto front of (reward, parameters) (Elsken,
    Metzen and Hutter, ICLR 2019).

    The first generation is `n_init` initial networks. Each later generation: the
    population is the Pareto front of the completed trials (reward, the validation
    accuracy unless a MnasNet reward is set, maximised; parameters minimised); a kernel
    density estimate of the cheap objective (log parameters) over the front gives every
    member a parent probability inversely proportional to its density, so that sparse
    regions of the front get more children; `n_children` children are generated cheaply
    (each a sampled parent changed by 1 to `n_nm` random morphisms, none issued before);
    `n_accept` of them, drawn without replacement with probability inversely proportional
    to the same density at their own log parameters, are trained. A generation waits for
    all its results (IDLE meanwhile). Only function-preserving morphisms exist here, so
    networks only grow (the paper also shrinks them by approximate morphisms).
    """

    def __init__(
        self,
        n_init: int = 3,
        n_children: int = 16,
        n_accept: int = 4,
        n_nm: int = 3,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.n_init = _positive("n_init", n_init)
        self.n_children = _positive("n_children", n_children)
        self.n_accept = _positive("n_accept", n_accept)
        self.n_nm = _positive("n_nm", n_nm)
        if n_accept > n_children:
            raise SettingError(
                f"need {{n_accept}} <= {{n_children}}, got {n_accept} and {n_children}"
            )
        self._evaluated: list[list] = []  # [trial_id, architecture, reward, params]
        self._generations = 0

    def population(self) -> list[tuple[str, dict[str, Any], float, int]]:
        """The Pareto front of the completed trials: (trial id, architecture, reward,
        parameters)."""
        front = front_indices([e[3] for e in self._evaluated], [e[2] for e in self._evaluated])
        return [tuple(self._evaluated[i]) for i in sorted(front)]

    def _generation(self) -> None:
        front = self.population()
        log_params = [np.log(p) for *_, p in front]
        weights = 1.0 / kde(log_params, log_params)
        weights /= weights.sum()
        children, keys = [], set()
        for _ in range(4 * self.n_children):
            if len(children) == self.n_children:
                break
            parent = front[int(self._rng.choice(len(front), p=weights))]
            n_ops = int(self._rng.integers(1, self.n_nm + 1))
            found = self.child(parent[1], n_ops, keys)
            if found is None or self.space.key(found[0]) in keys | self._seen:
                continue
            keys.add(self.space.key(found[0]))
            children.append([found[0], parent[0], inheritance.encode(found[1])])
        if not children:
            return
        density = kde(log_params, [np.log(self.params(c[0])) for c in children])
        p = (1.0 / density) / (1.0 / density).sum()
        take = min(self.n_accept, len(children))
        accepted = self._rng.choice(len(children), size=take, replace=False, p=p)
        self._queue = [children[int(i)] for i in sorted(accepted)]
        self._generations += 1

    def _propose(self, trial_id: str) -> Any:
        if not self._started:
            self._started = True
            self._queue = [[a, None, None] for a in self.smallest(self.n_init)]
        if self._queue:
            return self._issue(trial_id)
        if self._pending:
            return _WAIT
        if not self._evaluated:  # every initial network failed: another one
            self._queue = [[self._random_unseen(), None, None]]
            return self._issue(trial_id)
        self._generation()
        return self._issue(trial_id) if self._queue else None

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        if trial_id in self._pending:
            self._pending.remove(trial_id)
        if reward is not None:
            self._evaluated.append([trial_id, dict(values), float(reward), self.params(values)])

    def _state(self) -> dict[str, Any]:
        return {
            **super()._state(),
            "evaluated": self._evaluated,
            "generations": self._generations,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        super()._set_state(state)
        self._evaluated = [list(e) for e in state["evaluated"]]
        self._generations = state["generations"]
