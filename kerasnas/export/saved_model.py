"""A Keras classifier as a SavedModel with a ``serving_default`` signature.

The signature takes raw images ``images``: (batch, H, W, C) of the dataset's dtype (uint8
or float32) and returns ``{"probabilities": (batch, num_classes) float32}``. Everything the
model does to the raw images (e.g. its normalisation layer) is inside the graph, so the
directory serves with plain TensorFlow: ``tf.saved_model.load`` needs no kerasnas import.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

INPUT_DTYPES = ("float32", "uint8")
SIGNATURE = "serving_default"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"


def write(model: keras.Model, path: str, input_dtype: str = "float32", logits: bool = True) -> None:
    """Writes `model` to the SavedModel directory `path` (which must not exist).

    `logits`: whether the model outputs logits (a softmax is added) or probabilities.
    """
    if input_dtype not in INPUT_DTYPES:
        raise ValueError(f"input_dtype must be one of {INPUT_DTYPES}, got {input_dtype!r}")
    shape = (None, *model.inputs[0].shape[1:])

    def serve(images):
        out = model(tf.cast(images, tf.float32), training=False)
        return {OUTPUT_NAME: tf.nn.softmax(out, axis=-1) if logits else out}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE,
        fn=serve,
        input_signature=[tf.TensorSpec(shape, tf.as_dtype(input_dtype), name=INPUT_NAME)],
    )
    archive.write_out(path, verbose=False)


def predict(path: str, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Runs the ``serving_default`` signature of the SavedModel at `path` on `x`, casting
    `x` to the signature's dtype; returns probabilities (N, num_classes)."""
    fn = tf.saved_model.load(path).signatures[SIGNATURE]
    dtype = fn.structured_input_signature[1][INPUT_NAME].dtype
    out = [
        fn(**{INPUT_NAME: tf.constant(x[i : i + batch_size], dtype)})[OUTPUT_NAME].numpy()
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out, axis=0)
