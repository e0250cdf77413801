"""``kerasnas-search``: an SNAS search from the command line (absl flags).

  kerasnas-search --output_dir=run                      # digits, default budget
  kerasnas-search --dataset=tfds:cifar10 --init_channels=16 --layers=8 --output_dir=c10
  kerasnas-search --output_dir=run --resume             # continue a stopped search

``kerasnas-search --helpfull`` lists every flag. Outputs: see :mod:`kerasnas.pipeline`.
"""

from __future__ import annotations

import sys

from absl import flags

from kerasnas import ops as ops_lib
from kerasnas import resource
from kerasnas.cli import Command
from kerasnas.pipeline import DEFAULT_EXPORT, default_snas_config

_DEFAULT = default_snas_config()

COMMAND = Command("kerasnas-search", __doc__ or "", required=("output_dir",))
FLAGS = COMMAND.flags

flags.DEFINE_string(
    "output_dir",
    None,
    "Directory for the genotype, child model, metrics, TensorBoard logs and checkpoints. Required.",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "dataset",
    "digits",
    "digits (bundled), tfds:<name> (e.g. tfds:cifar10, "
    "must be prepared locally) or npz:<path> (arrays x, y).",
    flag_values=FLAGS,
)
flags.DEFINE_integer("epochs", _DEFAULT.epochs, "Search epochs.", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer(
    "batch_size",
    _DEFAULT.batch_size,
    "Minibatch size (weights and logits share each batch).",
    lower_bound=1,
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "init_channels", 8, "C: channels of the first cells.", lower_bound=2, flag_values=FLAGS
)
flags.DEFINE_integer(
    "layers",
    5,
    "L: number of cells (reductions at L//3 and 2L//3).",
    lower_bound=3,
    flag_values=FLAGS,
)
flags.DEFINE_integer(
    "nodes", 4, "N: intermediate nodes per cell.", lower_bound=1, flag_values=FLAGS
)
flags.DEFINE_list(
    "ops", list(ops_lib.PRIMITIVES), "Candidate ops, comma separated.", flag_values=FLAGS
)
flags.DEFINE_enum(
    "relaxation",
    "gumbel",
    ["gumbel", "gumbel_hard"],
    "gumbel: SNAS soft sample (all ops run); gumbel_hard: straight-through one-hot "
    "(one op per edge runs).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "resource",
    "params",
    list(resource.RESOURCES),
    "Cost the penalty charges: trainable params, mult-adds, memory access, or latency "
    "(ms, a LiteRT table measured on this machine and cached, see --latency_cache).",
    flag_values=FLAGS,
)
flags.DEFINE_string(
    "latency_cache",
    None,
    "Directory of the --resource=latency tables (default $KERASNAS_CACHE/latency, "
    "else ~/.cache/kerasnas/latency).",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "resource_lambda",
    0.0,
    "Weight of the resource penalty (0: none).",
    lower_bound=0.0,
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "resource_form",
    "log",
    list(resource.FORMS),
    "Penalise log(C) or C (in millions).",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "resource_estimator",
    "reparam",
    list(resource.ESTIMATORS),
    "Gradient of the penalty: reparameterised, score function, or exact expectation.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "derive",
    "argmax",
    ["argmax", "top2"],
    "argmax: SNAS child (every edge its most likely op, none deletes it; inherits "
    "weights). top2: DARTS rule (2 inputs per node; fresh weights).",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "temperature_start",
    _DEFAULT.temperature_start,
    "Gumbel-softmax temperature at the first epoch.",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "temperature_end",
    _DEFAULT.temperature_end,
    "Temperature at the last epoch (linear schedule).",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "w_lr", _DEFAULT.w_lr, "Weight learning rate (SGD, cosine to w_lr_min).", flag_values=FLAGS
)
flags.DEFINE_float("w_lr_min", _DEFAULT.w_lr_min, "Final weight learning rate.", flag_values=FLAGS)
flags.DEFINE_float(
    "a_lr",
    _DEFAULT.a_lr,
    "Architecture-logit learning rate (Adam). The SNAS paper uses 3e-4 over ~10^5 steps; "
    "a digits search has ~500, hence the larger default.",
    flag_values=FLAGS,
)
flags.DEFINE_float(
    "valid_fraction", 0.2, "Fraction of the data held out for validation.", flag_values=FLAGS
)
flags.DEFINE_float(
    "test_fraction",
    0.2,
    "Fraction held out for test (when the dataset has no test split).",
    flag_values=FLAGS,
)
flags.DEFINE_list(
    "export",
    list(DEFAULT_EXPORT),
    "Export the child into <output_dir>/export, each format verified against child.keras: "
    "some of saved_model, tflite, tflite_fp16, tflite_dynamic, tflite_int8; empty: none.",
    flag_values=FLAGS,
)
flags.DEFINE_boolean("jit_compile", False, "Compile the training step with XLA.", flag_values=FLAGS)
flags.DEFINE_integer(
    "seed", 0, "Seed of data split, initialisation and Gumbel noise.", flag_values=FLAGS
)
flags.DEFINE_boolean(
    "resume", False, "Continue the search checkpointed in --output_dir.", flag_values=FLAGS
)
flags.DEFINE_boolean(
    "overwrite", False, "Delete what --output_dir holds and start afresh.", flag_values=FLAGS
)
flags.DEFINE_integer(
    "verbose", 1, "0: quiet; 1: progress bar and a line per epoch.", flag_values=FLAGS
)

flags.register_validator(
    "ops",
    lambda names: bool(names) and all(n in ops_lib.registered_ops() for n in names),
    message=f"each op must be one of: {', '.join(ops_lib.registered_ops())}",
    flag_values=FLAGS,
)
flags.register_validator(
    "temperature_start", lambda v: v > 0, message="must be > 0", flag_values=FLAGS
)
flags.register_validator(
    "temperature_end", lambda v: v > 0, message="must be > 0", flag_values=FLAGS
)
flags.register_validator(
    "valid_fraction", lambda v: 0 < v < 1, message="must be in (0, 1)", flag_values=FLAGS
)
flags.register_validator(
    "test_fraction", lambda v: 0 < v < 1, message="must be in (0, 1)", flag_values=FLAGS
)
flags.register_validator("w_lr", lambda v: v > 0, message="must be > 0", flag_values=FLAGS)
flags.register_validator("a_lr", lambda v: v > 0, message="must be > 0", flag_values=FLAGS)


def settings_from_flags():
    from kerasnas.pipeline import SearchSettings
    from kerasnas.trainers.snas import SNASConfig

    snas = SNASConfig(
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        w_lr=FLAGS.w_lr,
        w_lr_min=FLAGS.w_lr_min,
        a_lr=FLAGS.a_lr,
        jit_compile=FLAGS.jit_compile,
        seed=FLAGS.seed,
        temperature_start=FLAGS.temperature_start,
        temperature_end=FLAGS.temperature_end,
        resource=FLAGS.resource,
        resource_lambda=FLAGS.resource_lambda,
        resource_form=FLAGS.resource_form,
        resource_estimator=FLAGS.resource_estimator,
        latency_cache=FLAGS.latency_cache,
    )
    return SearchSettings(
        output_dir=FLAGS.output_dir,
        dataset=FLAGS.dataset,
        init_channels=FLAGS.init_channels,
        layers=FLAGS.layers,
        nodes=FLAGS.nodes,
        ops=tuple(FLAGS.ops),
        relaxation=FLAGS.relaxation,
        derive=FLAGS.derive,
        valid_fraction=FLAGS.valid_fraction,
        test_fraction=FLAGS.test_fraction,
        resume=FLAGS.resume,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        export=tuple(FLAGS.export),
        snas=snas,
    )


def main(argv: list[str]) -> int:
    """Parses `argv` (program name first) and runs; returns the exit code (2: bad input)."""
    code = COMMAND.parse(argv)
    if code is not None:
        return code
    from kerasnas.data import DataError
    from kerasnas.latency import LatencyCacheError
    from kerasnas.pipeline import SearchError, run_search

    try:
        run_search(settings_from_flags())
    except (SearchError, DataError, LatencyCacheError) as e:
        return COMMAND.error(str(e))
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
