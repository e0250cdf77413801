"""The mixed-op layer: one edge's candidate ops and its architecture logits.

``MixedOp`` works inside any Keras model. Relaxations (how the candidates are mixed while
training):

- ``gumbel``: SNAS. A fresh Gumbel-softmax sample Z = softmax((alpha + G) / tau) per call
  (one per minibatch, shared by the batch); output = sum_k Z_k op_k(x). All ops run.
- ``gumbel_hard``: straight-through Gumbel. The forward pass uses the one-hot sample and
  computes only the sampled op (time and memory of one op); gradients reach the logits
  through the soft sample.
- ``softmax``: DARTS. Output = sum_k softmax(alpha)_k op_k(x), no sampling.
- ``controlled``: a sampler outside the layer picks the op (ENAS' controller, uniform
  random sampling with weight sharing): it writes the op's index into the owner's
  non-trainable ``choice`` weight (int32 scalar); only that op runs, in training and, with
  ``inference="sample"``, at inference. The logits are not used.

At inference (``training=False``) the layer runs only its argmax op, unless ``inference`` is
set to ``"sample"`` (draw as in training; trainers use it to measure the stochastic supernet)
or ``"softmax"``. The temperature tau is a non-trainable weight set for all layers of a model
at once with :func:`set_temperature`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from keras import ops as K

from kerasnas import edge_functions, resource
from kerasnas import ops as ops_lib

RELAXATIONS: tuple[str, ...] = ("gumbel", "gumbel_hard", "softmax", "controlled")
INFERENCE_MODES: tuple[str, ...] = ("argmax", "sample", "softmax")
_EPS = 1e-10


@keras.saving.register_keras_serializable("kerasnas")
class MixedOp(keras.layers.Layer):
    """Chooses one of several candidate ops; the choice is learned.

    Args:
      candidates: op names from :func:`kerasnas.ops.registered_ops` (then `channels` is
        required) or Keras layers, which must all give the same output shape.
      channels: output channels of named ops.
      strides: stride of named ops (1 or 2).
      relaxation: one of ``gumbel``, ``gumbel_hard``, ``softmax``, ``controlled`` (see the
        module doc).
      inference: behaviour when ``training=False``: ``argmax``, ``sample`` or ``softmax``.
      affine: batch-norm affine parameters in named ops (False during search).
      search: build named ops in their supernet form (pooling followed by batch norm).
      logit_init: (mean, stddev) of the normal initialiser of the logits.
      share_with: another MixedOp whose logits and per-step sample this layer uses (cells
        of the same type share one architecture). A saved model keeps every layer's values,
        but a loaded model's layers no longer share (inference is unchanged).
      seed: seed of this layer's Gumbel noise.

    Input/output: (B, H, W, C) -> the candidates' common output shape.
    """

    def __init__(
        self,
        candidates: Sequence[str | keras.layers.Layer],
        channels: int | None = None,
        strides: int = 1,
        relaxation: str = "gumbel",
        inference: str = "argmax",
        affine: bool = False,
        search: bool = True,
        logit_init: tuple[float, float] = (1.0, 1e-2),
        share_with: MixedOp | None = None,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(candidates, (str, keras.layers.Layer)) or len(candidates) < 1:
            raise ValueError(
                f"MixedOp: candidates must be a non-empty list of op names or layers, "
                f"got {candidates!r}"
            )
        if relaxation not in RELAXATIONS:
            raise ValueError(
                f"MixedOp: relaxation must be one of {RELAXATIONS}, got {relaxation!r}"
            )
        if inference not in INFERENCE_MODES:
            raise ValueError(
                f"MixedOp: inference must be one of {INFERENCE_MODES}, got {inference!r}"
            )
        if share_with is not None and not isinstance(share_with, MixedOp):
            raise ValueError(f"MixedOp: share_with must be a MixedOp, got {type(share_with)}")
        self.channels = channels
        self.strides = strides
        self.relaxation = relaxation
        self.inference = inference
        self.affine = bool(affine)
        self.search = bool(search)
        self.logit_init = tuple(float(v) for v in logit_init)
        self.share_with = share_with
        self.seed = seed
        self.candidate_names: list[str] = []
        self._specs_are_names = [isinstance(c, str) for c in candidates]
        self.candidates: list[keras.layers.Layer] = []
        for i, spec in enumerate(candidates):
            if isinstance(spec, str):
                if channels is None:
                    raise ValueError("MixedOp: `channels` is required when candidates are op names")
                layer = ops_lib.create_op(spec, channels, strides, affine=affine, search=search)
                self.candidate_names.append(spec)
            elif isinstance(spec, keras.layers.Layer):
                layer = spec
                self.candidate_names.append(spec.name)
            else:
                raise ValueError(
                    f"MixedOp: candidate {i} must be an op name or a layer, got {spec!r}"
                )
            self.candidates.append(layer)
        if len(set(self.candidate_names)) != len(self.candidate_names):
            raise ValueError(f"MixedOp: candidate names must be unique, got {self.candidate_names}")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.cost_table: np.ndarray | None = None

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)

    def build(self, input_shape):
        k = self.num_candidates
        if self.share_with is not None:
            if not self.share_with.built:
                raise ValueError(f"MixedOp {self.name}: share_with layer must be built first")
            if self.share_with.candidate_names != self.candidate_names:
                raise ValueError(f"MixedOp {self.name}: share_with has different candidates")
            if self.share_with.relaxation != self.relaxation:
                raise ValueError(
                    f"MixedOp {self.name}: share_with uses relaxation "
                    f"{self.share_with.relaxation!r}, this layer {self.relaxation!r}"
                )
            # Tracked here too, so a saved model holds every layer's full state: a loaded
            # model's layers carry copies (equal values) and no longer share.
            self.arch_logits = self.share_with.arch_logits
            self.temperature = self.share_with.temperature
            self.gumbel_noise = self.share_with.gumbel_noise
            if self.relaxation == "controlled":
                self.choice = self.share_with.owner().choice
        else:
            mean, std = self.logit_init
            self.arch_logits = self.add_weight(
                name="arch_logits",
                shape=(k,),
                initializer=keras.initializers.RandomNormal(mean, std, seed=self.seed),
                trainable=True,
            )
            self.temperature = self.add_weight(
                name="temperature", shape=(), initializer="ones", trainable=False
            )
            self.gumbel_noise = self.add_weight(
                name="gumbel_noise", shape=(k,), initializer="zeros", trainable=False
            )
            if self.relaxation == "controlled":
                self.choice = self.add_weight(
                    name="choice", shape=(), dtype="int32", initializer="zeros", trainable=False
                )
        shapes = []
        for layer in self.candidates:
            if not layer.built:
                layer.build(input_shape)
            shapes.append(tuple(layer.compute_output_shape(input_shape)))
        if any(s[1:] != shapes[0][1:] for s in shapes):
            detail = ", ".join(
                f"{n}: {s}" for n, s in zip(self.candidate_names, shapes, strict=True)
            )
            raise ValueError(
                f"MixedOp {self.name}: candidates give different output shapes ({detail})"
            )
        self._output_shape = shapes[0]
        if any(d is None for d in input_shape[1:]):
            self.cost_table = None  # costs need a known input size; see resource.penalty
        else:
            costs = [resource.layer_cost(layer, input_shape[1:]) for layer in self.candidates]
            self.cost_table = np.array([[c.params, c.flops, c.mac] for c in costs], "float64")

    def compute_output_shape(self, input_shape):
        return self.candidates[0].compute_output_shape(input_shape)

    # -- the distribution over candidates -------------------------------------------------
    def owner(self) -> MixedOp:
        """The layer that holds the logits and draws the per-step sample."""
        return self.share_with.owner() if self.share_with is not None else self

    def probabilities(self):
        """softmax(alpha), shape (k,)."""
        return K.softmax(self.arch_logits)

    def relaxed_sample(self):
        """The soft sample Z of the last training call, differentiable in the logits: (k,)."""
        noisy = self.arch_logits + self.owner().gumbel_noise
        return K.softmax(noisy / self.temperature)

    def sampled_index(self):
        """The discrete sample argmax(alpha + G) of the last training call (int scalar)."""
        return K.argmax(self.arch_logits + self.owner().gumbel_noise)

    def chosen_index(self) -> int:
        """argmax of the logits (Python int)."""
        return int(np.argmax(self.arch_logits.numpy()))

    def chosen_op(self) -> keras.layers.Layer:
        return self.candidates[self.chosen_index()]

    # -- forward --------------------------------------------------------------------------
    def _draw(self):
        if self.share_with is None:
            u = keras.random.uniform((self.num_candidates,), _EPS, 1.0, seed=self.seed_generator)
            self.gumbel_noise.assign(-K.log(-K.log(u)))
        return self.relaxed_sample()

    def _weighted_sum(self, x, weights, training):
        out = None
        for w, layer in zip(K.unstack(weights), self.candidates, strict=True):
            if isinstance(layer, ops_lib.Zero):
                continue  # contributes zeros and no gradient
            y = ops_lib.call_scaled(layer, x, w, training)
            out = y if out is None else out + y
        if out is None:
            out = ops_lib.call_layer(self.candidates[0], x, training)
        return out

    def _one_op(self, x, index, scale, training):
        def branch(i, x, scale):
            if scale is None:
                return ops_lib.call_layer(self.candidates[i], x, training)
            return ops_lib.call_scaled(self.candidates[i], x, scale[i], training)

        branches = [functools.partial(branch, i) for i in range(self.num_candidates)]
        if scale is None:
            return K.switch(index, [functools.partial(b, scale=None) for b in branches], x)
        return K.switch(index, branches, x, scale)

    def _mix(self, x, body, weights, index, training):
        """Runs `body` (``sum``: weighted sum of every op; ``one``: op `index`;
        ``one_scaled``: ``weights[index] * op_index(x)``); inside a ``tf.function`` the
        one-op bodies go through the function their kind of edge shares (see
        :mod:`kerasnas.edge_functions`); weighted sums are traced inline."""
        if tf.inside_function() and edge_functions.enabled():
            y = edge_functions.call(self, x, body, weights, index, bool(training))
            if y is not None:
                return y
        if body == "sum":
            return self._weighted_sum(x, weights, training)
        return self._one_op(x, index, weights if body == "one_scaled" else None, training)

    def call(self, x, training=None):
        mode = self.relaxation if training else self.inference
        if mode == "argmax":
            return self._mix(x, "one", None, K.argmax(self.arch_logits), training)
        if mode == "softmax":
            return self._mix(x, "sum", self.probabilities(), None, training)
        if mode == "sample":
            mode = self.relaxation
            if mode == "softmax":
                return self._mix(x, "sum", self.probabilities(), None, training)
        if mode == "controlled":
            return self._mix(x, "one", None, self.owner().choice, training)
        soft = self._draw()
        if mode == "gumbel":
            return self._mix(x, "sum", soft, None, training)
        # gumbel_hard: straight-through one-hot; only the sampled op runs
        index = self.sampled_index()
        hard = K.one_hot(index, self.num_candidates, dtype=soft.dtype)
        st = hard + soft - K.stop_gradient(soft)
        return self._mix(x, "one_scaled", st, index, training)

    def get_config(self):
        config = super().get_config()
        candidates = [
            name if spec else keras.saving.serialize_keras_object(layer)
            for name, spec, layer in zip(
                self.candidate_names, self._specs_are_names, self.candidates, strict=True
            )
        ]
        config.update(
            candidates=candidates,
            channels=self.channels,
            strides=self.strides,
            relaxation=self.relaxation,
            inference=self.inference,
            affine=self.affine,
            search=self.search,
            logit_init=list(self.logit_init),
            seed=self.seed,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["candidates"] = [
            c if isinstance(c, str) else keras.saving.deserialize_keras_object(c)
            for c in config["candidates"]
        ]
        return cls(**config)


def mixed_ops(model: keras.layers.Layer) -> list[MixedOp]:
    """Every MixedOp inside `model` (any depth), in creation order."""
    found = []
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, MixedOp):
            found.append(layer)
    return found


def arch_variables(model: keras.layers.Layer) -> list:
    """The architecture logits of `model` (shared logits listed once)."""
    seen, out = set(), []
    for layer in mixed_ops(model):
        v = layer.arch_logits
        if id(v) not in seen:
            seen.add(id(v))
            out.append(v)
    return out


def weight_variables(model: keras.layers.Layer) -> list:
    """Trainable variables of `model` that are not architecture logits."""
    arch = {id(v) for v in arch_variables(model)}
    return [v for v in model.trainable_variables if id(v) not in arch]


def set_temperature(model: keras.layers.Layer, tau: float) -> None:
    """Sets the Gumbel-softmax temperature of every MixedOp in `model`."""
    if not tau > 0:
        raise ValueError(f"set_temperature: tau must be > 0, got {tau}")
    for layer in mixed_ops(model):
        if layer.share_with is None:
            layer.temperature.assign(float(tau))


def set_inference(model: keras.layers.Layer, mode: str) -> None:
    """Sets how every MixedOp of `model` behaves with training=False (see MixedOp)."""
    if mode not in INFERENCE_MODES:
        raise ValueError(f"set_inference: mode must be one of {INFERENCE_MODES}, got {mode!r}")
    for layer in mixed_ops(model):
        layer.inference = mode


@keras.saving.register_keras_serializable("kerasnas")
class DropPath(keras.layers.Layer):
    """Drops a whole op output per example with probability `rate`, during training only
    (DARTS' drop-path); the survivors are scaled by 1/(1-rate). Identity at inference.

    The rate is a non-trainable weight, so a trainer can ramp it without retracing.
    """

    def __init__(self, rate: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"DropPath: rate must be in [0, 1), got {rate}")
        self.initial_rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.rate = self.add_weight(
            name="rate",
            shape=(),
            initializer=keras.initializers.Constant(self.initial_rate),
            trainable=False,
        )

    def call(self, x, training=None):
        if not training:
            return x
        keep = 1.0 - self.rate
        shape = (K.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = K.cast(keras.random.uniform(shape, seed=self.seed_generator) < keep, x.dtype)
        return x * mask / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.initial_rate, "seed": self.seed}
