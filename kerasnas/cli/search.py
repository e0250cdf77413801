"""``kerasnas-search``: an architecture search from the command line (absl flags).

  kerasnas-search --output_dir=run                      # SNAS on digits, default budget
  kerasnas-search --dataset=tfds:cifar10 --init_channels=16 --layers=8 --output_dir=c10
  kerasnas-search --output_dir=run --resume             # continue a stopped search
  kerasnas-search --strategy=reinforce --search_space=nasrl --max_trials=50 --output_dir=rl

  kerasnas-search --strategy=darts --darts_order=2 --output_dir=darts
  kerasnas-search --strategy=enas --output_dir=enas
  kerasnas-search --preset=snas_cifar10 --output_dir=c10 # the SNAS paper's CIFAR-10 search
  kerasnas-search --preset=enas_cifar10 --epochs=20 --output_dir=e  # flags override a preset

One-shot strategies search the cell space with one weight-shared supernet: snas (default),
darts (first or second order), enas (LSTM controller) and random_ws (uniform sampling with
weight sharing); outputs: see kerasnas.jobs.one_shot. Trial-based strategies (reinforce,
metaqnn, evolution, renas, random, bayesian, hyperband, nash, lemonade, nsga2) train one
child per trial over --search_space=cell, nasrl or metaqnn (outputs and distributed mode: see
kerasnas.jobs.trial_based). How each trial is scored: --estimator=full, proxy, lc or morphism
(see kerasnas.estimation); nash (--n_neigh, --n_nm) and lemonade (--n_init, --n_children,
--n_accept, --max_morphisms) grow nasrl networks by network morphisms, and with
--estimator=morphism (--morphism_epochs) each child starts from its parent's weights:

  kerasnas-search --strategy=nash --search_space=nasrl --estimator=morphism --output_dir=nash

nsga2 (--population_size, --sample_size, --crossover_rate, --objective_cost) evolves the
front of (accuracy, cost) by non-dominated sorting; it writes pareto.csv, pareto.png and the
front's exported children (--front_export=K, which any trial-based strategy takes):

  kerasnas-search --strategy=nsga2 --search_space=nasrl --max_trials=30 --output_dir=nsga2

``kerasnas-search --helpfull`` lists every flag.
"""

from __future__ import annotations

import sys

from kerasnas import presets, strategies
from kerasnas.cli.command import Command
from kerasnas.errors import KerasNASError
from kerasnas.jobs.settings import DEFAULT_EXPORT, OneShotSettings, TrialSettings

ONE_SHOT = strategies.names(strategies.ONE_SHOT)
TRIAL_BASED = strategies.names(strategies.TRIAL_BASED)
STRATEGIES = strategies.names()

COMMAND = Command("kerasnas-search", __doc__ or "", required=("output_dir",))
FLAGS = COMMAND.flags


def _listing(kind: str) -> str:
    return "; ".join(
        f"{s.name}: {s.summary}" for s in strategies.REGISTRY.values() if s.kind == kind
    )


COMMAND.define(
    "enum",
    "strategy",
    OneShotSettings(output_dir="").strategy,
    f"One-shot, on a weight-shared supernet of the cell space: {_listing(strategies.ONE_SHOT)}. "
    f"Trial-based, one trained child per trial: {_listing(strategies.TRIAL_BASED)}.",
    enum_values=list(STRATEGIES),
)
COMMAND.define(
    "string",
    "preset",
    None,
    "Start from named search settings (one-shot): "
    + "; ".join(f"{p.name}: {p.strategy}, {p.source}" for p in presets.PRESETS.values())
    + ". It sets --strategy; flags given explicitly override its values.",
)
for _name in ONE_SHOT:
    _settings = OneShotSettings(output_dir="", strategy=_name)
    COMMAND.add_settings(
        _settings,
        [_name],
        hide=("strategy",),
        help={
            "export": "Export the result into <output_dir>/export, each format verified "
            "against the Keras model: some of saved_model, tflite, tflite_fp16, "
            f"tflite_dynamic, tflite_int8; empty: none. Default: {','.join(DEFAULT_EXPORT)} "
            "for one-shot strategies, none for trial-based ones."
        },
    )
    COMMAND.add_settings(
        _settings.config,
        [_name],
        prefix="config.",
        help={
            "epochs": "Search epochs.",
            "batch_size": "Minibatch size (weights and logits share each batch).",
            "a_lr": "Architecture-logit learning rate (Adam). The SNAS paper uses 3e-4 over "
            "~10^5 steps; a digits search has ~500, hence the larger default.",
            "a_weight_decay": "Coupled L2 decay of the logits (the papers: 1e-3). Off by default: "
            "with the large a_lr it pulls the logits back to 0 and the distribution never "
            "sharpens.",
        },
    )
for _name in TRIAL_BASED:
    _settings = TrialSettings(output_dir="", strategy=_name)
    COMMAND.add_settings(_settings, [_name], hide=("strategy",))
    COMMAND.add_settings(_settings.trial, [_name], prefix="trial.")
    COMMAND.add_settings(_settings.estimation, [_name], prefix="estimation.")
    COMMAND.add_settings(_settings.config, [_name], prefix="config.")

