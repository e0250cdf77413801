"""``kerasnas-pareto``: the accuracy-cost front in one command, one cost-target search per
point (absl flags).

  kerasnas-pareto --output_dir=front                         # 5 params targets over the space
  kerasnas-pareto --targets=params:20k,30k,45k,70k,110k --output_dir=front
  kerasnas-pareto --targets=latency:0.02ms,0.03ms,0.045ms,0.065ms,0.09ms --output_dir=lat_front
  kerasnas-pareto --output_dir=front --resume                # finish a stopped front

Every point is a kerasnas-search --target run (SNAS by default, or --strategy=darts), its
child exported to float TFLite and checked, then retrained from scratch for
--retrain_epochs (--retrain_seeds times, the front judged on the mean); --jobs searches
run at once. Writes pareto.csv, pareto.png and
pareto.json; each point's directory is under points/. The job is kerasnas.jobs.pareto.
"""

from __future__ import annotations

from kerasnas.cli.command import Command
from kerasnas.jobs.pareto import ParetoSettings, run_pareto

_DEFAULT = ParetoSettings(output_dir="")

COMMAND = Command("kerasnas-pareto", __doc__ or "", required=("output_dir",))
FLAGS = COMMAND.flags
COMMAND.add_settings(_DEFAULT)
COMMAND.groups = {
    "targets": ("targets", "resource", "points", "lambdas", "strategy"),
    "data": ("dataset", "valid_fraction", "test_fraction", "seed"),
    "search space": ("init_channels", "layers", "nodes", "ops"),
    "budget": (
        "epochs",
        "batch_size",
        "a_lr",
        "target_lr",
        "retrain_epochs",
        "retrain_seeds",
        "jobs",
    ),
    "output": ("output_dir", "resume", "overwrite", "verbose", "verbosity"),
    "help": ("help", "helpfull"),
}
COMMAND.finalize()


def settings_from_flags() -> ParetoSettings:
    """The parsed ``FLAGS`` as ParetoSettings (the flags given over the defaults)."""
    return COMMAND.apply(_DEFAULT)


main, run = COMMAND.entry_points(lambda: run_pareto(settings_from_flags()))


if __name__ == "__main__":
    run()
