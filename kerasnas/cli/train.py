"""``kerasnas-train``: retrain a genotype from scratch (absl flags); the job is
:mod:`kerasnas.jobs.retrain`.

  kerasnas-train --genotype=run/genotype.json --output_dir=retrain      # digits, small budget
  kerasnas-train --genotype=DARTS_V2 --dataset=tfds:cifar10 --init_channels=36 --layers=20 \\
      --epochs=600 --batch_size=96 --auxiliary --drop_path=0.2 --cutout=16 --output_dir=c10
  kerasnas-train --genotype=run/genotype.json --output_dir=retrain --resume   # continue

``kerasnas-train --helpfull`` lists every flag.
"""

from __future__ import annotations

from kerasnas.cli.command import Command
from kerasnas.jobs.settings import RetrainSettings

_DEFAULT = RetrainSettings(genotype="", output_dir="")

COMMAND = Command("kerasnas-train", __doc__ or "", required=("genotype", "output_dir"))
FLAGS = COMMAND.flags
COMMAND.add_settings(_DEFAULT)
COMMAND.add_settings(
    _DEFAULT.retrain,
    prefix="retrain.",
    rename={"w_lr": "lr"},
    hide=("w_lr_min",),
    help={
        "w_lr": "Initial learning rate of SGD (momentum 0.9, weight decay 3e-4, gradient norm "
        "clipped to 5), cosine to 0 over the epochs (papers: 0.025).",
        "seed": "Seed of data split, initialisation, drop-path, cutout.",
    },
)
COMMAND.groups = {
    "architecture": ("genotype", "init_channels", "layers", "auxiliary"),
    "data": ("dataset", "valid_fraction", "test_fraction", "seed", "cutout"),
    "optimisation": (
        "epochs",
        "time_budget",
        "batch_size",
        "lr",
        "auxiliary_weight",
        "drop_path",
        "jit_compile",
    ),
    "output": ("output_dir", "resume", "overwrite", "verbose", "verbosity"),
    "help": ("help", "helpfull"),
}
COMMAND.finalize()


def settings_from_flags() -> RetrainSettings:
    """The parsed ``FLAGS`` as RetrainSettings (the flags given over the defaults)."""
    return COMMAND.apply(_DEFAULT)


def _run() -> None:
    from kerasnas.jobs.retrain import run_train

    run_train(settings_from_flags())


main, run = COMMAND.entry_points(_run, check=lambda: settings_from_flags().validate())


if __name__ == "__main__":
    run()
