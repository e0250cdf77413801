"""TFLite conversion and the LiteRT interpreter: the one place kerasnas makes and runs
``.tflite`` files (export, parity checks, latency tables, and :class:`TFLiteModel` for
running an exported file on batches of raw images).

Conversion goes Keras model -> SavedModel (``model.export``) -> ``tf.lite.TFLiteConverter``.
Modes (:data:`MODES`):

- ``float``: float32 weights and activations;
- ``float16``: weights stored as float16 (dequantised to float32 when the model runs);
- ``dynamic``: dynamic-range quantisation (int8 weights, float activations);
- ``int8``: full integer quantisation calibrated on a representative dataset; with
  ``int8_io`` the input and output tensors are int8 too (else float32, quantised inside).

Latency is the median wall time of ``Interpreter.invoke`` on one image, in milliseconds.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasnas import native_log
from kerasnas.errors import SettingError

MODES = ("float", "float16", "dynamic", "int8")
REPRESENTATIVE_SAMPLES = 200  # images the int8 calibration sees at most


class ConversionError(SettingError):
    """A model cannot be converted: the message says what was wrong with the input."""


def _representative(data: np.ndarray, input_shape: tuple) -> Callable:
    data = np.asarray(data)
    if data.ndim != len(input_shape) + 1 or tuple(data.shape[1:]) != tuple(input_shape):
        raise ConversionError(
            f"representative data must have shape (N, {', '.join(map(str, input_shape))}) "
            f"to match the model's input, got {tuple(data.shape)}"
        )
    if len(data) == 0:
        raise ConversionError("representative data is empty")
    samples = data[:REPRESENTATIVE_SAMPLES].astype(np.float32)

    def gen():
        for image in samples:
            yield [image[None]]

    return gen


def convert_saved_model(
    saved_model_dir: str,
    mode: str = "float",
    representative: np.ndarray | None = None,
    int8_io: bool = False,
    input_shape: tuple[int, ...] | None = None,
) -> bytes:
    """Converts a SavedModel directory to a TFLite flatbuffer (bytes) in `mode`.

    `representative`: images of the model's input shape, (N, H, W, C) - required by
    ``int8``; `input_shape` (H, W, C) is read from the ``serving_default`` signature when
    not given. Raises ConversionError for a bad mode or representative data.
    """
    if mode not in MODES:
        raise ConversionError(f"TFLite mode must be one of {MODES}, got {mode!r}")
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        if representative is None:
            raise ConversionError("int8 conversion needs representative data")
        if input_shape is None:
            loaded = tf.saved_model.load(saved_model_dir)
            spec = loaded.signatures["serving_default"].structured_input_signature[1]
            (input_spec,) = spec.values()
            input_shape = tuple(input_spec.shape[1:])
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = _representative(representative, tuple(input_shape))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return _convert(converter, mode)


def _convert(converter, mode: str) -> bytes:
    """``converter.convert()``; its failure (pages of MLIR) becomes a one-line
    ConversionError naming the mode and the converter's first error."""
    try:
        with native_log.quiet():
            return converter.convert()
    except Exception as e:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise ConversionError(f"TFLite conversion ({mode}) failed: {converter_error(e)}") from None


def converter_error(error: BaseException) -> str:
    """The first meaningful line of a TFLite converter error (its message holds MLIR
    dumps and source locations), at most 300 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    chosen = next((line for line in lines if "error:" in line), lines[0] if lines else "")
    chosen = chosen.split("error:", 1)[-1].strip() or type(error).__name__
    return chosen[:300]


def convert_keras(
    model: keras.Model,
    mode: str = "float",
    representative: np.ndarray | None = None,
    int8_io: bool = False,
) -> bytes:
    """Converts a single-input Keras model to TFLite (via a temporary SavedModel)."""
    with tempfile.TemporaryDirectory(prefix="kerasnas_tflite_") as tmp:
        path = os.path.join(tmp, "saved_model")
        model.export(path, format="tf_saved_model", verbose=False)
        shape = tuple(model.inputs[0].shape[1:])
        return convert_saved_model(path, mode, representative, int8_io, shape)


def convert_keras_frozen(model: keras.Model, mode: str = "float") -> bytes:
    """Converts a single-input Keras model to TFLite without a SavedModel round trip.

    The model's inference function (``training=False``, batch dimension None as in
    :func:`convert_keras`) is traced once, its variables are frozen to constants and the
    graph goes to ``TFLiteConverter.from_concrete_functions``. The flatbuffer has the same
    TFLite ops as :func:`convert_keras` (batch norm folded, XNNPACK-ready) and takes about a
    tenth of the time (~0.1 s for one candidate op), which is what per-op latency tables
    need. Modes: ``float``, ``float16``, ``dynamic`` (``int8`` needs :func:`convert_keras`).
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    if mode not in MODES or mode == "int8":
        raise ConversionError(
            f"convert_keras_frozen: mode must be one of float, float16, dynamic, got {mode!r}"
        )
    if len(model.inputs) != 1:
        raise ConversionError(
            f"convert_keras_frozen: the model must have one input, it has {len(model.inputs)}"
        )
    from absl import logging as absl_logging

    spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [convert_variables_to_constants_v2(fn)], model
    )
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)  # the converter logs lines per call
    try:
        return _convert(converter, mode)
    finally:
        absl_logging.set_verbosity(verbosity)


