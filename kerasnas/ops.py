"""Candidate operations of the DARTS/SNAS cell space, as Keras layers, and their registry.

Every op maps a (B, H, W, C_in) tensor to (B, ceil(H/s), ceil(W/s), channels), s = strides,
channels-last. Built as the papers describe: ReLU-conv-BN order, convolutions without bias,
separable convs applied twice, dilated convs with dilation 2, a factorized reduce for the
stride-2 skip connection. ``affine=False`` gives the parameter-free batch norm used during
search. Each op reports its resource cost with ``cost(input_shape)`` (see
:mod:`kerasnas.resource`).

Supported names: ``none``, ``max_pool_3x3``, ``avg_pool_3x3``, ``skip_connect``,
``sep_conv_3x3``, ``sep_conv_5x5``, ``dil_conv_3x3``, ``dil_conv_5x5``, plus
``conv_1x1``, ``conv_3x3`` (ReLU-conv-BN) and anything added with :func:`register_op`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import tensorflow as tf
from keras import ops as K

from kerasnas import resource
from kerasnas.names import PRIMITIVES as PRIMITIVES  # re-exported: kerasnas.ops.PRIMITIVES
from kerasnas.resource import Cost

BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1, as in the authors' code
BN_EPSILON = 1e-5

OpFactory = Callable[..., keras.layers.Layer]
_REGISTRY: dict[str, OpFactory] = {}


def register_op(name: str, factory: OpFactory, *, overwrite: bool = False) -> None:
    """Makes `name` usable wherever an op name is accepted.

    `factory(channels, strides, affine, search, name)` must return a Keras layer mapping
    (B, H, W, C) to (B, ceil(H/strides), ceil(W/strides), channels). `search` is True when the
    op is built inside a supernet (the cell space then adds batch norm after pooling ops).
    A layer with a ``cost(input_shape)`` method reports exact resource costs; otherwise
    costs are counted generically by :func:`kerasnas.resource.layer_cost`.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_op: name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"register_op: factory for {name!r} must be callable")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"register_op: op {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = factory


def registered_ops() -> tuple[str, ...]:
    """Names of every registered candidate operation, built-ins first."""
    return tuple(_REGISTRY)


def create_op(
    name: str,
    channels: int,
    strides: int = 1,
    affine: bool = True,
    search: bool = False,
    layer_name: str | None = None,
) -> keras.layers.Layer:
    """Builds the op registered as `name` (the layer is called `layer_name`, default `name`);
    see :func:`register_op` for the arguments."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown op {name!r}; registered ops: {', '.join(_REGISTRY)}")
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"op {name!r}: channels must be a positive int, got {channels!r}")
    if strides not in (1, 2):
        raise ValueError(f"op {name!r}: strides must be 1 or 2, got {strides!r}")
    return _REGISTRY[name](
        channels=channels, strides=strides, affine=affine, search=search, name=layer_name or name
    )


def _out_hw(shape: Sequence[int], strides: int) -> tuple[int, int]:
    return -(-int(shape[0]) // strides), -(-int(shape[1]) // strides)


_FUSED_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def _in_replica_context_with_multiple_replicas() -> bool:
    """Whether a layer is called inside ``strategy.run`` with several replicas in sync."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return False
    return tf.distribute.get_replica_context().num_replicas_in_sync > 1