# the discrete spaces' constructor arguments, from flags: flag -> space -> arguments it sets
SPACE_FLAGS: dict[str, dict[str, tuple[str, ...]]] = {
    "init_channels": {"cell": ("init_channels",)},
    "layers": {"cell": ("layers",)},
    "nodes": {"cell": ("nodes",)},
    "ops": {"cell": ("ops",)},
    "max_layers": {"nasrl": ("max_layers",), "metaqnn": ("max_layers",)},
    "min_layers": {"nasrl": ("min_layers",)},
    "filter_sizes": {"nasrl": ("filter_heights", "filter_widths"), "metaqnn": ("conv_kernels",)},
    "num_filters": {"nasrl": ("filters",), "metaqnn": ("conv_filters",)},
    "skip_connections": {"nasrl": ("skip_connections",)},
}
for _kind, _name, _default, _help in (
    ("integer", "max_layers", None, "nasrl, metaqnn: most layers (None: 6)."),
    ("integer", "min_layers", None, "nasrl: fewest layers (None: 2)."),
    ("list", "filter_sizes", [], "nasrl: kernel heights/widths; metaqnn: conv kernels."),
    ("list", "num_filters", [], "nasrl: filters per layer; metaqnn: conv filters."),
    ("boolean", "skip_connections", True, "nasrl: search anchor-point skip connections."),
):
    COMMAND.define(_kind, _name, _default, _help)
for _flag, _spaces in SPACE_FLAGS.items():
    for _args in _spaces.values():
        for _arg in _args:
            COMMAND.aliases.setdefault(_arg, _flag)
COMMAND.groups = {
    "data": ("dataset", "valid_fraction", "test_fraction", "seed"),
    "search space": (
        "init_channels",
        "layers",
        "nodes",
        "ops",
        "search_space",
        *[f for f in SPACE_FLAGS if f not in ("init_channels", "layers", "nodes", "ops")],
    ),
    "strategy": (
        "strategy",
        "preset",
        "relaxation",
        "derive",
        "resource",
        "resource_lambda",
        "resource_form",
        "resource_estimator",
        "latency_cache",
        "recalibrate_child",
        "max_trials",
        "reward_target",
    ),
    "optimisation": (
        "epochs",
        "time_budget",
        "batch_size",
        "w_lr",
        "w_lr_min",
        "a_lr",
        "a_weight_decay",
        "temperature_start",
        "temperature_end",
        "darts_order",
        "trial_epochs",
        "jit_compile",
        "mixed_precision",
        "distribution",
    ),
    "output": ("output_dir", "resume", "overwrite", "export", "verbose", "verbosity"),
    "help": ("help", "helpfull"),
}
COMMAND.brief = (
    "dataset",
    "seed",
    "init_channels",
    "layers",
    "nodes",
    "ops",
    "search_space",
    "strategy",
    "preset",
    "resource",
    "resource_lambda",
    "max_trials",
    "epochs",
    "time_budget",
    "batch_size",
    "output_dir",
    "resume",
    "overwrite",
    "export",
    "verbosity",
    "help",
    "helpfull",
)
COMMAND.finalize()


def _ints(name: str) -> tuple[int, ...]:
    values = FLAGS[name].value
    if not all(v.strip().isdigit() and int(v) > 0 for v in values):
        raise ValueError(f"--{name} must be a comma-separated list of positive ints")
    return tuple(int(v) for v in values)


def space_args(space: str) -> dict:
    """The constructor arguments of discrete space `space` from the flags given ('none' is
    dropped from --ops: a discrete cell keeps two inputs per node)."""
    args: dict = {}
    for flag, spaces in SPACE_FLAGS.items():
        if space not in spaces or not FLAGS[flag].present:
            continue
        value = FLAGS[flag].value
        if flag in ("filter_sizes", "num_filters"):
            value = _ints(flag)
        elif flag == "ops":
            value = tuple(op for op in value if op != "none")
        for arg in spaces[space]:
            args[arg] = value
    if space == "nasrl" and "max_layers" in args and "min_layers" not in args:
        args["min_layers"] = min(2, args["max_layers"])
    return args


def strategy_from_flags() -> str:
    """--strategy if given, else the --preset's strategy, else the default."""
    if FLAGS.preset and not FLAGS["strategy"].present and FLAGS.preset in presets.PRESETS:
        return presets.PRESETS[FLAGS.preset].strategy
    return FLAGS.strategy


def settings_from_flags() -> OneShotSettings | TrialSettings:
    """The settings of the parsed flags: :class:`OneShotSettings` or :class:`TrialSettings`
    of the strategy's kind, the flags given written over the --preset's values (if any)
    and the defaults."""
    strategy = strategy_from_flags()
    if strategy in ONE_SHOT:
        base = OneShotSettings(output_dir="", strategy=strategy)
        if FLAGS.preset:
            presets.apply_preset(base, FLAGS.preset)
        return COMMAND.apply(base, strategy)
    if FLAGS.preset:
        raise ValueError(
            f"--preset sets one-shot searches only, not --strategy={strategy} (trial-based)"
        )
    settings = COMMAND.apply(TrialSettings(output_dir="", strategy=strategy), strategy)
    settings.space_args = space_args(settings.search_space)
    return settings


