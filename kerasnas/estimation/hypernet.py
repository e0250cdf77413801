"""A SMASH-style hypernetwork for the ``nasrl`` chain space (Brock et al., ICLR 2018): one
network, trained once on randomly sampled architectures, that maps an encoding of any
architecture of the space to the weights of its convolutions; candidates are then ranked
by their validation accuracy with the generated weights, and the best are trained normally.

The maximal network: layer n of a space with at most L layers, F filters, kernels of up to
KH x KW and C-channel images reads a "bank" of ``C + F * n`` channels (the image, then
F channels per earlier layer, a layer of f < F filters zero in channels f..F-1). Layer n of
an architecture uses a slice of the maximal kernel ``(KH, KW, C + F * n, F)``: the rows of
its inputs' channels (in concatenation order: the image alone, or its input layers' first
f_j channels in layer order), its first f_n output channels, and the h x w window that
'same' padding aligns with the full kernel (offset ``(KH - 1) // 2 - (h - 1) // 2``), so the
slice is exactly the kernel of the space's own ``L{n}_conv``.

The generator (:class:`HyperNet`): each layer's encoding (one-hot filter height, width,
filters and position; its inputs, multi-hot; whether the classifier reads it; the mean
encoding of its inputs; the network's depth and mean layer encoding) goes through a
two-layer MLP to a code z_n, from which three linear heads give a per-input-channel, a
per-output-channel and a per-tap factor; the kernel is a learned base kernel (one per
layer slot, shared by every architecture) times ``(1 + in) (1 + out) (1 + tap)``. This is
a factorised, cheap form of SMASH's generator (which emits every weight with a conv net):
the generated weights are a function of the whole architecture, at a cost a CPU can train.
Batch norm has no learned parameters (training: batch statistics; scoring: statistics
recalibrated on training batches for each candidate, as Single-Path One-Shot does); the
classifier's weights (one row per bank channel) are learned directly.

Training (:meth:`HyperNet.train`): every minibatch samples an architecture
(``space.sample(rng)``), runs it with generated weights and back-propagates into the
hypernetwork (Adam). The architecture reaches the compiled step as tensors (index vectors
of dynamic length, kernel sizes), so the step is traced once for all architectures
(:attr:`HyperNet.traces` counts the traces).

:class:`HyperNetEstimator` (``--estimator=hypernet``) trains the hypernetwork on the first
trial that needs it, saves it atomically (``<project>/hypernet.npz``) and reloads it on a
resumed search; each trial's accuracy is that of its architecture with generated weights:
a ranking score, not a trained model's accuracy (no model, 0 epochs trained).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasnas import io
from kerasnas.estimation.base import Estimate, Estimator, TrialContext
from kerasnas.ops import BN_EPSILON

__all__ = ["HyperNet", "HyperNetEstimator", "check_space"]

FILE = "hypernet.npz"


def check_space(space: Any) -> None:
    """Raises ValueError unless `space` is a ``nasrl`` space the hypernetwork handles
    (stride 1 everywhere, so that every layer keeps the image's size)."""
    from kerasnas.search_spaces.nasrl import NASRLSpace

    if not isinstance(space, NASRLSpace):
        raise ValueError(f"HyperNet: space must be a NASRLSpace, got {space!r}")
    if space.strides is not None and tuple(space.strides) != (1,):
        raise ValueError(
            f"HyperNet: space strides must be None or (1,), got {tuple(space.strides)}"
        )


def _positive_int(value: Any, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"HyperNet: {what} must be an int >= {minimum}, got {value!r}")
    return int(value)


class HyperNet(keras.Model):
    """The hypernetwork and the maximal network of a ``nasrl`` space (see the module doc).

    Args:
      space: a :class:`~kerasnas.search_spaces.nasrl.NASRLSpace` with stride 1.
      input_shape: (H, W, C) of the raw images.
      num_classes: K.
      mean, std: per-channel statistics of the raw images, shape (C,) (the data's
        normalisation, as ``DataBundle.normalization_layer`` applies it).
      hidden: width of the generator's MLP.
      seed: seeds the initial weights (and, in :meth:`train`, the sampling).
    """

    def __init__(
        self,
        space: Any,
        input_shape: Sequence[int],
        num_classes: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hidden: int = 64,
        seed: int = 0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        check_space(space)
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"HyperNet: input_shape must be (H, W, C), got {input_shape!r}")
        self.space = space
        self.image_shape = shape
        self.num_classes = _positive_int(num_classes, "num_classes", 2)
        self.hidden = _positive_int(hidden, "hidden")
        self.seed = _positive_int(seed, "seed", 0)
        c = shape[-1]
        self.mean_ = np.zeros(c, np.float32) if mean is None else np.asarray(mean, np.float32)
        self.std_ = np.ones(c, np.float32) if std is None else np.asarray(std, np.float32)
        if self.mean_.shape != (c,) or self.std_.shape != (c,) or not np.all(self.std_ > 0):
            raise ValueError(f"HyperNet: mean and std must have shape ({c},), std > 0")
        self.L = space.max_layers
        self.F = max(space.filters)
        self.KH, self.KW = max(space.filter_heights), max(space.filter_widths)
        self.C = c
        self.traces = {"train": 0, "forward": 0}
        self.code_size = 3 * self._layer_code_size() + (self.L - space.min_layers + 1)

        def init(k: int):
            return keras.initializers.GlorotUniform(seed=self.seed * 101 + k)

        self.base = [
            self.add_weight(
                name=f"base{n}",
                shape=(c + self.F * n, self.KH, self.KW, self.F),
                initializer=keras.initializers.HeNormal(seed=self.seed * 101 + 50 + n),
            )
            for n in range(self.L)
        ]
        self.encoder = keras.Sequential(
            [
                keras.layers.Dense(self.hidden, "relu", kernel_initializer=init(1)),
                keras.layers.Dense(self.hidden, "relu", kernel_initializer=init(2)),
            ],
            name="encoder",
        )
        # zero heads: every factor starts at 1, the kernels at the base kernels
        rows = c + self.F * (self.L - 1)
        self.in_head = keras.layers.Dense(rows, kernel_initializer="zeros", name="in_head")
        self.out_head = keras.layers.Dense(self.F, kernel_initializer="zeros", name="out_head")
        self.tap_head = keras.layers.Dense(
            self.KH * self.KW, kernel_initializer="zeros", name="tap_head"
        )
        self.encoder.build((None, self.code_size))
        for head in (self.in_head, self.out_head, self.tap_head):
            head.build((None, self.hidden))
        self.classifier_kernel = self.add_weight(
            name="classifier_kernel", shape=(self.F * self.L, self.num_classes), initializer=init(3)
        )
        self.classifier_bias = self.add_weight(
            name="classifier_bias", shape=(self.num_classes,), initializer="zeros"
        )
        self.optimizer_ = None
        self._train_fn = None
        self._forward_fn = None

    # -- encoding ---------------------------------------------------------------------------

    def _layer_code_size(self) -> int:
        s = self.space
        return (
            len(s.filter_heights)
            + len(s.filter_widths)
            + len(s.filters)
            + self.L
            + (self.L + 1)
            + 1
        )

    def encode(self, arch: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """The tensors that describe `arch` to the compiled steps (fixed shapes for every
        architecture): ``code`` (L, E) float32, the generator's input; ``hwf`` (L, 3) int32,
        each layer's filter height, width and filters (1, 1, 1 for an inactive layer);
        ``uses`` (L, L + 1) int32, the channels layer n takes from the image and from each
        layer's output (concatenated in that order; an inactive layer takes the image);
        ``head`` (L,) int32, the channels the classifier takes from each layer; ``rows``
        a tuple of L int32 vectors, the same input channels of layer n as indices into the
        bank of ``C + F * n`` (rows of its kernel)."""
        s, L = self.space, self.L
        layers = s.layers(arch)
        heads = s.outputs(s.validate(arch))
        size = self._layer_code_size()
        own = np.zeros((L, size), np.float32)
        hwf = np.ones((L, 3), np.int32)
        uses = np.zeros((L, L + 1), np.int32)
        uses[:, 0] = self.C
        head = np.zeros(L, np.int32)
        rows = [np.arange(self.C, dtype=np.int32) for _ in range(L)]
        for n, layer in enumerate(layers):
            h, w, f = layer["filter_height"], layer["filter_width"], layer["filters"]
            hwf[n] = (h, w, f)
            parts = [
                np.eye(len(s.filter_heights))[s.filter_heights.index(h)],
                np.eye(len(s.filter_widths))[s.filter_widths.index(w)],
                np.eye(len(s.filters))[s.filters.index(f)],
                np.eye(L)[n],
            ]
            sources = np.zeros(L + 1)
            if layer["inputs"]:
                uses[n, 0] = 0
                rows[n] = np.concatenate(
                    [self.C + self.F * j + np.arange(layers[j]["filters"]) for j in layer["inputs"]]
                ).astype(np.int32)
                for j in layer["inputs"]:
                    uses[n, j + 1] = layers[j]["filters"]
                    sources[j + 1] = 1
            else:
                sources[0] = 1
            if n in heads:
                head[n] = f
            own[n] = np.concatenate([*parts, sources, [float(n in heads)]])
        depth = len(layers)
        context = np.zeros((L, size), np.float32)
        for n, layer in enumerate(layers):
            if layer["inputs"]:
                context[n] = own[layer["inputs"]].mean(axis=0)
        whole = np.concatenate(
            [own[:depth].mean(axis=0), np.eye(L - s.min_layers + 1)[depth - s.min_layers]]
        )
        code = np.concatenate([own, context, np.tile(whole, (L, 1))], axis=1)
        code[depth:] = 0.0
        return {
            "code": code.astype(np.float32),
            "hwf": hwf,
            "uses": uses,
            "head": head,
            "rows": tuple(rows),
        }

    def _signature(self) -> dict[str, tf.TensorSpec]:
        return {
            "code": tf.TensorSpec((self.L, self.code_size), tf.float32),
            "hwf": tf.TensorSpec((self.L, 3), tf.int32),
            "uses": tf.TensorSpec((self.L, self.L + 1), tf.int32),
            "head": tf.TensorSpec((self.L,), tf.int32),
            "rows": tuple(tf.TensorSpec((None,), tf.int32) for _ in range(self.L)),
        }

    # -- generated weights and the forward pass ---------------------------------------------

    def kernels(self, enc: Mapping[str, Any]) -> list[tf.Tensor]:
        """Layer n's generated kernel (h, w, input channels, f) of every layer slot (a 1x1
        kernel of the image for an inactive layer)."""
        z = self.encoder(enc["code"])
        ins, outs = 1.0 + self.in_head(z), 1.0 + self.out_head(z)
        taps = tf.reshape(1.0 + self.tap_head(z), (self.L, self.KH, self.KW))
        kernels = []
        for n in range(self.L):
            h, w, f = enc["hwf"][n, 0], enc["hwf"][n, 1], enc["hwf"][n, 2]
            top = (self.KH - 1) // 2 - (h - 1) // 2
            left = (self.KW - 1) // 2 - (w - 1) // 2
            # rows first: one gather (a sparse gradient) of the input channels' rows
            kernel = tf.gather(self.base[n], enc["rows"][n])[:, top : top + h, left : left + w, :f]
            kernel = tf.transpose(kernel, (1, 2, 0, 3))
            scale_in = tf.gather(ins[n], enc["rows"][n])
            tap = taps[n, top : top + h, left : left + w]
            kernel = kernel * tap[:, :, None, None] * scale_in[None, None, :, None]
            kernels.append(kernel * outs[n, :f])
        return kernels

    def classifier(self, enc: Mapping[str, Any]) -> tuple[tf.Tensor, tf.Tensor]:
        """The classifier's kernel (channels the classifier reads, K) and bias (K,)."""
        parts = [
            self.classifier_kernel[self.F * j : self.F * j + enc["head"][j]] for j in range(self.L)
        ]
        return tf.concat(parts, axis=0), self.classifier_bias

    def forward(
        self, x: tf.Tensor, enc: Mapping[str, Any], stats: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Logits (B, K) of the architecture `enc` on raw images `x` (B, H, W, C), and the
        batch statistics (2, L, F) of every layer's convolution output (zero-padded past
        its filters). `stats` None: batch norm with the batch statistics (training);
        else (2, L, F) means and variances to normalise with (inference)."""
        x = (tf.cast(x, tf.float32) - self.mean_) / np.maximum(self.std_, 1e-7)
        uses, outputs, means, variances = enc["uses"], [], [], []
        for n, kernel in enumerate(self.kernels(enc)):
            f = enc["hwf"][n, 2]
            parts = [x[..., : uses[n, 0]]] + [
                o[..., : uses[n, j + 1]] for j, o in enumerate(outputs)
            ]
            y = tf.nn.conv2d(tf.concat(parts, axis=-1), kernel, 1, "SAME")
            mean, var = tf.nn.moments(y, axes=[0, 1, 2])
            means.append(tf.pad(mean, [[0, self.F - f]]))
            variances.append(tf.pad(var, [[0, self.F - f]]))
            if stats is not None:
                mean, var = stats[0, n, :f], stats[1, n, :f]
            outputs.append(tf.nn.relu((y - mean) * tf.math.rsqrt(var + BN_EPSILON)))
        features = tf.concat([o[..., : enc["head"][j]] for j, o in enumerate(outputs)], -1)
        kernel, bias = self.classifier(enc)
        logits = tf.reduce_mean(features, axis=[1, 2]) @ kernel + bias
        return logits, tf.stack([tf.stack(means), tf.stack(variances)])

    def call(self, x, enc, stats=None):
        return self.forward(x, enc, stats)[0]

    # -- training ---------------------------------------------------------------------------

    def _compile_steps(self, learning_rate: float) -> None:
        if self._train_fn is not None:
            return
        self.optimizer_ = keras.optimizers.Adam(learning_rate)
        self.optimizer_.build(self.trainable_variables)
        image = tf.TensorSpec((None, *self.image_shape), tf.float32)
        labels = tf.TensorSpec((None,), tf.int32)

        @tf.function(input_signature=[image, labels, self._signature()])
        def train(x, y, enc):
            self.traces["train"] += 1
            with tf.GradientTape() as tape:
                logits, _ = self.forward(x, enc)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            variables = self.trainable_variables
            grads = tape.gradient(loss, variables)
            self.optimizer_.apply_gradients(zip(grads, variables, strict=True))
            return loss

        stats_spec = tf.TensorSpec((2, self.L, self.F), tf.float32)

        @tf.function(
            input_signature=[image, self._signature(), stats_spec, tf.TensorSpec((), tf.bool)]
        )
        def forward(x, enc, stats, use_stats):
            self.traces["forward"] += 1
            return tf.cond(
                use_stats,
                lambda: self.forward(x, enc, stats),
                lambda: self.forward(x, enc),
            )

        self._train_fn, self._forward_fn = train, forward

    def train(
        self,
        x: np.ndarray,
        y: np.ndarray,
        steps: int,
        batch_size: int = 64,
        learning_rate: float = 1e-3,
        rng: np.random.Generator | None = None,
        schedule: str = "constant",
    ) -> list[float]:
        """Trains `steps` minibatches of `batch_size` examples of (x, y) (raw images, int
        labels; shuffled every pass), each on one architecture ``space.sample(rng)`` (rng
        None: seeded by ``seed``), with Adam at `learning_rate` (`schedule` "cosine":
        decayed to 0 over these steps along a half cosine). Returns every step's loss."""
        steps = _positive_int(steps, "steps")
        batch_size = _positive_int(batch_size, "batch_size")
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"HyperNet: schedule must be 'constant' or 'cosine', got {schedule!r}")
        rng = np.random.default_rng(self.seed) if rng is None else rng
        self._compile_steps(learning_rate)
        x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
        order, at, losses = rng.permutation(len(x)), 0, []
        for step in range(steps):
            rate = learning_rate
            if schedule == "cosine":
                rate = 0.5 * learning_rate * (1.0 + np.cos(np.pi * step / steps))
            self.optimizer_.learning_rate.assign(rate)  # a variable: no retracing
            if at + batch_size > len(x):
                order, at = rng.permutation(len(x)), 0
            batch = order[at : at + batch_size]
            at += batch_size
            enc = self.encode(self.space.sample(rng))
            losses.append(float(self._train_fn(x[batch], y[batch], enc)))
        return losses

    # -- scoring ----------------------------------------------------------------------------

    def _run(self, x: np.ndarray, enc: dict[str, Any], stats: np.ndarray | None):
        self._compile_steps(1e-3)
        use = stats is not None
        stats = np.zeros((2, self.L, self.F), np.float32) if stats is None else stats
        return self._forward_fn(np.asarray(x, np.float32), enc, stats, use)

    def statistics(
        self, arch: Mapping[str, Any], x: np.ndarray, batch_size: int = 64
    ) -> np.ndarray:
        """Batch-norm statistics (2, L, F) of `arch` recalibrated on the images `x`: the
        mean over batches of `batch_size` of each batch's mean, and the variance over all
        of them (mean batch variance + variance of the batch means)."""
        enc = self.encode(arch)
        batches = [
            self._run(x[i : i + batch_size], enc, None)[1].numpy()
            for i in range(0, len(x), batch_size)
        ]
        moments = np.stack(batches)  # (batches, 2, L, F)
        mean = moments[:, 0].mean(axis=0)
        var = moments[:, 1].mean(axis=0) + moments[:, 0].var(axis=0)
        return np.stack([mean, var]).astype(np.float32)

    def logits(
        self, arch: Mapping[str, Any], x: np.ndarray, stats: np.ndarray | None = None
    ) -> np.ndarray:
        """Logits (N, K) of `arch` with generated weights (`stats`: see :meth:`forward`)."""
        return self._run(x, self.encode(arch), stats)[0].numpy()

    def score(
        self,
        arch: Mapping[str, Any],
        x: np.ndarray,
        y: np.ndarray,
        calibration: np.ndarray,
        batch_size: int = 64,
    ) -> float:
        """Accuracy of `arch` on (x, y) with generated weights, batch norm recalibrated on
        the images `calibration`."""
        stats = self.statistics(arch, calibration, batch_size)
        return float(np.mean(np.argmax(self.logits(arch, x, stats), -1) == np.asarray(y)))

    def generated_weights(self, arch: Mapping[str, Any]) -> dict[str, list[np.ndarray]]:
        """The generated weights of `arch` by the layer names of ``space.build``: ``L{n}_conv``
        [kernel (h, w, inputs, f)], ``classifier`` [kernel, bias]."""
        enc = self.encode(arch)
        depth = arch["num_layers"] if "num_layers" in arch else len(self.space.layers(arch))
        kernels = self.kernels(enc)
        out = {f"L{n}_conv": [kernels[n].numpy()] for n in range(depth)}
        out["classifier"] = [t.numpy() for t in self.classifier(enc)]
        return out

    def build_model(
        self,
        arch: Mapping[str, Any],
        stats: np.ndarray,
        preprocessing: keras.layers.Layer | None = None,
    ) -> keras.Model:
        """``space.build(arch)`` with the generated weights copied in and batch norm set to
        `stats` (gamma 1, beta 0): at inference it computes :meth:`logits` (``stats``)."""
        model = self.space.build(arch, self.image_shape, self.num_classes, preprocessing)
        for name, weights in self.generated_weights(arch).items():
            model.get_layer(name).set_weights(weights)
        for n, layer in enumerate(self.space.layers(arch)):
            f = layer["filters"]
            bn = model.get_layer(f"L{n}_bn")
            bn.gamma.assign(np.ones(f, np.float32))
            bn.beta.assign(np.zeros(f, np.float32))
            bn.moving_mean.assign(stats[0, n, :f])
            bn.moving_variance.assign(stats[1, n, :f])
        return model

    # -- saving -----------------------------------------------------------------------------

    def save_arrays(self, path: str, meta: Mapping[str, Any] | None = None) -> None:
        """Writes the weights (and a JSON-serialisable `meta`) to `path` (.npz) atomically."""
        arrays = {f"w{i}": v.numpy() for i, v in enumerate(self.weights)}
        arrays["meta"] = np.array(json.dumps(dict(meta or {}), sort_keys=True))
        with io.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)

    def load_arrays(self, path: str) -> dict[str, Any]:
        """Reads weights written by :meth:`save_arrays`; returns their meta."""
        with np.load(path) as data:
            values = [data[f"w{i}"] for i in range(len(self.weights))]
            meta = json.loads(str(data["meta"]))
        for v, value in zip(self.weights, values, strict=True):
            v.assign(value)
        return meta


