"""MetaQNN (Baker et al., ICLR 2017): Q-learning over the steps of a layer-by-layer MDP, as
a ``keras_tuner.Oracle``.

The MDP is the space's (:meth:`~kerasnas.search_spaces.DiscreteSpace.initial_state`,
``actions(state) -> list[str]``, ``next_state(state, action)``, ``is_terminal(state)``,
``arch_from_actions(actions)``): MetaQNN's own for the MetaQNN space, and for any other space
the default chain of its decisions (state = [next decision, last value, depth chosen], like
MetaQNN's (depth, layer); the layers past a chosen depth are skipped). States are
JSON-serialisable (they key the Q table), actions strings.
"""

from __future__ import annotations

import json
from typing import Any

from kerasnas.multitrial.oracles import ArchOracle

# MetaQNN's CIFAR-10 schedule: (epsilon, number of models).
PAPER_EPSILON_SCHEDULE = (
    (1.0, 1500),
    (0.9, 100),
    (0.8, 100),
    (0.7, 100),
    (0.6, 150),
    (0.5, 150),
    (0.4, 150),
    (0.3, 150),
    (0.2, 150),
    (0.1, 150),
)


def _state_key(state: Any) -> str:
    return json.dumps(state, sort_keys=True)


class QLearningOracle(ArchOracle):
    """MetaQNN's Q-learning over the MDP of the space (see the module doc).

    Each trial walks the MDP from its initial state, epsilon-greedy on Q (ties broken at
    random), until a terminal state; epsilon follows `epsilon_schedule`, a list of
    (epsilon, number of models), the last epsilon staying after the list ends. Each result
    is appended to the replay memory, then `replay_size` memories (all if fewer, drawn
    without replacement) update Q, each from its last transition to its first:
    Q(s, a) <- (1 - lr) Q(s, a) + lr * target, target = the reward if s' is terminal, else
    max_a' Q(s', a') (no discount). Unvisited pairs hold `initial_q` (MetaQNN: 0.5). A walk
    that gives an architecture already evaluated is not trained again: its known reward
    is replayed and the walk redrawn (up to 100 times).
    """

    def __init__(
        self,
        epsilon_schedule: Any = PAPER_EPSILON_SCHEDULE,
        learning_rate: float = 0.01,
        replay_size: int = 100,
        initial_q: float = 0.5,
        max_steps: int = 1000,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        schedule = [(float(e), int(n)) for e, n in epsilon_schedule]
        if not schedule or any(not 0 <= e <= 1 or n < 0 for e, n in schedule):
            raise ValueError("epsilon_schedule: (epsilon in [0, 1], models >= 0) pairs")
        if not 0 < learning_rate <= 1 or replay_size < 1:
            raise ValueError("need 0 < learning_rate <= 1 and replay_size >= 1")
        self.epsilon_schedule = schedule
        self.learning_rate = float(learning_rate)
        self.replay_size = replay_size
        self.initial_q = float(initial_q)
        self.max_steps = max_steps
        self._q: dict[str, dict[str, float]] = {}
        self._replay: list[list] = []  # [actions, reward]
        self._walks: dict[str, list[str]] = {}  # trial_id -> actions
        self._num_models = 0

    def epsilon(self) -> float:
        """Epsilon for the next model."""
        n = self._num_models
        for eps, count in self.epsilon_schedule:
            if n < count:
                return eps
            n -= count
        return self.epsilon_schedule[-1][0]

    def q_value(self, state: Any, action: str) -> float:
        return self._q.get(_state_key(state), {}).get(action, self.initial_q)

    def _walk(self, epsilon: float) -> list[str]:
        mdp = self.space
        state, actions = mdp.initial_state(), []
        while not mdp.is_terminal(state):
            if len(actions) >= self.max_steps:
                raise RuntimeError(f"the MDP did not terminate within {self.max_steps} steps")
            options = list(mdp.actions(state))
            if not options:
                raise RuntimeError(f"no action from the non-terminal state {state!r}")
            if self._rng.random() < epsilon:
                action = options[self._rng.integers(len(options))]
            else:
                q = [self.q_value(state, a) for a in options]
                best = [a for a, v in zip(options, q, strict=True) if v == max(q)]
                action = best[self._rng.integers(len(best))]
            actions.append(action)
            state = mdp.next_state(state, action)
        return actions

    def _values(self, actions: list[str]) -> dict[str, Any]:
        return self.space.canonical(self.space.arch_from_actions(actions))

    def update(self, actions: list[str], reward: float) -> None:
        """One Q-learning pass over a walk, from its last transition to its first."""
        mdp = self.space
        states = [mdp.initial_state()]
        for action in actions:
            states.append(mdp.next_state(states[-1], action))
        for t in reversed(range(len(actions))):
            following = states[t + 1]
            if mdp.is_terminal(following):
                target = reward
            else:
                target = max(self.q_value(following, a) for a in mdp.actions(following))
            row = self._q.setdefault(_state_key(states[t]), {})
            old = row.get(actions[t], self.initial_q)
            row[actions[t]] = (1 - self.learning_rate) * old + self.learning_rate * target

    def _remember(self, actions: list[str], reward: float) -> None:
        self._replay.append([list(actions), float(reward)])
        n = min(self.replay_size, len(self._replay))
        for i in self._rng.choice(len(self._replay), size=n, replace=False):
            self.update(*self._replay[int(i)])

    def _propose(self, trial_id: str) -> Any:
        epsilon = self.epsilon()
        for _ in range(100):
            actions = self._walk(epsilon)
            values = self._values(actions)
            key = self.space.key(values)
            if key not in self._seen:
                break
            if key in self._rewards:
                self._remember(actions, self._rewards[key])
        self._walks[trial_id] = actions
        self._num_models += 1
        return values

    def _on_result(self, trial_id: str, values: dict[str, Any], reward: float | None) -> None:
        actions = self._walks.pop(trial_id, None)
        if actions is not None and reward is not None:
            self._remember(actions, reward)

    def _state(self) -> dict[str, Any]:
        return {
            "q": self._q,
            "replay": self._replay,
            "walks": self._walks,
            "num_models": self._num_models,
        }

    def _set_state(self, state: dict[str, Any]) -> None:
        self._q = {s: {a: float(v) for a, v in row.items()} for s, row in state["q"].items()}
        self._replay = [[list(a), float(r)] for a, r in state["replay"]]
        self._walks = {k: list(v) for k, v in state["walks"].items()}
        self._num_models = state["num_models"]
