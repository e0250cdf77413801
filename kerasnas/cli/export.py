"""``kerasnas-export``: a ``.keras`` classifier -> verified SavedModel / TFLite files.

  kerasnas-export --model=run/child.keras --output_dir=deploy
  kerasnas-export --model=run/child.keras --output_dir=deploy --formats=tflite_int8 --int8_io

The checks use the test split of ``--dataset`` (by default the dataset and seed recorded in
``metrics.json`` beside the model, as ``kerasnas-search`` and ``kerasnas-train`` write it;
else ``digits``, seed 0). Writes the files and ``export_report.json`` into ``--output_dir``
only when every format passes; see :mod:`kerasnas.export.exporter` for the criteria.
"""

from __future__ import annotations

import json
import os

from absl import flags

from kerasnas.cli.command import Command
from kerasnas.names import EXPORT_FORMATS as FORMATS

COMMAND = Command("kerasnas-export", __doc__ or "", required=("model", "output_dir"))
FLAGS = COMMAND.flags

flags.DEFINE_string(
    "model", None, "The .keras model to export (raw images -> logits). Required.", flag_values=FLAGS
)
flags.DEFINE_string(
    "output_dir", None, "New directory for the exported files. Required.", flag_values=FLAGS
)
flags.DEFINE_list(
    "formats",
    list(FORMATS),
    f"Formats, comma separated, some of: {', '.join(FORMATS)}.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "dataset",
    None,
    "Images for the checks, accuracy and int8 calibration: digits, tfds:<name> or npz:<path>. "
    "Default: the dataset in metrics.json beside --model, else digits.",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "seed",
    None,
    "Split seed of --dataset. Default: metrics.json's beside --model, else 0.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "representative",
    None,
    "A .npz file whose array 'x' (N, H, W, C) calibrates tflite_int8 "
    "(default: 200 training images of --dataset).",
    flag_values=FLAGS,
)
flags.DEFINE_boolean(
    "int8_io", False, "tflite_int8 takes int8 images and returns int8 output.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "input_dtype",
    "auto",
    ["auto", "float32", "uint8"],
    "dtype of the SavedModel's images (auto: uint8 for 8-bit datasets, else float32).",
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "num_threads", 1, "LiteRT threads for latency figures.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_integer(
    "max_eval", 1000, "Test images used for the checks.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_boolean("overwrite", False, "Replace an existing --output_dir.", flag_values=FLAGS)
flags.DEFINE_integer("verbose", 1, "0: quiet; 1: a line per format.", flag_values=FLAGS)


COMMAND.groups = {
    "model and formats": ("model", "formats", "int8_io", "input_dtype"),
    "checks": ("dataset", "seed", "representative", "max_eval", "num_threads"),
    "output": ("output_dir", "overwrite", "verbose", "verbosity"),
    "help": ("help", "helpfull"),
}


def _recorded(model_path: str) -> dict:
    """Dataset settings that the run which wrote `model_path` recorded, if any."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            settings = json.load(f).get("settings", {})
    except (OSError, ValueError, AttributeError):
        return {}
    seed = settings.get("snas", {}).get("seed", settings.get("seed"))
    out = {k: settings[k] for k in ("dataset", "valid_fraction", "test_fraction") if k in settings}
    if isinstance(seed, int):
        out["seed"] = seed
    return out


def _representative(path: str):
    import numpy as np

    from kerasnas.export.exporter import ExportError

    try:
        with np.load(path) as npz:
            if "x" not in npz.files:
                raise ExportError(f"{{representative}} {path!r}: no array 'x' (has {npz.files})")
            return npz["x"]
    except (OSError, ValueError) as e:
        raise ExportError(f"{{representative}} {path!r}: cannot read a .npz file ({e})") from None


def export_from_flags() -> None:
    """Exports the model of the parsed flags (see the module doc)."""
    from kerasnas import data as data_lib
    from kerasnas import summary
    from kerasnas.export.exporter import ExportError, export_for_dataset, load_model, parse_formats

    log = print if FLAGS.verbose else (lambda *a, **k: None)
    formats = parse_formats(FLAGS.formats)
    out = os.path.abspath(FLAGS.output_dir)
    if os.path.exists(out) and not FLAGS.overwrite:
        raise ExportError(
            f"{{output_dir}} {out!r} exists; choose a new directory or pass {{overwrite}}"
        )
    representative = _representative(FLAGS.representative) if FLAGS.representative else None
    model = load_model(FLAGS.model)
    shape = tuple(model.inputs[0].shape[1:])
    if representative is not None and tuple(representative.shape[1:]) != shape:
        raise ExportError(
            f"{{representative}} {FLAGS.representative!r}: 'x' has shape "
            f"{representative.shape}, the model takes (N, {', '.join(map(str, shape))})"
        )
    recorded = _recorded(FLAGS.model)
    spec = FLAGS.dataset or recorded.get("dataset", "digits")
    seed = FLAGS.seed if FLAGS.seed is not None else recorded.get("seed", 0)
    bundle = data_lib.load(
        spec,
        seed=seed,
        valid_fraction=recorded.get("valid_fraction", 0.2),
        test_fraction=recorded.get("test_fraction", 0.2),
    )
    log(f"export {FLAGS.model} -> {out}: {', '.join(formats)}; checks on {spec} (seed {seed})")
    report = export_for_dataset(
        model,
        out,
        formats,
        bundle,
        max_eval=FLAGS.max_eval,
        representative=representative,
        input_dtype=FLAGS.input_dtype,
        int8_io=FLAGS.int8_io,
        num_threads=FLAGS.num_threads,
        overwrite=FLAGS.overwrite,
        source=os.path.abspath(FLAGS.model),
        log=log,
    )
    log("\n" + summary.export(report, FLAGS.output_dir))


main, run = COMMAND.entry_points(export_from_flags)


if __name__ == "__main__":
    run()
