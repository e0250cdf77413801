"""The names settings choose from: candidate ops, costs, penalty forms and estimators,
distributions, export formats, search spaces. A module of constants only, importable
without TensorFlow, so that the commands can define and check their flags before
TensorFlow is imported; the modules that implement these names import them from here."""

from __future__ import annotations

# the 8 candidate ops of DARTS/SNAS (kerasnas.ops)
PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

# costs of a network (kerasnas.resource): counted from the layers, or measured (latency)
ANALYTIC: tuple[str, ...] = ("params", "flops", "mac")
RESOURCES: tuple[str, ...] = (*ANALYTIC, "latency")
# the SNAS resource penalty: log(C) or C; its gradient estimator
PENALTY_FORMS: tuple[str, ...] = ("log", "linear")
ESTIMATORS: tuple[str, ...] = ("reparam", "score", "expected")

# tf.distribute strategies of a one-shot search (kerasnas.distribute)
DISTRIBUTIONS: tuple[str, ...] = ("none", "mirrored", "multi_worker")

# export formats and the file or directory each writes (kerasnas.export)
EXPORT_FORMATS: dict[str, str] = {
    "saved_model": "saved_model",
    "tflite": "model.tflite",
    "tflite_fp16": "model_fp16.tflite",
    "tflite_dynamic": "model_dynamic.tflite",
    "tflite_int8": "model_int8.tflite",
}

# discrete search spaces of trial-based strategies (kerasnas.search_spaces.SPACES)
SEARCH_SPACES: tuple[str, ...] = ("cell", "metaqnn", "nasrl")

# DARTS' architecture-gradient orders
DARTS_ORDERS: tuple[int, ...] = (1, 2)
# batch norm of a scored weight-sharing child (kerasnas.trainers.enas)
CHILD_BN: tuple[str, ...] = ("recalibrate", "batch", "moving")
# a trial's child optimizer and the costs of MnasNet's reward (kerasnas.multitrial.runner)
TRIAL_OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
TRIAL_RESOURCES: tuple[str, ...] = ("params", "flops")
