"""``kerasnas-compare``: SNAS against DARTS, ENAS and random sampling with weight sharing on
the same cell space, each search retrained from scratch (absl flags).

  kerasnas-compare --output_dir=cmp                                  # the default experiment
  kerasnas-compare --strategies=snas,darts --seeds=2 --epochs=5 --output_dir=cmp2
  kerasnas-compare --output_dir=cmp --resume                         # finish a stopped one
  kerasnas-compare --budget=time --search_seconds=300 --output_dir=cmp3  # equal seconds

Every strategy gets the same supernet and the same number of supernet epochs (--epochs,
default 10), or with --budget=time the same seconds of search (--search_seconds, default
180; each strategy then does as many epochs as fit, --epochs an optional cap, and results
are not deterministic); each derived child is retrained for --retrain_epochs. Writes
comparison.csv, summary.json and the plots accuracy_vs_epoch.png, supernet_vs_child.png
and entropy_vs_epoch.png (the SNAS paper's Figures 9-11; with --budget=time the curves are
against seconds of search); each run's own output directory is under runs/. The job is
kerasnas.jobs.compare.
"""

from __future__ import annotations

from kerasnas.cli.command import Command
from kerasnas.jobs.compare import CompareSettings, run_comparison

_DEFAULT = CompareSettings(output_dir="")

COMMAND = Command("kerasnas-compare", __doc__ or "", required=("output_dir",))
FLAGS = COMMAND.flags
COMMAND.add_settings(_DEFAULT)
COMMAND.aliases.update(
    {"retrain.init_channels": "retrain_init_channels", "retrain.layers": "retrain_layers"}
)
COMMAND.groups = {
    "data": ("dataset", "valid_fraction", "test_fraction", "seeds"),
    "strategies and search space": (
        "strategies",
        "init_channels",
        "layers",
        "nodes",
        "ops",
        "darts_order",
        "a_lr",
    ),
    "budget": ("budget", "epochs", "search_seconds", "batch_size", "jobs"),
    "retraining": ("retrain_epochs", "retrain_init_channels", "retrain_layers"),
    "output": ("output_dir", "resume", "overwrite", "verbose", "verbosity"),
    "help": ("help", "helpfull"),
}
COMMAND.finalize()


def settings_from_flags() -> CompareSettings:
    """The parsed ``FLAGS`` as CompareSettings (the flags given over the defaults)."""
    return COMMAND.apply(_DEFAULT)


main, run = COMMAND.entry_points(lambda: run_comparison(settings_from_flags()))


if __name__ == "__main__":
    run()
