"""Export a Keras classifier to SavedModel and TFLite, verify every artefact, write a report.

Supported formats (:data:`FORMATS`), each checked against the Keras model on held-out
images before the export counts as done:

==================  ====================================  ===================================
format              file                                  passes when (:class:`Tolerances`)
==================  ====================================  ===================================
``saved_model``     ``saved_model/`` (signature            max |p - p_keras| <= 1e-4
                    ``serving_default``: raw images of
                    the dataset's dtype -> probabilities)
``tflite``          ``model.tflite`` (float32)            max |p - p_keras| <= 1e-4
``tflite_fp16``     ``model_fp16.tflite``                 max |p - p_keras| <= 1e-2
``tflite_dynamic``  ``model_dynamic.tflite``              accuracy >= Keras' - 0.02
``tflite_int8``     ``model_int8.tflite`` (full integer,  accuracy >= Keras' - 0.02
                    calibrated on training images)
==================  ====================================  ===================================

Without labels, a quantised format passes when its top-1 agrees with Keras' on >= 95% of
the images (near-ties of an undertrained model make agreement a poor test when labels
are available: a 1-epoch model agreed on 0.905 with equal accuracy).

p are class probabilities (every exported model ends in a softmax). TFLite models take raw
images as float32 (``tflite_int8`` with ``int8_io=True``: as int8, quantised with the input
tensor's scale and zero point), any batch size; :class:`~kerasnas.export.TFLiteModel` runs
them on raw images as the checks here do. ``export_report.json`` holds, per format: file,
size in bytes, parity figures, test accuracy, and the median latency of one ``invoke`` on one
image with the LiteRT interpreter (milliseconds, with the thread count).

The output directory appears only when every format has passed: the work is done in a
hidden staging directory beside it, renamed into place at the end.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np

from kerasnas import io
from kerasnas.errors import SettingError
from kerasnas.export import litert, saved_model
from kerasnas.names import EXPORT_FORMATS
from kerasnas.wording import count

FORMATS: dict[str, str] = EXPORT_FORMATS  # format -> file or directory it writes
_TFLITE_MODE = {
    "tflite": "float",
    "tflite_fp16": "float16",
    "tflite_dynamic": "dynamic",
    "tflite_int8": "int8",
}
QUANTIZED = ("tflite_dynamic", "tflite_int8")
REPORT = "export_report.json"


class ExportError(SettingError):
    """An export cannot be made: the message says which input is wrong."""


class VerificationError(ExportError):
    """An exported artefact does not match the Keras model within the tolerances."""


@dataclasses.dataclass(frozen=True)
class Tolerances:
    """Pass criteria. Differences are of class probabilities; accuracies are fractions."""

    float_max_abs_diff: float = 1e-4  # saved_model, tflite
    fp16_max_abs_diff: float = 1e-2  # tflite_fp16
    quantized_max_accuracy_drop: float = 0.02  # tflite_dynamic, tflite_int8: accuracy drop
    quantized_min_agreement: float = 0.95  # ... their top-1 agreement when no labels


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """``"tflite,tflite_int8"`` or a sequence -> a tuple of known format names, in order."""
    names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    names = [n for n in names if n]
    unknown = [n for n in names if n not in FORMATS]
    if unknown:
        raise ExportError(
            f"{{formats}}: unknown export format {unknown[0]!r}; expected some of "
            f"{', '.join(FORMATS)}"
        )
    return tuple(dict.fromkeys(names))


def load_model(path: str) -> keras.Model:
    """Loads a ``.keras`` file with a one-line error for a missing or unreadable file."""
    import kerasnas.layers  # noqa: F401  (registers kerasnas layers for deserialisation)

    if not os.path.isfile(path):
        raise ExportError(f"{{model}} {path!r}: no such file")
    if not path.endswith(".keras"):
        raise ExportError(f"{{model}} {path!r}: expected a Keras v3 '.keras' file")
    if not zipfile.is_zipfile(path):
        raise ExportError(f"{{model}} {path!r}: not a .keras archive (the file is not a zip)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as e:  # keras raises many types for a bad archive
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ExportError(
            f"{{model}} {path!r}: not a loadable Keras model ({type(e).__name__}: {first[:200]})"
        ) from None
    if not isinstance(model, keras.Model) or len(model.inputs) != 1:
        raise ExportError(f"{{model}} {path!r}: expected a Keras model with a single image input")
    return model


def _check_images(x: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != tuple(shape):
        want = ", ".join(str(d) for d in shape)
        raise ExportError(
            f"{what} must have shape (N, {want}) to match the model's input, got {x.shape}"
        )
    if len(x) == 0:
        raise ExportError(f"{what} is empty")
    if x.dtype.kind not in "biuf":
        raise ExportError(f"{what} must be numeric images, got dtype {x.dtype}")
    return x.astype(np.float32)


def _keras_outputs(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The model's outputs in inference mode, (N, K) float32."""
    import tensorflow as tf

    fn = tf.function(lambda b: model(b, training=False))
    out = [np.asarray(fn(tf.constant(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool(out.min() >= 0 and out.max() <= 1 and np.allclose(out.sum(-1), 1, atol=1e-4))


def _accuracy(p: np.ndarray, y: np.ndarray | None) -> float | None:
    return None if y is None else float((p.argmax(-1) == y).mean())


def _verify(
    fmt: str,
    p: np.ndarray,
    ref: np.ndarray,
    y: np.ndarray | None,
    keras_accuracy: float | None,
    tol: Tolerances,
) -> dict[str, Any]:
    """Parity figures of one format and whether they pass (see the module table)."""
    diff = float(np.abs(p - ref).max())
    agreement = float((p.argmax(-1) == ref.argmax(-1)).mean())
    accuracy = _accuracy(p, y)
    out: dict[str, Any] = {
        "max_abs_diff": diff,
        "top1_agreement": agreement,
        "accuracy": accuracy,
    }
    if fmt in QUANTIZED and accuracy is not None and keras_accuracy is not None:
        drop = keras_accuracy - accuracy
        out["accuracy_drop"] = drop
        checks = [(drop <= tol.quantized_max_accuracy_drop, "accuracy drop", drop)]
        criteria = f"accuracy_drop <= {tol.quantized_max_accuracy_drop}"
    elif fmt in QUANTIZED:  # no labels: agreement with the Keras model's top-1
        checks = [(agreement >= tol.quantized_min_agreement, "top-1 agreement", agreement)]
        criteria = f"top1_agreement >= {tol.quantized_min_agreement}"
    else:
        limit = tol.fp16_max_abs_diff if fmt == "tflite_fp16" else tol.float_max_abs_diff
        checks = [(diff <= limit, "max |diff|", diff)]
        criteria = f"max_abs_diff <= {limit}"
    out["criteria"] = criteria
    out["passed"] = all(ok for ok, _, _ in checks)
    out["failed"] = [f"{name} {value:.4g}" for ok, name, value in checks if not ok]
    return out


def export_model(
    model: keras.Model,
    output_dir: str,
    formats: str | Sequence[str] = ("saved_model", "tflite", "tflite_int8"),
    *,
    x_eval: np.ndarray,
    y_eval: np.ndarray | None = None,
    representative: np.ndarray | None = None,
    input_dtype: str = "float32",
    outputs: str = "auto",
    int8_io: bool = False,
    num_threads: int = 1,
    latency_runs: int = 50,
    tolerances: Tolerances = Tolerances(),
    overwrite: bool = False,
    source: str | None = None,
    dataset: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Exports `model` in each of `formats` into `output_dir`, verifies each, writes the
    report; returns the report (a dict, also ``output_dir/export_report.json``).

    Args:
      model: a single-input Keras classifier taking raw images (B, H, W, C).
      x_eval, y_eval: held-out raw images (N, H, W, C) and int labels (N,) for the parity
        checks and accuracies (`y_eval` optional).
      representative: training images (N, H, W, C) to calibrate ``tflite_int8``.
      input_dtype: dtype of the SavedModel signature's images, ``float32`` or ``uint8``.
      outputs: ``logits``, ``probabilities`` or ``auto`` (probabilities when the model's
        outputs on `x_eval` are in [0, 1] and sum to 1).
      int8_io: ``tflite_int8`` takes int8 images and returns int8 probabilities.
      num_threads: LiteRT interpreter threads for the latency figures.
      source, dataset: where the model and the images came from (recorded in the report).
    Raises:
      ExportError: bad arguments (nothing is written).
      VerificationError: a format failed its check (nothing is written).
    """
    formats = parse_formats(formats)
    if not formats:
        raise ExportError("no export format given")
    if input_dtype not in saved_model.INPUT_DTYPES:
        raise ExportError(
            f"input_dtype must be one of {saved_model.INPUT_DTYPES}, got {input_dtype!r}"
        )
    if outputs not in ("auto", "logits", "probabilities"):
        raise ExportError(f"outputs must be 'auto', 'logits' or 'probabilities', got {outputs!r}")
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ExportError(f"num_threads must be a positive int, got {num_threads!r}")
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if any(d is None for d in model.inputs[0].shape[1:]):
        raise ExportError(f"the model's input shape must be fixed, got {model.inputs[0].shape}")
    x_eval = _check_images(x_eval, shape, "evaluation images")
    if y_eval is not None:
        y_eval = np.asarray(y_eval)
        if y_eval.shape != (len(x_eval),):
            raise ExportError(
                f"evaluation labels must have shape ({len(x_eval)},), got {y_eval.shape}"
            )
    if "tflite_int8" in formats:
        if representative is None:
            raise ExportError("tflite_int8 needs a representative dataset (training images)")
        representative = _check_images(representative, shape, "representative dataset")
    output_dir = os.path.abspath(output_dir)
    io.lock_target(output_dir)  # a second export into it refuses; stale staging removed
    try:
        if os.path.exists(output_dir) and not (os.path.isdir(output_dir) and overwrite):
            if not os.path.isdir(output_dir) or os.listdir(output_dir):
                raise ExportError(
                    f"{{output_dir}} {output_dir!r} exists; choose a new directory or pass "
                    "{overwrite}"
                )

        raw = _keras_outputs(model, x_eval)
        logits = outputs == "logits" or (outputs == "auto" and not _looks_like_probabilities(raw))
        ref = _softmax(raw) if logits else raw
        keras_accuracy = _accuracy(ref, y_eval)
        report: dict[str, Any] = {
            "model": {
                "source": source,
                "input_shape": list(shape),
                "num_classes": int(ref.shape[-1]),
                "outputs": "logits" if logits else "probabilities",
                "params": int(model.count_params()),
            },
            "dataset": dataset,
            "eval_examples": len(x_eval),
            "keras_accuracy": keras_accuracy,
            "tolerances": dataclasses.asdict(tolerances),
            "latency": {
                "what": "median ms of one LiteRT Interpreter.invoke on one image",
                "num_threads": num_threads,
                "runs": latency_runs,
            },
            "formats": {},
        }

        parent = os.path.dirname(output_dir)
        os.makedirs(parent, exist_ok=True)
        base = os.path.basename(output_dir)
        staging = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes 0700; results are ordinary dirs
        try:
            sm_float = os.path.join(staging, ".float_saved_model")  # what TFLite converts
            t0 = time.perf_counter()
            saved_model.write(model, sm_float, "float32", logits)
            if "saved_model" in formats:
                if input_dtype == "float32":
                    shutil.copytree(sm_float, os.path.join(staging, FORMATS["saved_model"]))
                else:
                    saved_model.write(
                        model, os.path.join(staging, FORMATS["saved_model"]), input_dtype, logits
                    )
            log(f"export: SavedModel traced in {time.perf_counter() - t0:.1f} s")
            for fmt in formats:
                t0 = time.perf_counter()
                path = os.path.join(staging, FORMATS[fmt])
                entry: dict[str, Any] = {"file": FORMATS[fmt]}
                if fmt == "saved_model":
                    p = saved_model.predict(path, x_eval)
                    entry["size_bytes"] = _dir_size(path)
                    entry["input"] = f"{input_dtype} raw images"
                    entry["latency_ms"] = None
                else:
                    mode = _TFLITE_MODE[fmt]
                    flat = litert.convert_saved_model(
                        sm_float, mode, representative, int8_io and mode == "int8", shape
                    )
                    with open(path, "wb") as f:
                        f.write(flat)
                    p = litert.TFLiteModel(path, num_threads).predict(x_eval)
                    entry["size_bytes"] = len(flat)
                    entry["input"] = (
                        "int8 quantised raw images"
                        if int8_io and mode == "int8"
                        else "float32 raw images"
                    )
                    entry["latency_ms"] = litert.latency_ms(
                        flat, num_threads, runs=latency_runs, image=x_eval[0]
                    )
                    entry["num_threads"] = num_threads
                entry.update(_verify(fmt, p, ref, y_eval, keras_accuracy, tolerances))
                entry["seconds"] = round(time.perf_counter() - t0, 2)
                report["formats"][fmt] = entry
                log(_summary(fmt, entry))
                if not entry["passed"]:
                    raise VerificationError(
                        f"export format {fmt} failed verification: {'; '.join(entry['failed'])} "
                        f"(needs {entry['criteria']}); nothing was written to {output_dir}"
                    )
            shutil.rmtree(sm_float)
            report["passed"] = True
            io.write_json(os.path.join(staging, REPORT), report)
            if os.path.isdir(output_dir):  # empty, or overwrite was asked for
                shutil.rmtree(output_dir)
            os.replace(staging, output_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return report
    finally:
        io.release_output_dir(output_dir)


def _dir_size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, files in os.walk(path)
        for name in files
    )


def _summary(fmt: str, e: dict[str, Any]) -> str:
    parts = [f"{e['size_bytes']:,} bytes", f"max |diff| {e['max_abs_diff']:.2e}"]
    parts.append(f"top-1 agreement {e['top1_agreement']:.4f}")
    if e["accuracy"] is not None:
        parts.append(f"accuracy {e['accuracy']:.4f}")
    if e.get("latency_ms") is not None:
        parts.append(f"{e['latency_ms']:.3f} ms/image ({count(e['num_threads'], 'thread')})")
    return f"export {fmt}: {', '.join(parts)} -> {'passed' if e['passed'] else 'FAILED'}"


def export_for_dataset(
    model: keras.Model,
    output_dir: str,
    formats: str | Sequence[str],
    bundle,
    *,
    max_eval: int | None = 1000,
    representative: np.ndarray | None = None,
    input_dtype: str = "auto",
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`export_model` with its data taken from a :class:`kerasnas.data.DataBundle`:
    the first `max_eval` test images for the checks, and (unless `representative` is
    given) the first 200 training images for int8 calibration. `input_dtype` ``auto`` is
    ``uint8`` for 8-bit datasets (raw range 0..255), else ``float32``."""
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    if tuple(bundle.input_shape) != shape:
        raise ExportError(
            f"{{dataset}} {bundle.name} has images of shape {tuple(bundle.input_shape)}, "
            f"the model takes {shape}"
        )
    x_eval, y_eval = bundle.numpy("test", max_eval)
    if representative is None:
        representative, _ = bundle.numpy("train", litert.REPRESENTATIVE_SAMPLES)
    if input_dtype == "auto":
        input_dtype = "uint8" if tuple(bundle.raw_range) == (0.0, 255.0) else "float32"
    return export_model(
        model,
        output_dir,
        formats,
        x_eval=x_eval,
        y_eval=y_eval,
        representative=representative,
        input_dtype=input_dtype,
        dataset=bundle.name,
        **kwargs,
    )
