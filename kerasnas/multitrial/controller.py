"""RL controllers: the architecture controller of Zoph & Le (ICLR 2017) and the mutation
controller of RENAS, as Keras models trained by REINFORCE.

:class:`Controller` is a stack of LSTM cells (2 x 35 units by default, every weight uniform
in [-0.08, 0.08]) that emits an architecture of a :class:`~kerasnas.search_spaces.
DiscreteSpace` one decision at a time: a softmax per decision, the sampled choice embedded
(one embedding table per decision) and fed as the next input. The space's depth decision
(declared, e.g. ``num_layers``) is emitted first and switches off the steps of deeper layers
(their tokens are the defaults' indices). Anchor-point skips (decisions declared with a
``skip_from`` layer): after the last decision of layer n the controller makes an anchor step
whose output a_n is kept; the skip from layer j into layer n is on with probability
sigmoid(v^T tanh(W_prev a_j + W_curr a_n)), and the next input is the mean of the chosen
anchors (ENAS' form). A sample's log-probability and entropy count the decisions active in
its validated architecture only (e.g. no MetaQNN layer after the terminal ``softmax``): the
other tokens do not change the reward, so the score-function gradient stays unbiased.

:class:`MutationController` reads a parent architecture (one LSTM step per decision) and
emits two tokens: which decision to change (over the mutable ones) and its new value (over
the other values).

REINFORCE step (``tf.function``): loss = -(1/m) sum_k (R_k - b) log P(a_k) - beta * mean H,
b an exponential moving average of the rewards (initialised with the first batch's mean,
updated after each step, reward by reward), Adam. Sampling draws uniforms from a numpy
Generator owned by the caller, so the caller's seed fixes every sample.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas.search_spaces.base import DiscreteSpace

_MASKED = -1e9


def _pack(array: Any) -> dict[str, Any]:
    """An array as JSON: dtype, shape and its bytes in base64 (exact and compact)."""
    array = np.asarray(array)
    return {
        "dtype": str(array.dtype),
        "shape": list(array.shape),
        "data": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def _unpack(packed: dict[str, Any]) -> np.ndarray:
    data = base64.b64decode(packed["data"])
    return np.frombuffer(data, dtype=packed["dtype"]).reshape(packed["shape"]).copy()


def _inverse_cdf(probs: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """Index sampled from each row of `probs` with uniforms `u` [B]."""
    cdf = tf.cumsum(probs, axis=1)
    idx = tf.reduce_sum(tf.cast(cdf <= u[:, None], tf.int32), axis=1)
    return tf.minimum(idx, tf.shape(probs)[1] - 1)


def _categorical(
    logits: tf.Tensor, tok: tf.Tensor, gather: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """log P(tok) and the entropy of each row's softmax. ``gather=False`` picks log P(tok)
    by a one-hot product instead: the same value, a gradient that traces much faster (long
    unrolls), summed in another order."""
    logprobs = tf.nn.log_softmax(logits)
    if gather:
        lp = tf.gather(logprobs, tok, batch_dims=1)
    else:
        lp = tf.reduce_sum(tf.one_hot(tok, tf.shape(logits)[1]) * logprobs, axis=1)
    ent = -tf.reduce_sum(tf.exp(logprobs) * logprobs, axis=1)
    return lp, ent


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Hyper-parameters of a controller: an LSTM stack of `num_lstm_layers` x `units`,
    weights uniform in [-init_range, init_range]; Adam at `learning_rate`; reward baseline
    decay; entropy bonus weight (beta); logits divided by `temperature` then shaped as
    ``tanh_constant * tanh(l)`` (ENAS'; None switches either off)."""

    units: int = 35
    num_lstm_layers: int = 2
    init_range: float = 0.08
    learning_rate: float = 6e-4
    baseline_decay: float = 0.95
    entropy_weight: float = 0.0
    temperature: float | None = None
    tanh_constant: float | None = None

    def __post_init__(self):
        if self.units < 1 or self.num_lstm_layers < 1:
            raise ValueError("units and num_lstm_layers must be >= 1")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")

    @classmethod
    def take(cls, kwargs: dict[str, Any], base: ControllerConfig | None = None) -> ControllerConfig:
        """`base` (default: the defaults) with the fields found in `kwargs`, which are
        removed from it (the rest are someone else's arguments)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in fields}
        return dataclasses.replace(base or cls(), **given)


class _Policy(keras.Model):
    """LSTM stack, start vector, logit shaping, REINFORCE step and state (see module doc).
    Subclasses set ``lstm_bias`` False for LSTM cells without a bias (ENAS')."""

    lstm_bias = True

    def __init__(self, config: ControllerConfig, seed: int, name: str):
        super().__init__(name=name)
        self.policy_config = config
        self.units = config.units
        self.init_range = config.init_range
        self.temperature = config.temperature
        self.tanh_constant = config.tanh_constant
        self.entropy_weight = float(config.entropy_weight)
        self.baseline_decay = float(config.baseline_decay)
        self.learning_rate = float(config.learning_rate)
        self.seed = int(seed)
        self.baseline: float | None = None
        self.cells = [
            keras.layers.LSTMCell(self.units, use_bias=self.lstm_bias, name=f"lstm_{i}")
            for i in range(config.num_lstm_layers)
        ]
        for cell in self.cells:
            cell.build((None, self.units))
        self.go = self.add_weight(shape=(1, self.units), initializer="zeros", name="go")

    def _finish_init(self) -> None:
        """Uniform initialisation of every weight, optimizer, compiled functions."""
        rng = np.random.default_rng(self.seed)
        for w in self.weights:
            w.assign(rng.uniform(-self.init_range, self.init_range, w.shape).astype(w.dtype))
        self.reinforce_optimizer = keras.optimizers.Adam(self.learning_rate)
        self.reinforce_optimizer.build(self.trainable_variables)
        self._train_fn = tf.function(
            self._train_step,
            autograph=False,
            input_signature=[self._score_spec(), tf.TensorSpec([None], tf.float32)],
        )
        self.built = True

    def _zero_state(self, batch: tf.Tensor) -> list[list[tf.Tensor]]:
        zeros = tf.zeros(tf.stack([batch, self.units]))
        return [[zeros, zeros] for _ in self.cells]

    def _lstm_weights(self) -> list[tuple]:
        """(kernel, recurrent kernel, bias or None) of each LSTM cell, read once: a long
        unroll passing them to :meth:`_step` traces (and differentiates) much faster."""
        return [
            (
                tf.convert_to_tensor(cell.kernel),
                tf.convert_to_tensor(cell.recurrent_kernel),
                tf.convert_to_tensor(cell.bias) if cell.use_bias else None,
            )
            for cell in self.cells
        ]

    def _step(
        self, x: tf.Tensor, states: list, weights: list | None = None
    ) -> tuple[tf.Tensor, list]:
        """One step of the LSTM stack (Keras' LSTMCell equations and weight layout: gates
        i, f, c, o; sigmoid and tanh), written out because it traces much faster. `weights`:
        :meth:`_lstm_weights` (default: the cells' variables, read here)."""
        if weights is None:
            weights = [
                (cell.kernel, cell.recurrent_kernel, cell.bias if cell.use_bias else None)
                for cell in self.cells
            ]
        new = []
        for (kernel, recurrent, bias), (h, c) in zip(weights, states, strict=True):
            z = tf.matmul(x, kernel) + tf.matmul(h, recurrent)
            if bias is not None:
                z += bias
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            x = tf.sigmoid(o) * tf.tanh(c)
            new.append([x, c])
        return x, new

    @staticmethod
    def _select(active: tf.Tensor, new: Any, old: Any) -> Any:
        return tf.nest.map_structure(lambda a, b: tf.where(active[:, None], a, b), new, old)

    def _shape(self, logits: tf.Tensor, tanh_reduce: float = 1.0) -> tf.Tensor:
        """``logits / temperature``, then ``(tanh_constant / tanh_reduce) * tanh(.)``."""
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = (self.tanh_constant / tanh_reduce) * tf.tanh(logits)
        return logits

    def _score(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """log P and entropy per row of a batch of given decisions."""
        raise NotImplementedError

    def _score_spec(self) -> dict[str, tf.TensorSpec]:
        """Specs of the inputs of ``_score``."""
        raise NotImplementedError

    def _train_step(self, inputs: dict[str, tf.Tensor], advantages: tf.Tensor) -> tf.Tensor:
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            logp, ent = self._score(inputs)
            loss = -tf.reduce_mean(advantages * logp) - self.entropy_weight * tf.reduce_mean(ent)
        grads = tape.gradient(loss, variables)
        grads = [
            tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables, strict=True)
        ]
        self.reinforce_optimizer.apply_gradients(zip(grads, variables, strict=True))
        return loss

    def reinforce(self, inputs: dict[str, np.ndarray], rewards: Any) -> float:
        """One REINFORCE step on a batch (see the module doc); returns the loss."""
        rewards = np.asarray(rewards, dtype=np.float64)
        if self.baseline is None:
            self.baseline = float(rewards.mean())
        advantages = (rewards - self.baseline).astype(np.float32)
        loss = self._train_fn(
            {k: tf.constant(v) for k, v in inputs.items()}, tf.constant(advantages)
        )
        for r in rewards:
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * r
        return float(loss)

    def get_state(self) -> dict[str, Any]:
        """Weights, Adam's variables (exact, base64 in JSON) and the baseline."""
        return {
            "weights": [_pack(w) for w in self.get_weights()],
            "optimizer": [_pack(v.numpy()) for v in self.reinforce_optimizer.variables],
            "baseline": self.baseline,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.set_weights([_unpack(w) for w in state["weights"]])
        for var, value in zip(self.reinforce_optimizer.variables, state["optimizer"], strict=True):
            var.assign(_unpack(value))
        self.baseline = state["baseline"]


def _config(
    owner: str, config: ControllerConfig | None, settings: dict, cls: type = ControllerConfig
) -> ControllerConfig:
    """`config` (default: `cls`'s defaults) with the fields given as keywords in `settings`."""
    config = cls.take(settings, config)
    if settings:
        raise TypeError(f"{owner}: unknown argument {next(iter(settings))!r}")
    return config


class Controller(_Policy):
    """The Zoph & Le controller over `space` (see the module doc).

    `config` (or its fields as keywords, e.g. ``units=8``) holds the hyper-parameters:
    ``entropy_weight`` is beta of the entropy bonus; ``temperature`` and ``tanh_constant``
    (ENAS' logit shaping, off by default) apply to every logit.
    """

    def __init__(
        self,
        space: DiscreteSpace,
        config: ControllerConfig | None = None,
        seed: int = 0,
        name: str = "controller",
        **settings: Any,
    ):
        super().__init__(_config("Controller", config, settings), seed, name)
        units = self.units
        self.space = space
        self._specs = tuple(space.decision(i) for i in range(len(space)))
        self._plan = self._make_plan()
        self.heads, self.embeddings = {}, {}
        for i, d in enumerate(self._specs):
            if d.skip_from is None:
                k = len(d.values)
                self.heads[i] = (
                    self.add_weight(shape=(units, k), name=f"head_{i}"),
                    self.add_weight(shape=(k,), name=f"head_bias_{i}"),
                )
                self.embeddings[i] = self.add_weight(shape=(k, units), name=f"embedding_{i}")
        if any(step[0] == "anchor" for step in self._plan):
            self.w_prev = self.add_weight(shape=(units, units), name="w_prev")
            self.w_curr = self.add_weight(shape=(units, units), name="w_curr")
            self.v_attn = self.add_weight(shape=(units, 1), name="v_attn")
        if space.depth_index is not None:
            self._depth_values = tf.constant(self._specs[space.depth_index].values, dtype=tf.int32)
        self._finish_init()
        matrix = [None, len(space)]
        self._sample_fn = tf.function(
            self._sample_graph,
            autograph=False,
            input_signature=[
                tf.TensorSpec(matrix, tf.int32),
                tf.TensorSpec(matrix, tf.float32),
                tf.TensorSpec(matrix, tf.bool),
                tf.TensorSpec(matrix, tf.bool),
            ],
        )

    def _score_spec(self) -> dict[str, tf.TensorSpec]:
        matrix = [None, len(self.space)]
        return {
            "tokens": tf.TensorSpec(matrix, tf.int32),
            "counted": tf.TensorSpec(matrix, tf.bool),
        }

    def _make_plan(self) -> list[tuple]:
        """Steps: ("choice", i) and ("anchor", n, [skip decision indices of layer n])."""
        space = self.space
        order = list(range(len(space)))
        if space.depth_index is not None:
            order.remove(space.depth_index)
            order.insert(0, space.depth_index)
        has_skips = any(d.skip_from is not None for d in self._specs)
        last = {}
        for pos, i in enumerate(order):
            if self._specs[i].layer is not None:
                last[self._specs[i].layer] = pos
        plan, anchored = [], set()
        for pos, i in enumerate(order):
            d = self._specs[i]
            if d.skip_from is None:
                plan.append(("choice", i))
            if has_skips and d.layer is not None and last[d.layer] == pos:
                skips = sorted(
                    (
                        k
                        for k, o in enumerate(self._specs)
                        if o.layer == d.layer and o.skip_from is not None
                    ),
                    key=lambda k: self._specs[k].skip_from,
                )
                for k in skips:
                    if self._specs[k].skip_from not in anchored:
                        raise ValueError(
                            f"{self._specs[k].name!r}: layer {self._specs[k].skip_from} "
                            "has no decision before this one"
                        )
                plan.append(("anchor", d.layer, skips))
                anchored.add(d.layer)
        return plan

    def _unroll(
        self, tokens: tf.Tensor, uniforms: tf.Tensor, given: tf.Tensor, counted: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Tokens (given where `given`, else sampled with `uniforms`), log P and entropy of
        the `counted` active steps."""
        space = self.space
        batch = tf.shape(tokens)[0]
        states = self._zero_state(batch)
        x = tf.tile(self.go, tf.stack([batch, 1]))
        depth = None
        out = [None] * len(space)
        logp = tf.zeros([batch])
        ent = tf.zeros([batch])
        anchors, projected = {}, {}
        all_on = tf.ones([batch], dtype=tf.bool)

        def is_active(layer: int | None) -> tf.Tensor:
            return all_on if layer is None or depth is None else depth > layer

        for step in self._plan:
            if step[0] == "choice":
                i = step[1]
                active = is_active(self._specs[i].layer)
                h, new_states = self._step(x, states)
                kernel, bias = self.heads[i]
                logits = self._shape(tf.matmul(h, kernel) + bias)
                sampled = _inverse_cdf(tf.nn.softmax(logits), uniforms[:, i])
                tok = tf.where(given[:, i], tokens[:, i], sampled)
                tok = tf.where(active, tok, self._default_token(i))
                lp, e = _categorical(logits, tok)
                weight = tf.cast(active & counted[:, i], tf.float32)
                logp += weight * lp
                ent += weight * e
                states = self._select(active, new_states, states)
                x = tf.where(active[:, None], tf.gather(self.embeddings[i], tok), x)
                out[i] = tok
                if i == space.depth_index:
                    depth = tf.gather(self._depth_values, tok)
            else:
                _, n, skips = step
                active = is_active(n)
                h, new_states = self._step(x, states)
                anchors[n] = h
                projected[n] = tf.matmul(h, self.w_prev)
                current = tf.matmul(h, self.w_curr)
                chosen = tf.zeros_like(h)
                count = tf.ones([batch])
                for i in skips:
                    d = self._specs[i]
                    on_idx, off_idx = d.values.index(1), d.values.index(0)
                    z = tf.matmul(tf.tanh(projected[d.skip_from] + current), self.v_attn)[:, 0]
                    z = self._shape(z)
                    sampled = uniforms[:, i] < tf.sigmoid(z)
                    on = tf.where(given[:, i], tf.equal(tokens[:, i], on_idx), sampled) & active
                    lp = tf.where(on, tf.math.log_sigmoid(z), tf.math.log_sigmoid(-z))
                    e = -tf.sigmoid(z) * tf.math.log_sigmoid(z) - tf.sigmoid(
                        -z
                    ) * tf.math.log_sigmoid(-z)
                    weight = tf.cast(active & counted[:, i], tf.float32)
                    logp += weight * lp
                    ent += weight * e
                    chosen += tf.cast(on, tf.float32)[:, None] * anchors[d.skip_from]
                    count += tf.cast(on, tf.float32)
                    tok = tf.where(on, on_idx, off_idx)
                    out[i] = tf.where(active, tok, self._default_token(i))
                states = self._select(active, new_states, states)
                x = tf.where(active[:, None], chosen / count[:, None], x)
        return tf.stack(out, axis=1), logp, ent

    def _default_token(self, i: int) -> tf.Tensor:
        """The value index of decision i's default (the token of an inactive step)."""
        d = self._specs[i]
        return tf.constant(d.values.index(d.default), tf.int32)

    def _sample_graph(self, tokens, uniforms, given, counted):
        return self._unroll(tokens, uniforms, given, counted)

    def _inputs(
        self, n: int, forced: dict[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        tokens = np.zeros((n, len(self.space)), np.int32)
        given = np.zeros((n, len(self.space)), bool)
        counted = np.ones((n, len(self.space)), bool)
        for i, k in (forced or {}).items():
            tokens[:, i], given[:, i], counted[:, i] = k, True, False
        return tokens, given, counted

    def sample(
        self, n: int, rng: np.random.Generator, forced: dict[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`n` architectures as value indices [n, D], and the mask of the decisions that
        count in their log-probability: those active in the sampled architecture and not
        `forced` (decision index -> value index, emitted without being sampled, e.g. the
        current depth)."""
        tokens, given, counted = self._inputs(n, forced)
        uniforms = rng.random((n, len(self.space))).astype(np.float32)
        out, _, _ = self._sample_fn(tokens, uniforms, given, counted)
        out = out.numpy()
        return out, counted & self.active_mask(out)

    def active_mask(self, tokens: Any) -> np.ndarray:
        """bool [B, D]: the decisions active in the validated architecture of each row of
        value indices [B, D] (the ones its log-probability counts)."""
        space = self.space
        return np.array(
            [space.active_mask(space.from_indices(row)) for row in np.asarray(tokens)], bool
        ).reshape(np.shape(tokens))

    def _score(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        tokens = tf.cast(inputs["tokens"], tf.int32)
        ones = tf.ones_like(tokens, dtype=tf.bool)
        _, logp, ent = self._unroll(
            tokens,
            tf.zeros_like(tokens, dtype=tf.float32),
            ones,
            tf.cast(inputs["counted"], tf.bool),
        )
        return logp, ent

    def log_prob(self, tokens: Any, counted: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """log P and entropy of architectures given as value indices [B, D], over the
        `counted` decisions (default: :meth:`active_mask`)."""
        tokens = np.asarray(tokens, np.int32)
        if counted is None:
            counted = self.active_mask(tokens)
        logp, ent = self._score({"tokens": tf.constant(tokens), "counted": tf.constant(counted)})
        return logp.numpy(), ent.numpy()

    def call(self, tokens: Any) -> tf.Tensor:
        """log P of architectures given as value indices [B, D] (every step the depth
        leaves on; use :meth:`log_prob` to count active decisions only)."""
        tokens = tf.cast(tokens, tf.int32)
        return self._score({"tokens": tokens, "counted": tf.ones_like(tokens, dtype=tf.bool)})[0]

    def train(self, tokens: np.ndarray, counted: np.ndarray, rewards: Any) -> float:
        """One REINFORCE step on m sampled architectures and their rewards."""
        return self.reinforce(
            {"tokens": np.asarray(tokens, np.int32), "counted": np.asarray(counted, bool)},
            rewards,
        )


class MutationController(_Policy):
    """RENAS' mutation proposer over `space`: reads the parent, emits (decision, value).
    `config` or its fields as keywords: see :class:`Controller`."""

    def __init__(
        self,
        space: DiscreteSpace,
        config: ControllerConfig | None = None,
        seed: int = 0,
        name: str = "mutation_controller",
        **settings: Any,
    ):
        super().__init__(_config("MutationController", config, settings), seed, name)
        units = self.units
        self.space = space
        sizes = [len(values) for _, values in space.decisions()]
        num, kmax = len(sizes), max(sizes)
        self.encoder = [
            self.add_weight(shape=(k, units), name=f"encoder_{i}") for i, k in enumerate(sizes)
        ]
        self.which_kernel = self.add_weight(shape=(units, num), name="which_kernel")
        self.which_bias = self.add_weight(shape=(num,), name="which_bias")
        self.which_embedding = self.add_weight(shape=(num, units), name="which_embedding")
        self.value_kernel = self.add_weight(shape=(num, units, kmax), name="value_kernel")
        self.value_bias = self.add_weight(shape=(num, kmax), name="value_bias")
        self._valid = tf.constant([[k < s for k in range(kmax)] for s in sizes])
        self._finish_init()
        self._sample_fn = tf.function(
            self._sample_graph,
            autograph=False,
            input_signature=[
                tf.TensorSpec([None, num], tf.int32),
                tf.TensorSpec([None, num], tf.bool),
                tf.TensorSpec([None, 2], tf.float32),
            ],
        )

    def _score_spec(self) -> dict[str, tf.TensorSpec]:
        num = len(self.space)
        return {
            "parent": tf.TensorSpec([None, num], tf.int32),
            "mutable": tf.TensorSpec([None, num], tf.bool),
            "which": tf.TensorSpec([None], tf.int32),
            "value": tf.TensorSpec([None], tf.int32),
        }

    def _unroll(self, parent, mutable, uniforms, which, value, given: bool):
        batch = tf.shape(parent)[0]
        states = self._zero_state(batch)
        h = tf.tile(self.go, tf.stack([batch, 1]))
        for i, table in enumerate(self.encoder):
            h, states = self._step(tf.gather(table, parent[:, i]), states)
        logits = self._shape(tf.matmul(h, self.which_kernel) + self.which_bias)
        logits = tf.where(mutable, logits, _MASKED)
        if not given:
            which = _inverse_cdf(tf.nn.softmax(logits), uniforms[:, 0])
        lp_which, ent_which = _categorical(logits, which)
        h, states = self._step(tf.gather(self.which_embedding, which), states)
        logits = tf.einsum("bu,buk->bk", h, tf.gather(self.value_kernel, which))
        logits = self._shape(logits + tf.gather(self.value_bias, which))
        current = tf.gather(parent, which, batch_dims=1)
        allowed = tf.gather(self._valid, which) & tf.not_equal(
            tf.range(tf.shape(logits)[1])[None, :], current[:, None]
        )
        logits = tf.where(allowed, logits, _MASKED)
        if not given:
            value = _inverse_cdf(tf.nn.softmax(logits), uniforms[:, 1])
        lp_value, ent_value = _categorical(logits, value)
        return which, value, lp_which + lp_value, ent_which + ent_value

    def _sample_graph(self, parent, mutable, uniforms):
        zeros = tf.zeros([tf.shape(parent)[0]], tf.int32)
        return self._unroll(parent, mutable, uniforms, zeros, zeros, given=False)[:2]

    def propose(
        self, parents: Any, mutable: Any, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """For parents [B, D] (value indices) and their mutable-decision masks [B, D]: the
        decision to change and its new value index, each [B]."""
        parents = np.asarray(parents, np.int32)
        uniforms = rng.random((parents.shape[0], 2)).astype(np.float32)
        which, value = self._sample_fn(parents, np.asarray(mutable, bool), uniforms)
        return which.numpy(), value.numpy()

    def _score(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        parent = tf.cast(inputs["parent"], tf.int32)
        _, _, logp, ent = self._unroll(
            parent,
            tf.cast(inputs["mutable"], tf.bool),
            None,
            tf.cast(inputs["which"], tf.int32),
            tf.cast(inputs["value"], tf.int32),
            given=True,
        )
        return logp, ent

    def log_prob(self, parents: Any, mutable: Any, which: Any, value: Any) -> np.ndarray:
        """log P of the mutations (which, value) of the parents."""
        logp, _ = self._score(
            {
                "parent": tf.constant(np.asarray(parents, np.int32)),
                "mutable": tf.constant(np.asarray(mutable, bool)),
                "which": tf.constant(np.asarray(which, np.int32)),
                "value": tf.constant(np.asarray(value, np.int32)),
            }
        )
        return logp.numpy()

    def call(self, inputs: dict[str, Any]) -> tf.Tensor:
        """log P of the mutations in `inputs` (keys parent, mutable, which, value)."""
        return self._score(inputs)[0]

    def train(self, parents: Any, mutable: Any, which: Any, value: Any, gains: Any) -> float:
        """One REINFORCE step on m mutations and their fitness gains."""
        return self.reinforce(
            {
                "parent": np.asarray(parents, np.int32),
                "mutable": np.asarray(mutable, bool),
                "which": np.asarray(which, np.int32),
                "value": np.asarray(value, np.int32),
            },
            gains,
        )
