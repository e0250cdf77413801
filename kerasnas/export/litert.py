"""TFLite conversion and the LiteRT interpreter: the one place kerasnas makes and runs
``.tflite`` files (export, parity checks, latency tables).

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


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] in (np.int8, np.uint8):
        scale, zero = detail["quantization"]
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def predict(tflite: bytes, x: np.ndarray, batch_size: int = 64, num_threads: int = 1) -> np.ndarray:
    """Runs the TFLite model on `x` (N, ...) in batches; returns float32 outputs (N, ...).

    Integer inputs and outputs are (de)quantised with the tensors' own parameters.
    """
    interp = interpreter(tflite, num_threads)
    inp = interp.get_input_details()[0]
    outputs = []
    allocated = None
    for start in range(0, len(x), batch_size):
        chunk = np.asarray(x[start : start + batch_size])
        if allocated != len(chunk):
            interp.resize_tensor_input(inp["index"], [len(chunk), *chunk.shape[1:]])
            interp.allocate_tensors()
            allocated = len(chunk)
            inp = interp.get_input_details()[0]
            out = interp.get_output_details()[0]
        interp.set_tensor(inp["index"], _quantize(chunk.astype(np.float32), inp))
        interp.invoke()
        outputs.append(_dequantize(interp.get_tensor(out["index"]), out))
    return np.concatenate(outputs, axis=0)


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
