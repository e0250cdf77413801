"""Resource cost models and the SNAS resource penalty.

Costs are counted per layer at a given input shape (batch excluded) as three numbers:

- ``params``: trainable parameters (non-affine batch norm has none).
- ``flops``: multiply-adds of convolutions and dense layers, the convention of the DARTS/SNAS
  and MobileNet papers ("FLOPs" meaning mult-adds). Batch norm, ReLU, pooling and additions
  are not counted.
- ``mac``: memory access cost in elements (ShuffleNet V2): every convolution, dense, pooling
  and batch-norm layer reads its input and weights and writes its output. Identity and zero
  ops cost nothing.
- ``latency``: milliseconds of one image through the LiteRT interpreter on this machine,
  looked up in a measured per-op table (:mod:`kerasnas.latency`). Not analytic: a MixedOp
  has a latency column only after :func:`kerasnas.latency.attach_latency` (the SNAS trainer
  does it when ``resource="latency"``).

Penalties are expressed in millions of the chosen unit, so a linear penalty of 1.0 means
1M params / 1M mult-adds / 1M elements; latency penalties are in milliseconds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import keras
import numpy as np

from kerasnas.names import ANALYTIC, ESTIMATORS, RESOURCES
from kerasnas.names import PENALTY_FORMS as FORMS

UNITS: dict[str, str] = {"params": "M", "flops": "M", "mac": "M", "latency": "ms"}
_SCALE: dict[str, float] = {"params": 1e-6, "flops": 1e-6, "mac": 1e-6, "latency": 1.0}


@dataclasses.dataclass(frozen=True)
class Cost:
    """Resource cost of one layer or network: params, mult-adds, memory access (elements)."""

    params: float = 0.0
    flops: float = 0.0
    mac: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.flops + other.flops, self.mac + other.mac)

    def get(self, resource: str) -> float:
        if resource == "latency":
            raise ValueError(
                "latency is measured, not counted: see kerasnas.latency (LatencyTable)"
            )
        if resource not in ANALYTIC:
            raise ValueError(f"resource must be one of {ANALYTIC}, got {resource!r}")
        return getattr(self, resource)


def _prod(shape: Sequence[int]) -> int:
    return int(math.prod(int(d) for d in shape))


def conv_cost(in_shape: Sequence[int], out_shape: Sequence[int], kernel: int, c_out: int) -> Cost:
    """Dense (groups=1) conv without bias; shapes are (H, W, C)."""
    params = kernel * kernel * in_shape[-1] * c_out
    flops = out_shape[0] * out_shape[1] * params
    return Cost(params, flops, _prod(in_shape) + _prod(out_shape) + params)


def depthwise_cost(in_shape: Sequence[int], out_shape: Sequence[int], kernel: int) -> Cost:
    """Depthwise conv (multiplier 1) without bias; shapes are (H, W, C)."""
    params = kernel * kernel * in_shape[-1]
    flops = out_shape[0] * out_shape[1] * params
    return Cost(params, flops, _prod(in_shape) + _prod(out_shape) + params)


def batch_norm_cost(shape: Sequence[int], affine: bool) -> Cost:
    params = 2 * shape[-1] if affine else 0
    return Cost(params, 0, 2 * _prod(shape) + params)


def pool_cost(in_shape: Sequence[int], out_shape: Sequence[int]) -> Cost:
    return Cost(0, 0, _prod(in_shape) + _prod(out_shape))


def layer_cost(layer: keras.layers.Layer, input_shape: Sequence[int]) -> Cost:
    """Cost of `layer` for one example of shape `input_shape` (H, W, C) or (features,).

    Layers that define ``cost(input_shape)`` (all kerasnas candidate ops) answer themselves.
    Standard Keras layers are counted analytically; Sequential models layer by layer. Any other
    layer is counted by its trainable parameters, with input + output + params as memory access
    and no mult-adds.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if hasattr(layer, "cost"):
        return layer.cost(input_shape)
    if isinstance(layer, keras.Sequential):
        total, shape = Cost(), input_shape
        for sub in layer.layers:
            total = total + layer_cost(sub, shape)
            shape = _out_shape(sub, shape)
        return total
    out = _out_shape(layer, input_shape)
    L = keras.layers
    if isinstance(layer, L.DepthwiseConv2D):
        k = layer.kernel_size[0] * layer.kernel_size[1]
        params = k * input_shape[-1] * layer.depth_multiplier + (out[-1] if layer.use_bias else 0)
        flops = out[0] * out[1] * k * input_shape[-1] * layer.depth_multiplier
        return Cost(params, flops, _prod(input_shape) + _prod(out) + params)
    if isinstance(layer, L.SeparableConv2D):
        k = layer.kernel_size[0] * layer.kernel_size[1]
        mult = layer.depth_multiplier
        dw = k * input_shape[-1] * mult
        pw = input_shape[-1] * mult * out[-1]
        params = dw + pw + (out[-1] if layer.use_bias else 0)
        flops = out[0] * out[1] * (dw + pw)
        return Cost(params, flops, _prod(input_shape) + _prod(out) + params)
    if isinstance(layer, L.Conv2D):
        k = layer.kernel_size[0] * layer.kernel_size[1]
        weights = k * input_shape[-1] // layer.groups * out[-1]
        params = weights + (out[-1] if layer.use_bias else 0)
        flops = out[0] * out[1] * weights
        return Cost(params, flops, _prod(input_shape) + _prod(out) + params)
    if isinstance(layer, L.Dense):
        weights = input_shape[-1] * layer.units
        params = weights + (layer.units if layer.use_bias else 0)
        flops = _prod(input_shape[:-1]) * weights
        return Cost(params, flops, _prod(input_shape) + _prod(out) + params)
    if isinstance(layer, L.BatchNormalization):
        params = input_shape[-1] * (int(layer.center) + int(layer.scale))
        return Cost(params, 0, 2 * _prod(input_shape) + params)
    if type(layer).__name__ == "BatchNorm":
        return batch_norm_cost(input_shape, layer.affine)
    if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
        return pool_cost(input_shape, out)
    if isinstance(layer, (L.ReLU, L.Activation, L.Identity, L.Dropout)):
        return Cost()
    if not layer.built:
        layer.build((None, *input_shape))
    params = sum(_prod(w.shape) for w in layer.trainable_weights)
    return Cost(params, 0, _prod(input_shape) + _prod(out) + params)


