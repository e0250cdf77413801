"""ENAS' micro-search controller (Pham et al., ICML 2018) over the discrete cell space.

:class:`MicroController` samples the normal cell, then the reduction cell, of a
:class:`~kerasnas.search_spaces.cell_discrete.DiscreteCellSpace` in one LSTM sequence (the
state carries over from one cell to the next), as the authors' ``micro_controller.py`` does:

- per cell, two LSTM steps on the start embedding ``g`` give the anchors of the cell's two
  inputs: their attention keys ``W_1 h`` are kept, their anchor vectors are zeros (the
  authors' code);
- per node, starting from ``g``: two input steps, each picks an input j among the node's
  anchors by attention, logits ``v^T tanh(W_1 h_j + W_2 h)``, the chosen anchor is the next
  LSTM input; then two op steps, logits ``W_soft h + b_soft``, the chosen op's embedding is
  the next input; then one more step whose output h is the node's anchor (key ``W_1 h``).

Logits are divided by ``temperature`` and squashed to ``c * tanh(.)`` with ``c`` the
``tanh_constant`` for inputs and ``tanh_constant / op_tanh_reduce`` for ops (None switches
either off). With ``op_bias`` (the authors' op prior) ``b_soft`` starts at 10 for the
convolutions (ops whose name contains ``conv``; the authors' are their first two ops, the
separable 3x3 and 5x5) and 0 for the others, and the normal cell's op logits get a fixed
+0.25 (convolutions) / -0.25 (others) after the squashing. One LSTM layer without bias,
weights uniform in [-0.1, 0.1].

A node's two inputs must differ in this space (one supernet edge per (input, node) pair, so
one op per edge): the second input's logit of the first input is masked, so every sample is
a valid architecture and its log-probability is that of the constrained distribution. The
authors allow the two inputs to coincide. Decisions are *sampled* in the authors' order
(input0, input1, op0, op1 per node) and reported in the space's index encoding
(``space.to_indices``; input0, op0, input1, op1).

The REINFORCE step, its baseline and the state (weights, Adam, baseline) are the shared ones
of :mod:`kerasnas.multitrial.controller`: loss = -(1/m) sum_k (R_k - b) log P(a_k) - beta *
mean H (the authors add beta * H to the reward instead; beta is 1e-4 either way).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import tensorflow as tf

from kerasnas.multitrial.controller import (
    _MASKED,
    ControllerConfig,
    _categorical,
    _config,
    _Policy,
)
from kerasnas.search_spaces.cell import CELL_KINDS
from kerasnas.search_spaces.cell_discrete import DiscreteCellSpace

__all__ = ["MicroController", "MicroControllerConfig"]

CONV_BIAS = 10.0  # the authors' initial b_soft of the convolutions
FIXED_BIAS = 0.25  # the authors' fixed normal-cell op bias: + convolutions, - the others


@dataclasses.dataclass(frozen=True)
class MicroControllerConfig(ControllerConfig):
    """ControllerConfig with the defaults of the authors' CIFAR-10 micro search
    (``cifar10_micro_search.sh`` and ``main.py``: lstm_size 64, 1 layer, weights uniform in
    [-0.1, 0.1], Adam 0.0035, bl_dec 0.99, entropy weight 1e-4, tanh constant 1.10, op tanh
    reduce 2.5, no temperature), plus `op_tanh_reduce` and `op_bias` (see the module doc)."""

    units: int = 64
    num_lstm_layers: int = 1
    init_range: float = 0.1
    learning_rate: float = 3.5e-3
    baseline_decay: float = 0.99
    entropy_weight: float = 1e-4
    temperature: float | None = None
    tanh_constant: float | None = 1.1
    op_tanh_reduce: float = 2.5
    op_bias: bool = True

    def __post_init__(self):
        super().__post_init__()
        if not self.op_tanh_reduce > 0:
            raise ValueError(f"op_tanh_reduce must be > 0, got {self.op_tanh_reduce}")


def _sample_index(probs: tf.Tensor, u: tf.Tensor) -> tf.Tensor:
    """Index drawn from each row of `probs` (rows may hold zeros) with uniforms `u` [B]:
    the first index whose cumulative probability exceeds ``u * total``, which is never one
    of probability zero; if none does (u rounded to 1), the last index of nonzero
    probability."""
    cdf = tf.cumsum(probs, axis=1)
    above = cdf > (u * cdf[:, -1])[:, None]
    first = tf.reduce_sum(tf.cast(tf.logical_not(above), tf.int32), axis=1)
    positions = tf.range(tf.shape(probs)[1])[None, :]
    last = tf.reduce_max(tf.where(probs > 0, positions, 0), axis=1)
    return tf.where(tf.reduce_any(above, axis=1), first, last)


class MicroController(_Policy):
    """ENAS' micro controller over `space` (see the module doc).

    `config` (a :class:`MicroControllerConfig`, or its fields as keywords) holds the
    hyper-parameters. The interface is :class:`~kerasnas.multitrial.controller.Controller`'s:
    :meth:`sample` gives value indices [n, D] in the space's decision order and the mask of
    the decisions that count (all of them here), :meth:`log_prob` scores given ones (teacher
    forcing), :meth:`train` is one REINFORCE step; ``baseline``, ``get_state`` and
    ``set_state`` as there.
    """

    lstm_bias = False

    def __init__(
        self,
        space: DiscreteCellSpace,
        config: MicroControllerConfig | None = None,
        seed: int = 0,
        name: str = "micro_controller",
        **settings: Any,
    ):
        if not isinstance(space, DiscreteCellSpace):
            raise TypeError(
                f"MicroController samples a DiscreteCellSpace, got {type(space).__name__}"
            )
        config = _config("MicroController", config, settings, MicroControllerConfig)
        super().__init__(config, seed, name)
        self.space = space
        self.op_tanh_reduce = float(config.op_tanh_reduce)
        self.op_bias = bool(config.op_bias)
        units, num_ops = self.units, len(space.ops)
        self.w_emb = self.add_weight(shape=(num_ops, units), name="op_embedding")
        self.w_soft = self.add_weight(shape=(units, num_ops), name="op_kernel")
        self.b_soft = self.add_weight(shape=(num_ops,), name="op_bias")
        self.w_attn_1 = self.add_weight(shape=(units, units), name="attn_anchor")
        self.w_attn_2 = self.add_weight(shape=(units, units), name="attn_query")
        self.v_attn = self.add_weight(shape=(units, 1), name="attn_v")
        conv = np.array(["conv" in op for op in space.ops])
        self._fixed_bias = tf.constant(np.where(conv, FIXED_BIAS, -FIXED_BIAS), tf.float32)
        # positions (in the space's decision order) of (kind, node, k): input and op
        self._positions = {
            (kind, i, k): (
                space.index(f"{kind}/node{i}/input{k}"),
                space.index(f"{kind}/node{i}/op{k}"),
            )
            for kind in CELL_KINDS
            for i in range(space.nodes)
            for k in (0, 1)
        }
        self._finish_init()
        self.b_soft.assign(np.where(conv & self.op_bias, CONV_BIAS, 0.0).astype(np.float32))
        matrix = [None, len(space)]
        self._sample_fn = tf.function(
            lambda tokens, uniforms: self._unroll(tokens, uniforms, given=False),
            autograph=False,
            input_signature=[tf.TensorSpec(matrix, tf.int32), tf.TensorSpec(matrix, tf.float32)],
        )
        self._decisions_fn = tf.function(
            lambda tokens: self._unroll(tokens, tf.zeros_like(tokens, tf.float32), given=True),
            autograph=False,
            input_signature=[tf.TensorSpec(matrix, tf.int32)],
        )

    def _score_spec(self) -> dict[str, tf.TensorSpec]:
        matrix = [None, len(self.space)]
        return {
            "tokens": tf.TensorSpec(matrix, tf.int32),
            "counted": tf.TensorSpec(matrix, tf.bool),
        }

    def _choose(self, logits, tokens, uniforms, pos: int, given: bool):
        """The token of decision `pos` (given, or sampled), its log P and entropy."""
        if given:
            tok = tokens[:, pos]
        else:
            tok = _sample_index(tf.nn.softmax(logits), uniforms[:, pos])
        lp, ent = _categorical(logits, tok, gather=False)
        return tok, lp, ent

    def _unroll(
        self, tokens: tf.Tensor, uniforms: tf.Tensor, given: bool
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Tokens (given, or sampled with `uniforms`), and the log P and entropy of each
        decision, all [B, D] in the space's decision order."""
        batch = tf.shape(tokens)[0]
        states = self._zero_state(batch)
        # every variable read once, rows picked by one-hot products rather than gathers: the
        # unroll traces and differentiates much faster
        lstm = self._lstm_weights()
        w_emb, w_soft, b_soft, w_1, w_2, v = (
            tf.convert_to_tensor(w)
            for w in (
                self.w_emb,
                self.w_soft,
                self.b_soft,
                self.w_attn_1,
                self.w_attn_2,
                self.v_attn,
            )
        )
        start = tf.tile(self.go, tf.stack([batch, 1]))
        size = len(self.space)
        out, logp, ent = [None] * size, [None] * size, [None] * size
        for kind in CELL_KINDS:
            anchors, keys = [], []
            for _ in range(2):  # the cell's two inputs
                h, states = self._step(start, states, lstm)
                anchors.append(tf.zeros_like(h))
                keys.append(tf.matmul(h, w_1))
            for i in range(self.space.nodes):
                x = start
                stacked_anchors, stacked_keys = tf.stack(anchors, 1), tf.stack(keys, 1)
                first = None
                for k in (0, 1):
                    pos = self._positions[(kind, i, k)][0]
                    h, states = self._step(x, states, lstm)
                    query = tf.tanh(stacked_keys + tf.matmul(h, w_2)[:, None, :])
                    logits = self._shape(tf.einsum("bju,uo->bj", query, v))
                    if first is not None:  # the two inputs differ
                        logits = tf.where(tf.one_hot(first, i + 2) > 0, _MASKED, logits)
                    first, logp[pos], ent[pos] = self._choose(logits, tokens, uniforms, pos, given)
                    out[pos] = first
                    x = tf.einsum("bj,bju->bu", tf.one_hot(first, i + 2), stacked_anchors)
                for k in (0, 1):
                    pos = self._positions[(kind, i, k)][1]
                    h, states = self._step(x, states, lstm)
                    logits = self._shape(tf.matmul(h, w_soft) + b_soft, self.op_tanh_reduce)
                    if self.op_bias and kind == CELL_KINDS[0]:
                        logits += self._fixed_bias
                    out[pos], logp[pos], ent[pos] = self._choose(
                        logits, tokens, uniforms, pos, given
                    )
                    x = tf.matmul(tf.one_hot(out[pos], len(self.space.ops)), w_emb)
                h, states = self._step(x, states, lstm)
                anchors.append(h)
                keys.append(tf.matmul(h, w_1))
        return tf.stack(out, 1), tf.stack(logp, 1), tf.stack(ent, 1)

    # -- the Controller interface --------------------------------------------------------------
    def sample_with_log_prob(
        self, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`n` architectures as value indices [n, D], with the log P and entropy of each
        decision [n, D] as sampled."""
        uniforms = rng.random((n, len(self.space))).astype(np.float32)
        tokens = np.zeros((n, len(self.space)), np.int32)
        out, logp, ent = self._sample_fn(tokens, uniforms)
        return out.numpy(), logp.numpy(), ent.numpy()

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`n` architectures as value indices [n, D] (``space.from_indices`` reads them),
        and the mask of the decisions their log P counts (all)."""
        tokens, _, _ = self.sample_with_log_prob(n, rng)
        return tokens, np.ones(tokens.shape, bool)

    def decision_log_probs(self, tokens: Any) -> tuple[np.ndarray, np.ndarray]:
        """Teacher forcing: the log P and entropy of each decision of architectures given
        as value indices [B, D] (each [B, D]); every row must keep a node's inputs apart."""
        _, logp, ent = self._decisions_fn(tf.constant(np.asarray(tokens, np.int32)))
        return logp.numpy(), ent.numpy()

    def _score(self, inputs: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        tokens = tf.cast(inputs["tokens"], tf.int32)
        _, logp, ent = self._unroll(tokens, tf.zeros_like(tokens, tf.float32), given=True)
        weight = tf.cast(inputs["counted"], tf.float32)
        return tf.reduce_sum(weight * logp, 1), tf.reduce_sum(weight * ent, 1)

    def log_prob(self, tokens: Any, counted: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """log P and summed entropy of architectures given as value indices [B, D], over
        the `counted` decisions (default all): sums of :meth:`decision_log_probs`."""
        logp, ent = self.decision_log_probs(tokens)
        weight = 1.0 if counted is None else np.asarray(counted, np.float32)
        return (weight * logp).sum(1), (weight * ent).sum(1)

    def call(self, tokens: Any) -> tf.Tensor:
        """log P of architectures given as value indices [B, D]."""
        tokens = tf.cast(tokens, tf.int32)
        return self._score({"tokens": tokens, "counted": tf.ones_like(tokens, dtype=tf.bool)})[0]

    def train(self, tokens: Any, counted: Any, rewards: Any) -> float:
        """One REINFORCE step on m sampled architectures and their rewards (`counted`: as
        :meth:`sample` returns it, or None for all decisions)."""
        tokens = np.asarray(tokens, np.int32)
        counted = np.ones(tokens.shape, bool) if counted is None else np.asarray(counted, bool)
        return self.reinforce({"tokens": tokens, "counted": counted}, rewards)