class HyperNetEstimator(Estimator):
    """Scores each trial with a SMASH-style hypernetwork (see the module doc).

    The hypernetwork is trained once, `steps` minibatches of the trial batch size on the
    training split, on the first trial that needs it, and saved to ``hypernet.npz`` in the
    trial's directory (``TrialContext.directory``: the search's ``tuner/`` project), where a
    resumed search finds it (a file of other settings is retrained and replaced); in a
    distributed search a worker that finds no file trains its own (the same weights: same
    seed, same data). A trial's
    ``val_accuracy`` is the validation accuracy of its architecture with generated weights
    (batch norm recalibrated on `calibration_batches` training batches): a ranking score,
    typically below what the architecture reaches when trained. No model is trained
    (``epochs_trained`` 0, no ``model.keras``); the search's best trial is trained normally
    when the job writes its results.

    Args:
      steps: training minibatches of the hypernetwork, >= 1.
      seed: seeds its initial weights, architecture sampling and data order.
      learning_rate: Adam's learning rate.
      hidden: width of the generator's MLP.
      calibration_batches: training batches batch norm is recalibrated on per candidate.
      verbose: 1 prints a line when the hypernetwork is trained or loaded.
    """

    name = "hypernet"

    def __init__(
        self,
        steps: int = 1000,
        seed: int = 0,
        learning_rate: float = 1e-3,
        hidden: int = 64,
        calibration_batches: int = 4,
        verbose: int = 1,
    ):
        for what, v, low in (
            ("steps", steps, 1),
            ("seed", seed, 0),
            ("hidden", hidden, 1),
            ("calibration_batches", calibration_batches, 1),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"HyperNetEstimator: {what} must be an int >= {low}, got {v!r}")
        if not learning_rate > 0:
            raise ValueError(f"HyperNetEstimator: learning_rate must be > 0, got {learning_rate!r}")
        self.steps = steps
        self.seed = seed
        self.learning_rate = float(learning_rate)
        self.hidden = hidden
        self.calibration_batches = calibration_batches
        self.verbose = verbose
        self.net: HyperNet | None = None
        self.train_seconds = 0.0
        self._key: str | None = None

    def describe(self) -> str:
        return (
            f"hypernet: SMASH-style hypernetwork trained {self.steps} steps (seed {self.seed}); "
            f"trials scored with generated weights, not trained"
        )

    def settings(self, trial: TrialContext) -> dict[str, Any]:
        """What the saved hypernetwork depends on (a saved file of other settings is not
        reused)."""
        b = trial.bundle
        return {
            "space": trial.space.get_config(),
            "data": [getattr(b, "name", None), getattr(b, "seed", None), int(b.num_train)],
            "input_shape": list(b.input_shape),
            "num_classes": int(b.num_classes),
            "steps": self.steps,
            "seed": self.seed,
            "learning_rate": self.learning_rate,
            "hidden": self.hidden,
            "batch_size": int(trial.batch_size),
        }

    def hypernet(self, trial: TrialContext) -> HyperNet:
        """The trained hypernetwork of `trial`'s search: in memory, loaded, or trained now."""
        import time

        meta = self.settings(trial)
        key = json.dumps(meta, sort_keys=True)
        if self.net is not None and self._key == key:
            return self.net
        b = trial.bundle
        net = HyperNet(
            trial.space, b.input_shape, b.num_classes, b.mean, b.std, self.hidden, self.seed
        )
        path = None if trial.directory is None else os.path.join(trial.directory, FILE)
        loaded = False
        if path is not None and os.path.exists(path):
            try:
                loaded = net.load_arrays(path) == json.loads(key)
            except (OSError, ValueError, KeyError):
                loaded = False
        if loaded:
            if self.verbose:
                print(f"hypernet: loaded {path}", flush=True)
        else:
            x, y = b.numpy("train")
            t0 = time.perf_counter()
            losses = net.train(x, y, self.steps, trial.batch_size, self.learning_rate)
            self.train_seconds = time.perf_counter() - t0
            if path is not None:
                net.save_arrays(path, meta)
            if self.verbose:
                tail = float(np.mean(losses[-50:]))
                print(
                    f"hypernet: trained {self.steps} steps in {self.train_seconds:.1f} s "
                    f"(loss {losses[0]:.3f} -> {tail:.3f})" + (f"; saved {path}" if path else ""),
                    flush=True,
                )
        self.net, self._key = net, key
        return net

    def estimate(self, trial: TrialContext) -> Estimate:
        check_space(trial.space)
        net = self.hypernet(trial)
        b = trial.bundle
        x, y = b.numpy("valid")
        calibration = b.numpy("train", self.calibration_batches * trial.batch_size)[0]
        accuracy = net.score(trial.arch, x, y, calibration, trial.batch_size)
        return Estimate(accuracy, None, 0.0)
