"""Run by tests/test_distribution.py in a subprocess (logical devices must be set before
TensorFlow starts): one epoch of one step of a tiny search, on one device and mirrored over
two logical CPUs with the same global batch; prints the largest differences as JSON."""

from __future__ import annotations

import json
import sys

from kerasnas import distribute

distribute.split_cpu(2)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasnas import data as data_lib  # noqa: E402
from kerasnas.search_spaces.cell import CellSpace  # noqa: E402
from kerasnas.trainers.darts import DARTSConfig, DARTSTrainer  # noqa: E402
from kerasnas.trainers.snas import SNASConfig, SNASTrainer  # noqa: E402

OPS = ("none", "max_pool_3x3", "conv_1x1")


def run(kind: str, strategy, bundle, **config) -> list[np.ndarray]:
    """Every model and optimizer variable after one step of `kind` (snas, darts, darts2)."""
    keras.utils.set_random_seed(0)
    space = CellSpace(bundle.input_shape, bundle.num_classes, 4, 3, 2, OPS)
    relaxation = "softmax" if kind.startswith("darts") else config.pop("relaxation", "gumbel")
    with strategy.scope() if strategy else tf.init_scope():
        model = space.build_supernet(relaxation, bundle.normalization_layer(), seed=0)
    if kind == "snas":
        cfg = SNASConfig(epochs=1, batch_size=48, a_lr=0.01, seed=0, **config)
        trainer = SNASTrainer(model, cfg, verbose=0, strategy=strategy)
    else:
        cfg = DARTSConfig(
            epochs=1, batch_size=24, a_lr=0.01, seed=0, order=int(kind == "darts2") + 1
        )
        trainer = DARTSTrainer(model, cfg, verbose=0, strategy=strategy)
    history = trainer.fit(bundle)
    assert len(history) == 1
    vs = trainer._state_variables()
    return [keras.ops.convert_to_numpy(v.value) for v in vs], history[0], [v.path for v in vs]


def main(kinds: list[str]) -> None:
    tf.config.experimental.enable_op_determinism()
    bundle = data_lib.load("digits", seed=0, max_examples=80)
    strategy = distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    out = {}
    for kind in kinds:
        extra = {"relaxation": "gumbel_hard"} if kind == "snas_hard" else {}
        name = "snas" if kind == "snas_hard" else kind
        one, h1, paths = run(name, None, bundle, **extra)
        two, h2, _ = run(name, strategy, bundle, **extra)
        out[kind] = {
            "max_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(one, two, strict=True)),
            "variables": len(one),
            "loss": [h1["loss"], h2["loss"]],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
