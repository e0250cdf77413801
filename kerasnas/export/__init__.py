"""Export searched models: SavedModel and TFLite (float, float16, dynamic range, int8), each
verified against the Keras model, with a report (see :mod:`kerasnas.export.exporter`)."""

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

__all__ = [
    "FORMATS",
    "REPORT",
    "ExportError",
    "Tolerances",
    "VerificationError",
    "export_for_dataset",
    "export_model",
    "load_model",
    "parse_formats",
]
