"""Export searched models: SavedModel and TFLite (float, float16, dynamic range, int8), each
verified against the Keras model, with a report (see :mod:`kerasnas.export.exporter`);
:class:`TFLiteModel` runs an exported ``.tflite`` file on batches of raw images."""

from kerasnas.export.exporter import (
    FORMATS,
    REPORT,
    ExportError,
    Tolerances,
    VerificationError,
    export_for_dataset,
    export_model,
    load_model,
    parse_formats,
)
from kerasnas.export.litert import TFLiteError, TFLiteModel

__all__ = [
    "FORMATS",
    "REPORT",
    "ExportError",
    "TFLiteError",
    "TFLiteModel",
    "Tolerances",
    "VerificationError",
    "export_for_dataset",
    "export_model",
    "load_model",
    "parse_formats",
]