def _strategies_in_words(owners: set[str]) -> str:
    if owners == set(TRIAL_BASED):
        return "trial-based strategies"
    if owners == set(ONE_SHOT):
        return "one-shot strategies"
    return f"--strategy={','.join(s for s in STRATEGIES if s in owners)} only"


COMMAND.describe_contexts = _strategies_in_words
COMMAND.more_contexts = {flag: set(TRIAL_BASED) for flag in SPACE_FLAGS}


def _owners(flag: str) -> str:
    return _strategies_in_words({s for s in STRATEGIES if COMMAND.applies(flag, s)})


def flag_combination_error() -> str | None:
    """The first flag given that the chosen strategy and space do not use, as a message."""
    strategy = strategy_from_flags()
    space = FLAGS.search_space if FLAGS["search_space"].present else "cell"
    if strategy in ONE_SHOT and space != "cell":
        return f"--strategy={strategy} searches the cell space only, not --search_space={space}"
    for name in dict.fromkeys([*COMMAND.specs, *SPACE_FLAGS]):
        if not FLAGS[name].present:
            continue
        if strategy in TRIAL_BASED and name in SPACE_FLAGS:
            if space not in SPACE_FLAGS[name]:
                others = ",".join(SPACE_FLAGS[name])
                return f"--{name} applies to --search_space={others}, not --search_space={space}"
        elif not COMMAND.applies(name, strategy):
            return f"--{name} applies to {_owners(name)}, not --strategy={strategy}"
    return None


def describe(settings: OneShotSettings) -> str:
    """One line: the preset (if any) and the search settings the run uses."""
    c = settings.config
    fields = {
        "strategy": settings.strategy,
        "dataset": settings.dataset,
        "C": settings.init_channels,
        "L": settings.layers,
        "N": settings.nodes,
        "ops": ",".join(settings.ops),
        "epochs": c.epochs,
        "batch_size": c.batch_size,
        "w_lr": f"{c.w_lr:g}->{c.w_lr_min:g}",
        "w_weight_decay": f"{c.w_weight_decay:g}",
    }
    preset = presets.PRESETS.get(FLAGS.preset) if FLAGS.preset else None
    for key in preset.config if preset else ():
        if key not in fields:
            fields[key] = getattr(c, key)
    for key in (
        "a_lr",
        "a_weight_decay",
        "order",
        "temperature_start",
        "temperature_end",
        "controller_steps",
        "controller_op_bias",
    ):
        if hasattr(c, key) and key not in fields:
            fields[key] = getattr(c, key)
    shown = ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
    )
    return f"settings ({f'preset {preset.name}' if preset else 'defaults'} + flags given): {shown}"


def _preset_hint(settings: OneShotSettings) -> str | None:
    """A note when a dataset with a preset runs without it (it gets the digits defaults)."""
    if FLAGS.preset or not FLAGS["dataset"].present:
        return None
    name = presets.preset_for_dataset(settings.dataset, settings.strategy)
    if name is None:
        return None
    return (
        f"{COMMAND.prog}: note: --dataset={settings.dataset} runs with the digits-tuned "
        f"defaults above; --preset={name} sets the paper's search settings for it"
    )


_checked: dict[str, OneShotSettings | TrialSettings] = {}


def check_flags() -> int | None:
    """Checks the parsed flags without TensorFlow: their combination, then the settings
    they make (a one-shot search's fully); returns an exit code when they are wrong."""
    _checked.clear()
    message = flag_combination_error()
    if message:
        return COMMAND.error(message)
    try:
        settings = settings_from_flags()
    except KerasNASError:
        raise  # rendered with flag names by COMMAND.main
    except ValueError as e:
        return COMMAND.error(str(e))
    if isinstance(settings, OneShotSettings):
        settings.validate()  # refuse bad input before announcing the settings
    _checked["settings"] = settings
    return None


def run_from_flags() -> int:
    """Runs the search of the parsed and checked flags (:func:`check_flags`); returns the
    exit code."""
    if "settings" not in _checked:
        code = check_flags()
        if code is not None:
            return code
    settings = _checked.pop("settings")
    if isinstance(settings, OneShotSettings):
        print(describe(settings), flush=True)
        hint = _preset_hint(settings)
        if hint:
            print(hint, file=sys.stderr, flush=True)
        from kerasnas.jobs.one_shot import run_search

        run_search(settings)
        return 0
    from kerasnas.jobs.trial_based import run_trial_search

    metrics = run_trial_search(settings)
    if metrics.get("timed_out"):
        print(f"{COMMAND.prog}: error: the distributed search timed out", file=sys.stderr)
        return 1
    return 0


# exit codes: 2 bad input; 1 a distributed search timed out or lost its chief
main, run = COMMAND.entry_points(run_from_flags, strategy_from_flags, check=check_flags)


if __name__ == "__main__":
    run()
