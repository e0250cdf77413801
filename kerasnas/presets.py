"""Named search settings: the papers' for CIFAR-scale data, and the digits defaults.

A preset fixes a one-shot strategy, its supernet and its trainer's hyper-parameters;
``kerasnas-search --preset=<name>`` starts from it and every flag given explicitly
overrides it. Supported presets (values from the papers and the authors' released scripts,
see ``../shared/ALGORITHMS.md`` terms in the README):

- ``digits``: the command's defaults, tuned for the ~500 steps of a digits search (SNAS,
  C=8, L=5, 30 epochs, architecture learning rate 0.3, no L2 decay on the logits).
- ``snas_cifar10``: SNAS (Xie et al. 2019, code): C=16, L=8, batch 64, 150 epochs, weights
  SGD 0.025 -> 0.001 cosine, momentum 0.9, wd 3e-4, clip 5; logits Adam 3e-4 (betas 0.5,
  0.999), wd 1e-3, clip 10; temperature 1.0 -> 0.03 linear.
- ``darts_cifar10``: DARTS second order (Liu et al. 2019): C=16, L=8, batch 64, 50 epochs,
  weights as SNAS, logits Adam 3e-4, wd 1e-3.
- ``enas_cifar10``: ENAS micro search (Pham et al. 2018, ``cifar10_micro_search.sh`` and
  ``src/cifar10/main.py`` of the authors' code): the 5 ENAS ops (plus ``none`` for the edges
  off a child), C=20, L=8 (6 normal + 2 reduction cells), N=5, batch 160, 150 epochs,
  weights SGD 0.05 -> 0.0005 cosine, wd 1e-4; ENAS' micro controller (an LSTM of 64 units,
  1 layer) with controller Adam 0.0035, tanh constant 1.10, op tanh reduction 2.5, no
  temperature, entropy weight 1e-4, baseline decay 0.99, 30 controller steps per epoch of
  10 children each (``controller_num_aggregate``). (Differences from the authors' code: a
  node's two inputs are distinct; every node, not only the unused ones, is concatenated
  into the cell's output; the entropy bonus is in the loss, not added to the reward; the
  cosine schedule has no warm restarts (theirs: T_0 10, T_mul 2); the auxiliary head and
  drop-path of their search are not used.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from kerasnas.errors import SettingError

__all__ = ["PRESETS", "Preset", "apply_preset", "get", "names", "preset_for_dataset"]

ENAS_OPS = ("none", "sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A one-shot search's settings by name: the job's (`settings`, fields of
    :class:`~kerasnas.jobs.one_shot.OneShotSettings`) and the trainer's (`config`, fields of
    the strategy's settings class); `source` says where the numbers come from."""

    name: str
    strategy: str
    source: str
    settings: Mapping[str, Any]
    config: Mapping[str, Any]


_CIFAR_WEIGHTS = {"batch_size": 64, "w_lr": 0.025, "w_lr_min": 0.001, "w_weight_decay": 3e-4}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "digits",
            "snas",
            "the command's defaults for the embedded digits data",
            {"dataset": "digits", "init_channels": 8, "layers": 5, "nodes": 4},
            {"epochs": 30, "a_lr": 0.3, "a_weight_decay": 0.0},
        ),
        Preset(
            "snas_cifar10",
            "snas",
            "SNAS, Xie et al. 2019 (the authors' code)",
            {"dataset": "tfds:cifar10", "init_channels": 16, "layers": 8, "nodes": 4},
            {
                **_CIFAR_WEIGHTS,
                "epochs": 150,
                "a_lr": 3e-4,
                "a_weight_decay": 1e-3,
                "temperature_start": 1.0,
                "temperature_end": 0.03,
            },
        ),
        Preset(
            "darts_cifar10",
            "darts",
            "DARTS second order, Liu et al. 2019",
            {"dataset": "tfds:cifar10", "init_channels": 16, "layers": 8, "nodes": 4},
            {**_CIFAR_WEIGHTS, "epochs": 50, "a_lr": 3e-4, "a_weight_decay": 1e-3, "order": 2},
        ),
        Preset(
            "enas_cifar10",
            "enas",
            "ENAS micro search, Pham et al. 2018 (cifar10_micro_search.sh)",
            {
                "dataset": "tfds:cifar10",
                "init_channels": 20,
                "layers": 8,
                "nodes": 5,
                "ops": ENAS_OPS,
            },
            {
                "epochs": 150,
                "batch_size": 160,
                "w_lr": 0.05,
                "w_lr_min": 0.0005,
                "w_weight_decay": 1e-4,
                "controller_lr": 3.5e-3,
                "controller_tanh_constant": 1.1,
                "controller_op_tanh_reduce": 2.5,
                "controller_temperature": None,
                "controller_entropy_weight": 1e-4,
                "controller_baseline_decay": 0.99,
                "controller_steps": 30,
                "controller_batch": 10,
                "controller_units": 64,
                "controller_layers": 1,
                "controller_op_bias": True,
            },
        ),
    )
}


def names() -> tuple[str, ...]:
    return tuple(PRESETS)


def get(name: str) -> Preset:
    """The preset `name`; a SettingError that lists the presets otherwise."""
    if name not in PRESETS:
        raise SettingError(f"{{preset}} must be one of {', '.join(PRESETS)}, got {name!r}")
    return PRESETS[name]


def apply_preset(settings: Any, name: str) -> Any:
    """`settings` (a :class:`~kerasnas.jobs.one_shot.OneShotSettings` of the preset's
    strategy) with the preset's values written over it (in place; also returned)."""
    preset = get(name)
    if settings.strategy != preset.strategy:
        raise SettingError(
            f"{{preset}}={name} is a {preset.strategy} preset, not one for "
            f"{{strategy}}={settings.strategy}"
        )
    for key, value in preset.settings.items():
        setattr(settings, key, value)
    for key, value in preset.config.items():
        setattr(settings.config, key, value)
    return settings


def preset_for_dataset(dataset: str, strategy: str) -> str | None:
    """The preset whose dataset is `dataset` and whose strategy is `strategy`, if any."""
    for preset in PRESETS.values():
        if preset.settings.get("dataset") == dataset and preset.strategy == strategy:
            return preset.name
    return None
