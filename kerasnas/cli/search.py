"""``kerasnas-search``: an architecture search from the command line (absl flags).

  kerasnas-search --output_dir=run                      # SNAS on digits, default budget
  kerasnas-search --dataset=tfds:cifar10 --init_channels=16 --layers=8 --output_dir=c10
  kerasnas-search --output_dir=run --resume             # continue a stopped search
  kerasnas-search --strategy=reinforce --search_space=nasrl --max_trials=50 --output_dir=rl

  kerasnas-search --strategy=darts --darts_order=2 --output_dir=darts
  kerasnas-search --strategy=enas --output_dir=enas

One-shot strategies search the cell space with one weight-shared supernet: snas (default),
darts (first or second order), enas (LSTM controller) and random_ws (uniform sampling with
weight sharing); outputs: see :mod:`kerasnas.jobs.one_shot`. Trial-based strategies (reinforce,
metaqnn, evolution, renas, random, bayesian, hyperband) train one child per trial over
--search_space=cell, nasrl or metaqnn (outputs and distributed mode: see
:mod:`kerasnas.jobs.trial_based`). ``kerasnas-search --helpfull`` lists every flag.
"""

from __future__ import annotations

import sys

from absl import flags

from kerasnas import ops as ops_lib
from kerasnas import resource
from kerasnas.cli.command import Command
from kerasnas.jobs.one_shot import DEFAULT_EXPORT, DERIVATIONS, RELAXATIONS, default_snas_config
from kerasnas.jobs.one_shot import STRATEGIES as ONE_SHOT

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
    None,
    sorted({r for values in RELAXATIONS.values() for r in values}),
    "How the supernet mixes ops; default: the strategy's own. snas: gumbel (soft sample, "
    "all ops run, the default) or gumbel_hard (straight-through one-hot, one op per edge "
    "runs); darts: softmax; enas, random_ws: controlled.",
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
    None,
    sorted({r for values in DERIVATIONS.values() for r in values}),
    "How the child is read off; default: the strategy's own. argmax (snas): every edge "
    "its most likely op, none deletes it. top2 (darts): 2 inputs per node. best_sampled "
    "(enas, random_ws): the best of the sampled children on the validation split. The "
    "child inherits the supernet's weights either way.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "darts_order",
    "1",
    ["1", "2"],
    "darts: 1 = first order (alternate steps); 2 = second order (one virtual weight step, "
    "Hessian-vector product by finite differences).",
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
flags.DEFINE_enum(
    "mixed_precision",
    "none",
    ["none", "bfloat16"],
    "Supernet compute precision: none (float32) or bfloat16 (Keras' mixed_bfloat16: "
    "float32 variables, batch-norm statistics and loss; for GPUs/TPUs, slower on most CPUs). "
    "The child is float32.",
    flag_values=FLAGS,
)
flags.DEFINE_enum(
    "distribution",
    "none",
    ["none", "mirrored", "multi_worker"],
    "snas, darts: train the supernet under tf.distribute. mirrored: every GPU of this "
    "machine (else its logical CPUs); multi_worker: the machines of TF_CONFIG (only the "
    "chief writes --output_dir). --batch_size is the global batch.",
    flag_values=FLAGS,
)
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

# -- black-box strategies (kerasnas.jobs.trial_based) ---------------------------------------------
BLACKBOX = ("reinforce", "metaqnn", "evolution", "renas", "random", "bayesian", "hyperband")
STRATEGIES = ONE_SHOT + BLACKBOX
for _name, _default, _values, _help in (
    (
        "strategy",
        "snas",
        STRATEGIES,
        "One-shot, on a weight-shared supernet of the cell space: snas, darts, enas, "
        "random_ws (uniform sampling). Trial-based, one trained child per trial: reinforce "
        "(Zoph & Le's controller), metaqnn (Q-learning), evolution (aging), renas, random, "
        "bayesian, hyperband.",
    ),
    (
        "search_space",
        "cell",
        ("cell", "nasrl", "metaqnn"),
        "cell: the SNAS cell space (--init_channels, --layers, --nodes, --ops; one op per "
        "edge, 'none' dropped); nasrl: Zoph & Le's chain; metaqnn: MetaQNN's layers.",
    ),
    ("trial_optimizer", "adam", ("adam", "sgd"), "Child optimizer (sgd: momentum 0.9)."),
    ("reward_resource", "params", ("params", "flops"), "Cost of the MnasNet reward."),
):
    flags.DEFINE_enum(_name, _default, list(_values), _help, flag_values=FLAGS)