def interpreter(tflite: bytes, num_threads: int = 1):
    """A LiteRT interpreter for the flatbuffer `tflite`, tensors not yet allocated."""
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=tflite, num_threads=num_threads)


def _is_quantized(detail: dict) -> bool:
    return np.dtype(detail["dtype"]) in (np.int8, np.uint8) and detail["quantization"][0] != 0


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if _is_quantized(detail):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if _is_quantized(detail):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


class TFLiteError(SettingError):
    """A ``.tflite`` file cannot be loaded, or cannot take the given images: the message
    names the file and what was expected."""


class TFLiteModel:
    """A ``.tflite`` classifier run with the LiteRT interpreter on batches of raw images.

    :meth:`predict` takes raw images (N, H, W, C) of any numeric dtype (what the Keras
    model takes: its normalisation is inside) and any batch size N, and returns the model's
    output as float32 (N, K): class probabilities for every file kerasnas exports. A model
    with integer input and output (``tflite_int8`` exported with ``int8_io``) gets its
    images quantised with the input tensor's scale and zero point, and its output
    dequantised. Batches: the input tensor is resized when its batch axis is dynamic (as
    in kerasnas' exports); a model with a fixed batch B gets the images B at a time.

    Args:
      path: a ``.tflite`` file.
      num_threads: LiteRT interpreter threads.

    Example:

    >>> model = TFLiteModel("deploy_int8/model_int8.tflite")
    >>> probabilities = model.predict(images)  # (N, num_classes) float32
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1) -> None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise TFLiteError(f"{path!r}: no such file")
        self._load(path, None, num_threads)

    @classmethod
    def from_bytes(
        cls, flatbuffer: bytes, num_threads: int = 1, name: str = "<flatbuffer>"
    ) -> TFLiteModel:
        """A TFLiteModel for an in-memory flatbuffer; `name` stands for the file in errors."""
        model = cls.__new__(cls)
        model._load(name, flatbuffer, num_threads)
        return model

    def _load(self, name: str, content: bytes | None, num_threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        if not isinstance(num_threads, int) or num_threads < 1:
            raise TFLiteError(f"num_threads must be a positive int, got {num_threads!r}")
        self.name = name
        try:
            if content is None:
                self._interp = Interpreter(model_path=name, num_threads=num_threads)
            else:
                self._interp = Interpreter(model_content=content, num_threads=num_threads)
        except (ValueError, RuntimeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise TFLiteError(f"{name!r}: not a TFLite model LiteRT can load ({first})") from None
        inputs, outputs = self._interp.get_input_details(), self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise TFLiteError(
                f"{name!r}: expected a model with one input and one output, it has "
                f"{len(inputs)} and {len(outputs)}"
            )
        (self._input,), (self._output,) = inputs, outputs
        signature = self._input.get("shape_signature", self._input["shape"])
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self._input["shape"][1:])
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])
        # None: any batch size (the input tensor is resized); else the model's fixed batch.
        self.batch_size: int | None = None if int(signature[0]) == -1 else int(signature[0])
        self._allocated: int | None = None

    @property
    def quantized_io(self) -> bool:
        """Whether the model takes and returns quantised integers (``int8_io``)."""
        return _is_quantized(self._input)

    def _allocate(self, batch: int) -> None:
        if self._allocated != batch:
            if self.batch_size is None:
                self._interp.resize_tensor_input(
                    self._input["index"], [batch, *self.input_shape], strict=True
                )
            with native_log.quiet():  # LiteRT announces its XNNPACK delegate here
                self._interp.allocate_tensors()
            self._input = self._interp.get_input_details()[0]
            self._output = self._interp.get_output_details()[0]
            self._allocated = batch

    def _check(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images)
        want = ", ".join(str(d) for d in self.input_shape)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            hint = " (one image: pass images[None])" if x.shape == self.input_shape else ""
            raise TFLiteError(
                f"{self.name!r} takes images of shape (N, {want}), got {x.shape}{hint}"
            )
        if x.dtype.kind not in "biuf":
            raise TFLiteError(
                f"{self.name!r} takes numeric images (any of uint8, int, float), got dtype "
                f"{x.dtype}"
            )
        return x

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """The model's float32 outputs (N, K) for raw `images` (N, H, W, C).

        `batch_size`: images per ``invoke`` when the batch axis is dynamic (else the
        model's fixed batch is used). Raises TFLiteError for images of the wrong shape.
        """
        x = self._check(images)
        step = self.batch_size or max(1, int(batch_size))
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start : start + step].astype(np.float32)
            n = len(chunk)
            if self.batch_size is not None and n < step:  # pad to the fixed batch
                pad = np.zeros((step - n, *self.input_shape), np.float32)
                chunk = np.concatenate([chunk, pad])
            self._allocate(len(chunk))
            self._interp.set_tensor(self._input["index"], _quantize(chunk, self._input))
            self._interp.invoke()
            outputs.append(
                _dequantize(self._interp.get_tensor(self._output["index"]), self._output)[:n]
            )
        if not outputs:
            return np.zeros((0, *self._output["shape"][1:]), np.float32)
        return np.concatenate(outputs, axis=0)

    def __repr__(self) -> str:
        shape = ", ".join(str(d) for d in self.input_shape)
        io = "int8 I/O" if self.quantized_io else f"{self.input_dtype} input"
        return f"TFLiteModel({self.name!r}, input (N, {shape}), {io})"


def predict(tflite: bytes, x: np.ndarray, batch_size: int = 64, num_threads: int = 1) -> np.ndarray:
    """Runs the TFLite flatbuffer on `x` (N, ...) in batches; returns float32 outputs (N, ...).

    See :class:`TFLiteModel` (integer inputs and outputs are (de)quantised).
    """
    return TFLiteModel.from_bytes(tflite, num_threads).predict(x, batch_size)


# a whole child's latency where it is compared with a target: the smallest of CHILD_BLOCKS
# medians of CHILD_RUNS invokes, CHILD_PAUSE seconds apart (see child_latency_ms)
CHILD_RUNS = 100
CHILD_BLOCKS = 5
CHILD_PAUSE = 0.02


def latency_ms(
    tflite: bytes,
    num_threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    image: np.ndarray | None = None,
) -> float:
    """Median milliseconds of one ``invoke`` on a single image (batch 1).

    `image`: one input of the model's shape without the batch axis (default: zeros).
    """
    interp = interpreter(tflite, num_threads)
    inp = interp.get_input_details()[0]
    shape = [1, *[int(d) for d in inp["shape"][1:]]]
    interp.resize_tensor_input(inp["index"], shape)
    with native_log.quiet():
        interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.zeros(shape, np.float32) if image is None else np.asarray(image, np.float32)[None]
    interp.set_tensor(inp["index"], _quantize(x, inp))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def child_latency_ms(tflite: bytes, num_threads: int = 1) -> float:
    """A whole model's latency in ms, robust to a busy machine: the smallest of
    ``CHILD_BLOCKS`` medians of ``CHILD_RUNS`` invokes each, ``CHILD_PAUSE`` s apart.
    Another process only ever adds time, and in bursts: measured beside a second search
    on 2 cores, one median of 300 invokes of the same digits child read 0.0506 and 0.0711
    ms; the smallest block median ignores the bursts that do not cover every block."""
    blocks = []
    for k in range(CHILD_BLOCKS):
        if k:
            time.sleep(CHILD_PAUSE)
        blocks.append(latency_ms(tflite, num_threads, runs=CHILD_RUNS))
    return min(blocks)