def _out_shape(layer: keras.layers.Layer, input_shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(d) for d in layer.compute_output_shape((None, *input_shape))[1:])


_MERGE_LAYERS = (
    keras.layers.Add,
    keras.layers.Concatenate,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Multiply,
    keras.layers.Subtract,
)


def network_cost(model: keras.Model) -> Cost:
    """Cost of a functional or Sequential model for one example: the sum of its layers' costs.

    Merging layers (Add, Concatenate, ...; also when called on a one-element list) and input
    layers cost nothing.
    """
    total = Cost()
    for layer in model.layers:
        if isinstance(layer, (keras.layers.InputLayer, _MERGE_LAYERS)):
            continue
        try:
            shape = layer.input.shape
        except (AttributeError, ValueError):
            continue
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
            continue  # several inputs
        if isinstance(layer, keras.Model):
            total = total + network_cost(layer)
        else:
            total = total + layer_cost(layer, shape[1:])
    return total


def cost_column(layer, resource: str) -> np.ndarray:
    """Costs of a built MixedOp's candidates in `resource` (params, mult-adds, elements or
    ms), shape (k,). Raises ValueError when the layer has no such column."""
    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {RESOURCES}, got {resource!r}")
    table = layer.cost_table
    if table is None:
        raise ValueError(
            f"MixedOp {layer.name!r} was built on inputs of unknown height/width; "
            f"resource costs need a fixed input shape"
        )
    column = RESOURCES.index(resource)
    if table.shape[1] <= column:
        raise ValueError(
            f"MixedOp {layer.name!r} has no {resource} column: measure it with "
            f"kerasnas.latency.attach_latency(model) first (SNASTrainer does this when "
            f"config.resource == 'latency')"
        )
    return table[:, column]


def penalty(
    layers: Sequence,
    resource: str = "params",
    form: str = "log",
    estimator: str = "reparam",
):
    """The SNAS resource penalty of a supernet's MixedOp layers, in millions of `resource`
    (params, flops, mac) or in milliseconds (latency).

    C(Z) = sum over layers of sum_k Z_k c_k, with c_k the cost of candidate k at that layer's
    input shape and Z the layer's sample of the current training step. `form` "linear"
    penalises C, "log" penalises log(C + eps), eps = 1% of the largest possible C.
    `estimator`:

    - ``reparam``: C of the relaxed Gumbel sample, differentiated through the sample;
    - ``score``: C of the discrete sample h = argmax(alpha + G), gradient by the score
      function (C(h) - b) grad log p(h), with the exact expectation as baseline b;
    - ``expected``: the exact expectation sum_k softmax(alpha)_k c_k (no sampling).

    Returns (surrogate, value): minimise ``lambda * surrogate``; ``value`` is the penalty of
    this step's sample (of the expectation for ``expected``), for logging.
    """
    from keras import ops as K

    if resource not in RESOURCES:
        raise ValueError(f"resource must be one of {RESOURCES}, got {resource!r}")
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if not layers:
        raise ValueError("penalty: the model has no MixedOp layers")
    try:
        tables = [cost_column(layer, resource) * _SCALE[resource] for layer in layers]
    except ValueError as e:
        raise ValueError(f"penalty: {e}") from None
    eps = 0.01 * max(sum(float(t.max()) for t in tables), 1e-12)

    def shape(c):
        return K.log(c + eps) if form == "log" else c

    def dot(weights, table):
        return K.sum(weights * K.convert_to_tensor(table, dtype=weights.dtype))

    expected = sum(dot(layer.probabilities(), t) for layer, t in zip(layers, tables, strict=True))
    if estimator == "expected":
        value = shape(expected)
        return value, value
    if estimator == "reparam":
        sampled = sum(
            dot(layer.relaxed_sample(), t) for layer, t in zip(layers, tables, strict=True)
        )
        value = shape(sampled)
        return value, value
    # score function: one discrete sample per owner of logits
    sampled = 0.0
    log_prob = 0.0
    seen = set()
    for layer, t in zip(layers, tables, strict=True):
        index = layer.sampled_index()
        hard = K.one_hot(index, layer.num_candidates, dtype=layer.arch_logits.dtype)
        sampled = sampled + dot(hard, t)
        owner = layer.owner()
        if id(owner) not in seen:
            seen.add(id(owner))
            log_prob = log_prob + K.sum(hard * K.log_softmax(owner.arch_logits))
    value = shape(sampled)
    advantage = K.stop_gradient(value - shape(expected))
    return advantage * log_prob, value


def expected_cost(layers: Sequence, resource: str = "params") -> float:
    """E[C(Z)] = sum over layers of softmax(alpha) . c, in units of `resource` (not millions;
    ms for latency)."""
    from keras import ops as K

    total = 0.0
    for layer in layers:
        try:
            costs = cost_column(layer, resource)
        except ValueError as e:
            raise ValueError(f"expected_cost: {e}") from None
        p = K.convert_to_numpy(layer.probabilities())
        total += float((p * costs).sum())
    return total