@keras.saving.register_keras_serializable("kerasnas")
class BatchNorm(keras.layers.Layer):
    """Batch norm over the channels (last axis) of (B, H, W, C), as one fused op.

    Same maths as ``keras.layers.BatchNormalization`` (moving averages with `momentum`,
    unbiased moving variance as in PyTorch), but training mode is a single
    FusedBatchNormV3 that also updates the moving averages, with a single-op gradient: a
    supernet has hundreds of these, and the graph (and its tracing time) shrinks several-fold.
    ``affine=False`` has no trainable parameters (the search-time batch norm of DARTS/SNAS).
    float64 inputs, which the fused op lacks, take the same maths in plain ops.
    """

    def __init__(
        self,
        affine: bool = True,
        momentum: float = BN_MOMENTUM,
        epsilon: float = BN_EPSILON,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"BatchNorm: momentum must be in [0, 1), got {momentum}")
        if not epsilon > 0:
            raise ValueError(f"BatchNorm: epsilon must be > 0, got {epsilon}")
        self.affine = bool(affine)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        # what a training-mode call does to the moving averages (set by
        # kerasnas.batchnorm.statistics_mode); read when the call is traced, not saved
        self.statistics = "update"

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"BatchNorm expects (B, H, W, C) inputs, got shape {input_shape}")
        c = int(input_shape[-1])
        # parameters and statistics stay in the variable dtype (float32 under a mixed
        # policy, never autocast): the fused op takes them in float32 for any input dtype
        if self.affine:
            self.gamma = self.add_weight(
                name="gamma", shape=(c,), initializer="ones", autocast=False
            )
            self.beta = self.add_weight(
                name="beta", shape=(c,), initializer="zeros", autocast=False
            )
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(c,), initializer="zeros", trainable=False, autocast=False
        )
        self.moving_variance = self.add_weight(
            name="moving_variance",
            shape=(c,),
            initializer="ones",
            trainable=False,
            autocast=False,
        )

    def call(self, x, training=None, output_scale=None):
        """`output_scale`: an optional scalar the output is multiplied by, folded into the
        op's per-channel scale (a mixed op's weight costs no extra pass over the tensor)."""
        c, dtype = x.shape[-1], self.moving_mean.dtype
        scale = self.gamma if self.affine else tf.ones((c,), dtype)
        offset = self.beta if self.affine else tf.zeros((c,), dtype)
        if output_scale is not None:
            output_scale = tf.cast(output_scale, dtype)
            scale = scale * output_scale
            offset = offset * output_scale
        if training and _in_replica_context_with_multiple_replicas():
            return self._call_synced(x, scale, offset)
        if x.dtype not in _FUSED_DTYPES or dtype != tf.float32:
            return self._call_unfused(x, scale, offset, training)
        factor = 1.0 - self.momentum if self.statistics == "update" else 1.0
        average = {"exponential_avg_factor": factor} if training else {}
        y, mean, var = tf.compat.v1.nn.fused_batch_norm(
            x,
            scale,
            offset,
            self.moving_mean,
            self.moving_variance,
            epsilon=self.epsilon,
            is_training=bool(training),
            **average,
        )
        if training and self.statistics != "frozen":
            self.moving_mean.assign(mean)
            self.moving_variance.assign(var)
        return y

    def _call_synced(self, x, scale, offset):
        """Training mode in a replica of several (``tf.distribute``): the moments of the
        GLOBAL batch, from per-channel sums and sums of squares summed over the replicas in
        one all-reduce (SyncBatchNorm), so each replica normalises and updates its copy of
        the moving statistics as one device would on the whole batch."""
        dtype = self.moving_mean.dtype
        xf = tf.cast(x, dtype)
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), dtype)
        ctx = tf.distribute.get_replica_context()
        total = ctx.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.concat([tf.reduce_sum(xf, [0, 1, 2]), [count]], 0)
        )
        c = x.shape[-1]
        n = total[c]
        mean = total[:c] / n
        var = (
            ctx.all_reduce(
                tf.distribute.ReduceOp.SUM, tf.reduce_sum(tf.square(xf - mean), [0, 1, 2])
            )
            / n
        )
        m = self.momentum
        unbiased = var * n / tf.maximum(n - 1, 1.0)
        self.moving_mean.assign(m * self.moving_mean + (1 - m) * tf.stop_gradient(mean))
        self.moving_variance.assign(m * self.moving_variance + (1 - m) * tf.stop_gradient(unbiased))
        y = tf.nn.batch_normalization(xf, mean, var, offset, scale, self.epsilon)
        return tf.cast(y, x.dtype)

    def _call_unfused(self, x, scale, offset, training):
        """The same maths in plain ops, for dtypes the fused op lacks (float64)."""
        if not training:
            return tf.nn.batch_normalization(
                x, self.moving_mean, self.moving_variance, offset, scale, self.epsilon
            )
        mean, var = tf.nn.moments(x, axes=[0, 1, 2])
        n = tf.cast(tf.reduce_prod(tf.shape(x)[:3]), x.dtype)
        unbiased = var * n / tf.maximum(n - 1, tf.ones_like(n))
        if self.statistics != "frozen":
            m = self.momentum if self.statistics == "update" else 0.0
            self.moving_mean.assign(m * self.moving_mean + (1 - m) * mean)
            self.moving_variance.assign(m * self.moving_variance + (1 - m) * unbiased)
        return tf.nn.batch_normalization(x, mean, var, offset, scale, self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "affine": self.affine,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
        }


def _batch_norm(affine: bool, name: str) -> BatchNorm:
    return BatchNorm(affine, name=name)