for _kind, _name, _default, _help, _kwargs in (
    ("integer", "max_trials", 20, "Trials (children trained).", {"lower_bound": 1}),
    ("integer", "trial_epochs", 3, "Epochs per child (hyperband: most).", {"lower_bound": 1}),
    ("float", "trial_learning_rate", None, "Child learning rate (None: 1e-3 adam, 0.05 sgd).", {}),
    ("integer", "max_layers", None, "nasrl, metaqnn: most layers (None: 6).", {"lower_bound": 1}),
    ("integer", "min_layers", None, "nasrl: fewest layers (None: 2).", {"lower_bound": 1}),
    ("list", "filter_sizes", [], "nasrl: kernel heights/widths; metaqnn: conv kernels.", {}),
    ("list", "num_filters", [], "nasrl: filters per layer; metaqnn: conv filters.", {}),
    ("boolean", "skip_connections", True, "nasrl: search anchor-point skip connections.", {}),
    ("integer", "population_size", 10, "evolution, renas: population.", {"lower_bound": 1}),
    ("integer", "sample_size", 3, "evolution, renas: tournament size.", {"lower_bound": 1}),
    ("integer", "controller_batch_size", 5, "reinforce, renas: m per update.", {"lower_bound": 1}),
    ("float", "controller_learning_rate", 6e-4, "reinforce, renas: controller Adam lr.", {}),
    ("float", "entropy_weight", 0.0, "reinforce, renas: entropy bonus.", {"lower_bound": 0.0}),
    ("integer", "epsilon_explore", None, "metaqnn: trials at epsilon 1 (None: half).", {}),
    ("integer", "hyperband_factor", 3, "hyperband: reduction factor.", {"lower_bound": 2}),
    ("float", "reward_target", None, "MnasNet reward acc*(cost/target)^w (None: acc).", {}),
    ("float", "reward_alpha", 0.0, "MnasNet exponent w when cost <= target.", {}),
    ("float", "reward_beta", -0.07, "MnasNet exponent w when cost > target.", {}),
    (
        "float",
        "distributed_timeout",
        600.0,
        "Distributed mode (KERASTUNER_* variables): seconds a worker waits for the chief, "
        "and the chief's longest run.",
        {},
    ),
):
    COMMAND.define(_kind, _name, _default, _help, **_kwargs)

# flags of one kind of search only: given for another, they are an error
ONE_SHOT_ONLY = (
    "epochs",
    "relaxation",
    "derive",
    "w_lr",
    "w_lr_min",
    "jit_compile",
    "mixed_precision",
)
SNAS_ONLY = (
    "resource",
    "latency_cache",
    "resource_lambda",
    "resource_form",
    "resource_estimator",
    "temperature_start",
    "temperature_end",
)
FLAG_STRATEGIES = {
    "a_lr": ("snas", "darts"),
    "darts_order": ("darts",),
    "distribution": ("snas", "darts"),
}
FLAG_STRATEGIES.update({name: ("snas",) for name in SNAS_ONLY})
FLAG_STRATEGIES.update({name: ONE_SHOT for name in ONE_SHOT_ONLY})
BLACKBOX_ONLY = (
    "max_trials",
    "trial_epochs",
    "trial_optimizer",
    "trial_learning_rate",
    "population_size",
    "sample_size",
    "controller_batch_size",
    "controller_learning_rate",
    "entropy_weight",
    "epsilon_explore",
    "hyperband_factor",
    "reward_target",
    "reward_resource",
    "reward_alpha",
    "reward_beta",
    "distributed_timeout",
    "max_layers",
    "min_layers",
    "filter_sizes",
    "num_filters",
    "skip_connections",
)
SPACE_FLAGS = {
    "cell": ("init_channels", "layers", "nodes", "ops"),
    "nasrl": ("max_layers", "min_layers", "filter_sizes", "num_filters", "skip_connections"),
    "metaqnn": ("max_layers", "filter_sizes", "num_filters"),
}

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
for _name in ("trial_learning_rate", "reward_target"):
    flags.register_validator(
        _name, lambda v: v is None or v > 0, message="must be > 0", flag_values=FLAGS
    )
