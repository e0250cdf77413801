"""``kerasnas-compare``: SNAS against DARTS, ENAS and random search on the same cell space,
each search retrained from scratch (absl flags).

  kerasnas-compare --output_dir=cmp                                  # the default experiment
  kerasnas-compare --strategies=snas,darts --seeds=2 --epochs=5 --output_dir=cmp2
  kerasnas-compare --output_dir=cmp --resume                         # finish a stopped one

Every strategy gets the same supernet and the same number of supernet epochs; each derived
child is retrained for --retrain_epochs. Writes comparison.csv, summary.json and the plots
accuracy_vs_epoch.png, supernet_vs_child.png and entropy_vs_epoch.png (the SNAS paper's
Figures 9-11); each run's own output directory is under runs/. See
:mod:`kerasnas.jobs.compare`.
"""

from __future__ import annotations

import sys

from kerasnas import ops as ops_lib
from kerasnas.cli.command import Command
from kerasnas.jobs.compare import STRATEGIES, CompareSettings

_DEFAULT = CompareSettings(output_dir="")

COMMAND = Command("kerasnas-compare", __doc__ or "", required=("output_dir",))
FLAGS = COMMAND.flags
for _kind, _name, _default, _help, _kwargs in (
    ("string", "output_dir", None, "Directory of the comparison. Required.", {}),
    (
        "list",
        "strategies",
        list(_DEFAULT.strategies),
        f"Some of {', '.join(STRATEGIES)} (random: uniform sampling with weight sharing).",
        {},
    ),
    ("integer", "seeds", _DEFAULT.seeds, "Seeds per strategy (0..seeds-1).", {"lower_bound": 1}),
    ("string", "dataset", _DEFAULT.dataset, "digits, tfds:<name> or npz:<path>.", {}),
    ("integer", "epochs", _DEFAULT.epochs, "Supernet epochs of every search.", {"lower_bound": 1}),
    ("integer", "batch_size", _DEFAULT.batch_size, "Minibatch size.", {"lower_bound": 1}),
    ("integer", "init_channels", _DEFAULT.init_channels, "C of the supernet.", {"lower_bound": 2}),
    ("integer", "layers", _DEFAULT.layers, "L cells of the supernet.", {"lower_bound": 3}),
    ("integer", "nodes", _DEFAULT.nodes, "N nodes per cell.", {"lower_bound": 1}),
    ("list", "ops", list(_DEFAULT.ops), "Candidate ops (enas, random need 'none').", {}),
    ("integer", "darts_order", _DEFAULT.darts_order, "DARTS order: 1 or 2.", {}),
    ("float", "a_lr", _DEFAULT.a_lr, "Architecture learning rate of SNAS and DARTS.", {}),
    (
        "integer",
        "retrain_epochs",
        _DEFAULT.retrain_epochs,
        "Epochs of retraining each child from scratch.",
        {"lower_bound": 1},
    ),
    (
        "integer",
        "retrain_init_channels",
        _DEFAULT.retrain_init_channels,
        "C of the retrained network.",
        {"lower_bound": 2},
    ),
    (
        "integer",
        "retrain_layers",
        _DEFAULT.retrain_layers,
        "L of the retrained network.",
        {"lower_bound": 3},
    ),
    (
        "integer",
        "jobs",
        _DEFAULT.jobs,
        "Runs at once; with more than 1, each uses one thread.",
        {"lower_bound": 1},
    ),
    ("boolean", "resume", False, "Finish the comparison in --output_dir.", {}),
    ("boolean", "overwrite", False, "Delete what --output_dir holds first.", {}),
    ("integer", "verbose", 1, "0: quiet; 1: a line per finished run.", {}),
):
    COMMAND.define(_kind, _name, _default, _help, **_kwargs)
COMMAND.validator(
    "ops",
    lambda names: bool(names) and all(n in ops_lib.registered_ops() for n in names),
    f"each op must be one of: {', '.join(ops_lib.registered_ops())}",
)
COMMAND.validator("a_lr", lambda v: v > 0, "must be > 0")
COMMAND.validator("darts_order", lambda v: v in (1, 2), "must be 1 or 2")


def settings_from_flags() -> CompareSettings:
    return CompareSettings(
        output_dir=FLAGS.output_dir,
        strategies=tuple(FLAGS.strategies),
        seeds=FLAGS.seeds,
        dataset=FLAGS.dataset,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        init_channels=FLAGS.init_channels,
        layers=FLAGS.layers,
        nodes=FLAGS.nodes,
        ops=tuple(FLAGS.ops),
        darts_order=FLAGS.darts_order,
        a_lr=FLAGS.a_lr,
        retrain_epochs=FLAGS.retrain_epochs,
        retrain_init_channels=FLAGS.retrain_init_channels,
        retrain_layers=FLAGS.retrain_layers,
        jobs=FLAGS.jobs,
        resume=FLAGS.resume,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
    )


def main(argv: list[str]) -> int:
    """Parses `argv` (program name first) and runs; returns the exit code (2: bad input or
    a failed run)."""
    code = COMMAND.parse(argv)
    if code is not None:
        return code
    from kerasnas.jobs.compare import CompareError, run_comparison

    try:
        run_comparison(settings_from_flags())
    except CompareError as e:
        return COMMAND.error(str(e))
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