def call_layer(layer: keras.layers.Layer, x, training=None):
    """Runs a built sublayer without ``Layer.__call__``'s bookkeeping (a supernet traces
    thousands of these)."""
    if not layer.built:
        return layer(x, training=training)
    if getattr(layer, "_call_has_training_arg", True):
        return layer.call(x, training=training)
    return layer.call(x)


def call_scaled(layer: keras.layers.Layer, x, scale, training=None):
    """``scale * layer(x)`` for a scalar `scale`; ops ending in batch norm fold the scale
    into it (see :meth:`CandidateOp.call_scaled`)."""
    if isinstance(layer, CandidateOp) and layer.built:
        return layer.call_scaled(x, scale, training)
    y = call_layer(layer, x, training)
    return y * tf.cast(scale, y.dtype)


class CandidateOp(keras.layers.Layer):
    """Base class: an op with fixed output `channels`, `strides` and batch-norm `affine`."""

    def __init__(self, channels: int, strides: int = 1, affine: bool = True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(channels, int) or channels < 1:
            raise ValueError(
                f"{type(self).__name__}: channels must be a positive int, got {channels!r}"
            )
        if strides not in (1, 2):
            raise ValueError(f"{type(self).__name__}: strides must be 1 or 2, got {strides!r}")
        self.channels = channels
        self.strides = strides
        self.affine = bool(affine)

    def compute_output_shape(self, input_shape):
        h, w = input_shape[1:3]
        h = None if h is None else -(-h // self.strides)
        w = None if w is None else -(-w // self.strides)
        return (input_shape[0], h, w, self.channels)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, strides=self.strides, affine=self.affine)
        return config

    def cost(self, input_shape: Sequence[int]) -> Cost:
        """Resource cost for one example of shape (H, W, C_in)."""
        raise NotImplementedError

    def call_scaled(self, x, scale, training=None):
        """``scale * self(x)`` for a scalar `scale` (a mixed op's weight); built layers only.
        Ops whose last step is a :class:`BatchNorm` fold it into that step."""
        y = call_layer(self, x, training)
        return y * tf.cast(scale, y.dtype)


@keras.saving.register_keras_serializable("kerasnas")
class Zero(CandidateOp):
    """The `none` op: zeros of the output shape (deletes an edge)."""

    def call(self, x):
        s = self.strides
        x = x[:, ::s, ::s, :]
        if self.channels != x.shape[-1]:
            x = K.tile(x[..., :1], [1, 1, 1, self.channels])
        return K.zeros_like(x)

    def cost(self, input_shape):
        return Cost()


@keras.saving.register_keras_serializable("kerasnas")
class Identity(CandidateOp):
    """The stride-1 `skip_connect` op."""

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(
                f"Identity: input has {input_shape[-1]} channels but channels={self.channels}"
            )

    def call(self, x):
        return x

    def cost(self, input_shape):
        return Cost()


class _Sequence(CandidateOp):
    """An op that applies `self.steps` (a list of layers) in order."""

    steps: list

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.steps:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)

    def call(self, x, training=None):
        for layer in self.steps:
            x = call_layer(layer, x, training)
        return x

    def call_scaled(self, x, scale, training=None):
        *body, last = self.steps
        if not isinstance(last, BatchNorm):
            return super().call_scaled(x, scale, training)
        for layer in body:
            x = call_layer(layer, x, training)
        return last.call(x, training=training, output_scale=scale)

    def cost(self, input_shape):
        total, shape = Cost(), tuple(int(d) for d in input_shape)
        for layer in self.steps:
            total = total + resource.layer_cost(layer, shape)
            shape = tuple(layer.compute_output_shape((None, *shape))[1:])
        return total


@keras.saving.register_keras_serializable("kerasnas")
class ReLUConvBN(_Sequence):
    """ReLU, k x k conv (no bias), batch norm."""

    def __init__(self, channels, kernel_size=1, strides=1, affine=True, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        self.steps = [
            keras.layers.ReLU(name="relu"),
            keras.layers.Conv2D(
                channels, self.kernel_size, strides, padding="same", use_bias=False, name="conv"
            ),
            _batch_norm(affine, "bn"),
        ]

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


@keras.saving.register_keras_serializable("kerasnas")
class SepConv(_Sequence):
    """(ReLU, depthwise k x k, pointwise 1x1, BN) twice; the first depthwise carries the stride."""

    def __init__(self, channels, kernel_size=3, strides=1, affine=True, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        self._c_mid = None

    def build(self, input_shape):
        c_in = int(input_shape[-1])
        k = self.kernel_size
        self.steps = [
            keras.layers.ReLU(name="relu1"),
            keras.layers.DepthwiseConv2D(
                k, self.strides, padding="same", use_bias=False, name="dw1"
            ),
            keras.layers.Conv2D(c_in, 1, use_bias=False, name="pw1"),
            _batch_norm(self.affine, "bn1"),
            keras.layers.ReLU(name="relu2"),
            keras.layers.DepthwiseConv2D(k, 1, padding="same", use_bias=False, name="dw2"),
            keras.layers.Conv2D(self.channels, 1, use_bias=False, name="pw2"),
            _batch_norm(self.affine, "bn2"),
        ]
        super().build(input_shape)

    def cost(self, input_shape):
        if not self.built:
            self.build((None, *input_shape))
        return super().cost(input_shape)

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size}


def dilate_kernel(kernel, d: int):
    """A (kh, kw, C, M) kernel spread over its dilated span: d - 1 zeros between taps, so
    (kh-1)*d+1 x (kw-1)*d+1. One axis at a time, so no tensor has more than 4 dimensions
    (TFLite has no builtin pad of a 6-D tensor: a 6-D pad fails a plain conversion)."""
    kh, kw, c, m = kernel.shape
    x = K.reshape(kernel, (kh, 1, kw, c * m))
    x = K.pad(x, [[0, 0], [0, d - 1], [0, 0], [0, 0]])  # (kh, d, kw, C*M)
    x = K.reshape(x, (kh * d, kw, 1, c * m))[: (kh - 1) * d + 1]
    x = K.pad(x, [[0, 0], [0, 0], [0, d - 1], [0, 0]])  # (H, kw, d, C*M)
    x = K.reshape(x, ((kh - 1) * d + 1, kw * d, c, m))
    return x[:, : (kw - 1) * d + 1]


class _DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` that computes a strided dilated conv at its output
    resolution.

    TensorFlow's depthwise conv cannot combine strides and dilation, so Keras runs it at
    stride 1 and subsamples: strides**2 times the work (4x for the reduction cells' dilated
    convs). This layer instead spreads the k x k kernel over its dilated span with zeros
    between the taps and runs that undilated at the stride: (k-1)*d+1 squared taps per
    output (25 for k=3, d=2, against 4 x 9 = 36), no subsampling pass, and 2-2.5x faster
    forward+backward on CPU. Same weights, same padding, same outputs."""

    def call(self, inputs):
        (s, _), (d, _) = self.strides, self.dilation_rate
        if s == 1 or d == 1:
            return super().call(inputs)
        outputs = K.depthwise_conv(
            inputs, dilate_kernel(self.kernel, d), self.strides, self.padding, self.data_format
        )
        if self.use_bias:
            outputs = outputs + self.bias
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable("kerasnas")
class DilConv(_Sequence):
    """ReLU, depthwise k x k with dilation, pointwise 1x1, BN."""

    def __init__(self, channels, kernel_size=3, strides=1, dilation_rate=2, affine=True, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        self.kernel_size = int(kernel_size)
        self.dilation_rate = int(dilation_rate)
        self.steps = [
            keras.layers.ReLU(name="relu"),
            _DepthwiseConv2D(
                self.kernel_size,
                strides,
                padding="same",
                dilation_rate=self.dilation_rate,
                use_bias=False,
                name="dw",
            ),
            keras.layers.Conv2D(channels, 1, use_bias=False, name="pw"),
            _batch_norm(affine, "bn"),
        ]

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "dilation_rate": self.dilation_rate,
        }


@keras.saving.register_keras_serializable("kerasnas")
class Pool(_Sequence):
    """3x3 max or average pooling ('same' padding; the average excludes padding), then
    batch norm when `batch_norm` (the supernet's pooling ops, as in DARTS' search code)."""

    def __init__(self, channels, kind="max", strides=1, batch_norm=False, affine=False, **kwargs):
        super().__init__(channels, strides, affine, **kwargs)
        if kind not in ("max", "avg"):
            raise ValueError(f"Pool: kind must be 'max' or 'avg', got {kind!r}")
        self.kind = kind
        self.batch_norm = bool(batch_norm)
        pool_cls = keras.layers.MaxPooling2D if kind == "max" else keras.layers.AveragePooling2D
        self.steps = [pool_cls(3, strides, padding="same", name="pool")]
        if self.batch_norm:
            self.steps.append(_batch_norm(affine, "bn"))

    def build(self, input_shape):
        if input_shape[-1] != self.channels:
            raise ValueError(
                f"Pool: pooling keeps channels; input has {input_shape[-1]}, "
                f"channels={self.channels}"
            )
        super().build(input_shape)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "batch_norm": self.batch_norm}


@keras.saving.register_keras_serializable("kerasnas")
class FactorizedReduce(CandidateOp):
    """Stride-2 skip connection: ReLU, two stride-2 1x1 convs on grids offset by one pixel
    (channels//2 and the rest), concatenated, batch norm. Handles odd sizes."""

    def __init__(self, channels, affine=True, **kwargs):
        kwargs.pop("strides", None)
        super().__init__(channels, 2, affine, **kwargs)
        c1 = channels // 2
        self.conv1 = keras.layers.Conv2D(max(c1, 1), 1, 2, use_bias=False, name="conv1")
        self.conv2 = keras.layers.Conv2D(channels - max(c1, 1), 1, 2, use_bias=False, name="conv2")
        self.bn = _batch_norm(affine, "bn")
        if channels < 2:
            raise ValueError(f"FactorizedReduce: channels must be >= 2, got {channels}")

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(input_shape)
        self.bn.build(self.compute_output_shape(input_shape))

    def _convs(self, x):
        """ReLU and both convs, before batch norm: (B, H, W, C_in) -> (B, H', W', C).

        Both stride-2 convs read one pixel of each 2x2 block: conv1 the top-left, conv2 the
        bottom-right one (of the input padded by a row/column when odd). space_to_depth
        moves the block into channels [tl, tr, bl, br] and one 1x1 conv whose kernel holds
        conv1 in the tl rows and conv2 in the br rows does both, with no slicing."""
        x = K.relu(x)
        h, w = x.shape[1], x.shape[2]
        if h % 2 or w % 2:
            x = K.pad(x, [[0, 0], [0, h % 2], [0, w % 2], [0, 0]])
        k1 = self.conv1.kernel[0, 0]  # (C_in, c1)
        k2 = self.conv2.kernel[0, 0]  # (C_in, C - c1)
        c_in, c1 = int(k1.shape[0]), int(k1.shape[1])
        kernel = K.concatenate(
            [
                K.pad(k1, [[0, 0], [0, self.channels - c1]]),
                K.zeros((2 * c_in, self.channels), k1.dtype),
                K.pad(k2, [[0, 0], [c1, 0]]),
            ],
            axis=0,
        )
        return tf.nn.conv2d(tf.nn.space_to_depth(x, 2), kernel[None, None], 1, "VALID")

    def call(self, x, training=None):
        return self.bn.call(self._convs(x), training=training)

    def call_scaled(self, x, scale, training=None):
        return self.bn.call(self._convs(x), training=training, output_scale=scale)

    def cost(self, input_shape):
        h, w = _out_hw(input_shape, 2)
        c1 = self.conv1.filters
        return (
            resource.conv_cost(input_shape, (h, w, c1), 1, c1)
            + resource.conv_cost(input_shape, (h, w, self.channels - c1), 1, self.channels - c1)
            + resource.batch_norm_cost((h, w, self.channels), self.affine)
        )

    def get_config(self):
        config = super().get_config()
        config.pop("strides")
        return config


def _skip(channels, strides, affine, search, name):
    if strides == 1:
        return Identity(channels, name=name)
    return FactorizedReduce(channels, affine=affine, name=name)


def _pool(kind):
    def factory(channels, strides, affine, search, name):
        return Pool(channels, kind, strides, batch_norm=search, affine=False, name=name)

    return factory


def _sep(k):
    def factory(channels, strides, affine, search, name):
        return SepConv(channels, k, strides, affine, name=name)

    return factory


def _dil(k):
    def factory(channels, strides, affine, search, name):
        return DilConv(channels, k, strides, 2, affine, name=name)

    return factory


def _conv(k):
    def factory(channels, strides, affine, search, name):
        return ReLUConvBN(channels, k, strides, affine, name=name)

    return factory


register_op(
    "none", lambda channels, strides, affine, search, name: Zero(channels, strides, name=name)
)
register_op("max_pool_3x3", _pool("max"))
register_op("avg_pool_3x3", _pool("avg"))
register_op("skip_connect", _skip)
register_op("sep_conv_3x3", _sep(3))
register_op("sep_conv_5x5", _sep(5))
register_op("dil_conv_3x3", _dil(3))
register_op("dil_conv_5x5", _dil(5))
register_op("conv_1x1", _conv(1))
register_op("conv_3x3", _conv(3))
