"""``kerasnas-train``: retrain a genotype from scratch (absl flags); the job is
:mod:`kerasnas.jobs.retrain`.

  kerasnas-train --genotype=run/genotype.json --output_dir=retrain      # digits, small budget
  kerasnas-train --genotype=DARTS_V2 --dataset=tfds:cifar10 --init_channels=36 --layers=20 \\
      --epochs=600 --batch_size=96 --auxiliary --drop_path=0.2 --cutout=16 --output_dir=c10
  kerasnas-train --genotype=run/genotype.json --output_dir=retrain --resume   # continue

``kerasnas-train --helpfull`` lists every flag.
"""

from __future__ import annotations

import sys

from kerasnas.cli.command import Command
from kerasnas.jobs.retrain import RetrainSettings, TrainError, default_retrain_config, run_train

# -- command line -------------------------------------------------------------------------------

_DEFAULT = default_retrain_config()
_SETTINGS = RetrainSettings(genotype="", output_dir="")

COMMAND = Command("kerasnas-train", __doc__ or "", required=("genotype", "output_dir"))
FLAGS = COMMAND.flags
_define = COMMAND.define


_define(
    "string",
    "genotype",
    None,
    "The architecture: a genotype JSON file (e.g. a search's genotype.json; the DARTS flat "
    "form is read too) or DARTS_V1 / DARTS_V2 (the published cells). Required.",
)
_define(
    "string",
    "output_dir",
    None,
    "Directory for model.keras, metrics, history, TensorBoard logs and checkpoints. Required.",
)
_define(
    "string",
    "dataset",
    _SETTINGS.dataset,
    "digits (bundled), tfds:<name> (e.g. tfds:cifar10, must be prepared locally) or "
    "npz:<path> (arrays x, y).",
)
_define(
    "integer",
    "init_channels",
    _SETTINGS.init_channels,
    "C: channels of the first cells (papers: 36).",
    lower_bound=2,
)
_define(
    "integer",
    "layers",
    _SETTINGS.layers,
    "L: number of cells, reductions at L//3 and 2L//3 (papers: 20).",
    lower_bound=3,
)
_define(
    "boolean",
    "auxiliary",
    _SETTINGS.auxiliary,
    "Train with DARTS' auxiliary head after cell 2L//3 (papers: on). It is left out of "
    "model.keras.",
)
_define(
    "float",
    "auxiliary_weight",
    _DEFAULT.auxiliary_weight,
    "Weight of the auxiliary head's loss (papers: 0.4).",
    lower_bound=0.0,
)
_define(
    "float",
    "drop_path",
    _DEFAULT.drop_path,
    "Largest drop-path probability; epoch e (0-based) uses drop_path * e / epochs, as DARTS' "
    "train.py (papers: 0.2). 0 = off.",
    lower_bound=0.0,
    upper_bound=0.99,
)
_define(
    "integer",
    "cutout",
    _DEFAULT.cutout,
    "Cutout square side in pixels on training images, 0 = off (papers: 16 on 32x32 CIFAR).",
    lower_bound=0,
)
_define("integer", "epochs", _DEFAULT.epochs, "Training epochs (papers: 600).", lower_bound=1)
_define("integer", "batch_size", _DEFAULT.batch_size, "Minibatch size (papers: 96).", lower_bound=1)
_define(
    "float",
    "lr",
    _DEFAULT.w_lr,
    "Initial learning rate of SGD (momentum 0.9, weight decay 3e-4, gradient norm clipped to "
    "5), cosine to 0 over the epochs (papers: 0.025).",
    lower_bound=0.0,
)
_define("float", "valid_fraction", _SETTINGS.valid_fraction, "Fraction held out for validation.")
_define(
    "float",
    "test_fraction",
    _SETTINGS.test_fraction,
    "Fraction held out for test (when the dataset has no test split).",
)
_define("boolean", "jit_compile", _DEFAULT.jit_compile, "Compile the training step with XLA.")
_define("integer", "seed", _DEFAULT.seed, "Seed of data split, initialisation, drop-path, cutout.")
_define("boolean", "resume", False, "Continue the run checkpointed in --output_dir.")
_define("boolean", "overwrite", False, "Delete what --output_dir holds and start afresh.")
_define("integer", "verbose", 1, "0: quiet; 1: progress bar and a line per epoch.")


def settings_from_flags() -> RetrainSettings:
    """The parsed ``FLAGS`` as RetrainSettings."""
    retrain = default_retrain_config(
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        w_lr=FLAGS.lr,
        auxiliary_weight=FLAGS.auxiliary_weight,
        drop_path=FLAGS.drop_path,
        cutout=FLAGS.cutout,
        jit_compile=FLAGS.jit_compile,
        seed=FLAGS.seed,
    )
    return RetrainSettings(
        genotype=FLAGS.genotype or "",
        output_dir=FLAGS.output_dir or "",
        dataset=FLAGS.dataset,
        init_channels=FLAGS.init_channels,
        layers=FLAGS.layers,
        auxiliary=FLAGS.auxiliary,
        valid_fraction=FLAGS.valid_fraction,
        test_fraction=FLAGS.test_fraction,
        resume=FLAGS.resume,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        retrain=retrain,
    )


def main(argv: list[str]) -> int:
    """Parses `argv` (program name first) and runs; returns the exit code (2: bad input)."""
    code = COMMAND.parse(argv)
    if code is not None:
        return code
    from kerasnas.data import DataError

    try:
        run_train(settings_from_flags())
    except (TrainError, DataError) as e:
        return COMMAND.error(str(e))
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