flags.register_validator(
    "distributed_timeout", lambda v: v > 0, message="must be > 0", flag_values=FLAGS
)
flags.register_validator(
    "controller_learning_rate", lambda v: v > 0, message="must be > 0", flag_values=FLAGS
)
for _name in ("filter_sizes", "num_filters"):
    flags.register_validator(
        _name,
        lambda v: all(x.isdigit() and int(x) > 0 for x in v),
        message="must be a comma-separated list of positive ints",
        flag_values=FLAGS,
    )
flags.register_validator("a_lr", lambda v: v > 0, message="must be > 0", flag_values=FLAGS)


def settings_from_flags():
    """The :class:`~kerasnas.jobs.one_shot.SearchSettings` of the parsed flags (one-shot)."""
    from kerasnas.jobs.one_shot import SearchSettings, default_config

    strategy = FLAGS.strategy
    args = {
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "w_lr": FLAGS.w_lr,
        "w_lr_min": FLAGS.w_lr_min,
        "jit_compile": FLAGS.jit_compile,
        "seed": FLAGS.seed,
    }
    if strategy in FLAG_STRATEGIES["a_lr"]:
        args["a_lr"] = FLAGS.a_lr
    if strategy == "snas":
        args.update(
            temperature_start=FLAGS.temperature_start,
            temperature_end=FLAGS.temperature_end,
            resource=FLAGS.resource,
            resource_lambda=FLAGS.resource_lambda,
            resource_form=FLAGS.resource_form,
            resource_estimator=FLAGS.resource_estimator,
            latency_cache=FLAGS.latency_cache,
        )
    elif strategy == "darts":
        args["order"] = int(FLAGS.darts_order)
    return SearchSettings(
        output_dir=FLAGS.output_dir,
        strategy=strategy,
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
        mixed_precision=FLAGS.mixed_precision,
        config=default_config(strategy, **args),
        distribution=FLAGS.distribution,
    )


def _ints(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in FLAGS[name].value)
    except ValueError:
        raise ValueError(f"--{name} must be a comma-separated list of ints") from None


def blackbox_settings_from_flags():
    """The :class:`~kerasnas.jobs.trial_based.BlackBoxSettings` of the parsed flags."""
    from kerasnas.jobs.trial_based import BlackBoxSettings
    from kerasnas.multitrial.runner import TrialConfig

    space = FLAGS.search_space
    args: dict = {}
    if space == "cell":
        args = {
            "init_channels": FLAGS.init_channels,
            "layers": FLAGS.layers,
            "nodes": FLAGS.nodes,
            "ops": [op for op in FLAGS.ops if op != "none"],
        }
    else:
        if FLAGS.max_layers is not None:
            args["max_layers"] = FLAGS.max_layers
        sizes, filters = _ints("filter_sizes"), _ints("num_filters")
        if space == "nasrl":
            if FLAGS.min_layers is not None:
                args["min_layers"] = FLAGS.min_layers
            elif FLAGS.max_layers is not None:
                args["min_layers"] = min(2, FLAGS.max_layers)
            if sizes:
                args["filter_heights"] = args["filter_widths"] = sizes
            if filters:
                args["filters"] = filters
            args["skip_connections"] = FLAGS.skip_connections
        else:
            if sizes:
                args["conv_kernels"] = sizes
            if filters:
                args["conv_filters"] = filters
    trial = TrialConfig(
        epochs=FLAGS.trial_epochs,
        batch_size=FLAGS.batch_size,
        optimizer=FLAGS.trial_optimizer,
        learning_rate=FLAGS.trial_learning_rate,
        seed=FLAGS.seed,
        reward_target=FLAGS.reward_target,
        reward_resource=FLAGS.reward_resource,
        reward_alpha=FLAGS.reward_alpha,
        reward_beta=FLAGS.reward_beta,
        verbose=int(FLAGS.verbose > 0),
    )
    return BlackBoxSettings(
        output_dir=FLAGS.output_dir,
        strategy=FLAGS.strategy,
        search_space=space,
        dataset=FLAGS.dataset,
        max_trials=FLAGS.max_trials,
        trial=trial,
        space_args=args,
        population_size=FLAGS.population_size,
        sample_size=FLAGS.sample_size,
        controller_batch_size=FLAGS.controller_batch_size,
        controller_learning_rate=FLAGS.controller_learning_rate,
        entropy_weight=FLAGS.entropy_weight,
        epsilon_explore=FLAGS.epsilon_explore,
        hyperband_factor=FLAGS.hyperband_factor,
        valid_fraction=FLAGS.valid_fraction,
        test_fraction=FLAGS.test_fraction,
        export=tuple(FLAGS.export) if FLAGS["export"].present else (),
        resume=FLAGS.resume,
        overwrite=FLAGS.overwrite,
        verbose=FLAGS.verbose,
        distributed_timeout=FLAGS.distributed_timeout,
    )


def flag_combination_error() -> str | None:
    """The first flag given that the chosen strategy and space do not use, as a message."""
    strategy, space = FLAGS.strategy, FLAGS.search_space
    for name, owners in FLAG_STRATEGIES.items():
        if FLAGS[name].present and strategy not in owners:
            return f"--{name} applies to --strategy={','.join(owners)} only, not {strategy}"
    if strategy in ONE_SHOT:
        if space != "cell":
            return f"--strategy={strategy} searches the cell space only, not --search_space={space}"
        unused = [n for n in BLACKBOX_ONLY if FLAGS[n].present]
        if unused:
            return f"--{unused[0]} applies to trial-based strategies, not --strategy={strategy}"
        return None
    own = SPACE_FLAGS[space]
    for other, names in SPACE_FLAGS.items():
        for name in names:
            if other != space and name not in own and FLAGS[name].present:
                return f"--{name} applies to --search_space={other}, not --search_space={space}"
    if strategy in ("evolution", "renas") and FLAGS.sample_size > FLAGS.population_size:
        return "--sample_size must be <= --population_size"
    return None


def main(argv: list[str]) -> int:
    """Parses `argv` (program name first) and runs; returns the exit code (2: bad input;
    1: a distributed search timed out or lost its chief)."""
    code = COMMAND.parse(argv)
    if code is not None:
        return code
    message = flag_combination_error()
    if message:
        return COMMAND.error(message)
    from kerasnas.data import DataError
    from kerasnas.jobs.one_shot import SearchError, run_search
    from kerasnas.latency import LatencyCacheError

    if FLAGS.strategy in ONE_SHOT:
        try:
            run_search(settings_from_flags())
        except (SearchError, DataError, LatencyCacheError) as e:
            return COMMAND.error(str(e))
        return 0

    from kerasnas.jobs.trial_based import DistributedError, run_blackbox

    try:
        metrics = run_blackbox(blackbox_settings_from_flags())
    except (SearchError, DataError, ValueError) as e:
        return COMMAND.error(str(e))
    except DistributedError as e:
        print(f"{COMMAND.prog}: error: {e}", file=sys.stderr)
        return 1
    if metrics.get("timed_out"):
        print(f"{COMMAND.prog}: error: the distributed search timed out", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main(sys.argv))


if __name__ == "__main__":
    run()
