"""Run by tests/test_distribution.py in a subprocess (logical devices must be set before
TensorFlow starts): one epoch of one step of a tiny search, on one device and mirrored over
two logical CPUs with the same global batch; prints the largest differences as JSON.

    python tests/distribution_check.py snas darts darts2
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile

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


def trainer_for(kind: str, strategy, bundle, output_dir=None, seed=0):
    """A tiny supernet (C=4, L=3, N=1, 3 ops) and the trainer of `kind` (snas, darts,
    darts2: second order), one step per epoch on the 48 training examples."""
    keras.utils.set_random_seed(seed)
    space = CellSpace(bundle.input_shape, bundle.num_classes, 4, 3, 1, OPS)
    relaxation = "softmax" if kind.startswith("darts") else "gumbel"
    with strategy.scope() if strategy else contextlib.nullcontext():
        model = space.build_supernet(relaxation, bundle.normalization_layer(), seed=seed)
    if kind == "snas":
        cfg = SNASConfig(epochs=1, batch_size=48, a_lr=0.01, seed=0)
        return SNASTrainer(model, cfg, output_dir, verbose=0, strategy=strategy)
    order = 2 if kind == "darts2" else 1
    cfg = DARTSConfig(epochs=1, batch_size=24, a_lr=0.01, seed=0, order=order)
    return DARTSTrainer(model, cfg, output_dir, verbose=0, strategy=strategy)


def values(trainer) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v.value) for v in trainer._state_variables()]


def replica_spread(trainer) -> float:
    """The largest difference between two replicas' copies of one variable."""
    spread = 0.0
    for v in trainer._state_variables():
        copies = [c.numpy() for c in v.value.values]
        spread = max(spread, *(float(np.max(np.abs(c - copies[0]))) for c in copies))
    return spread


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


def main(kinds: list[str]) -> None:
    tf.config.experimental.enable_op_determinism()
    bundle = data_lib.load("digits", seed=0, max_examples=80)
    strategy = distribute.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    out = {}
    for kind in kinds:
        single = trainer_for(kind, None, bundle)
        h1 = single.fit(bundle)
        with tempfile.TemporaryDirectory() as tmp:
            mirrored = trainer_for(kind, strategy, bundle, tmp)
            h2 = mirrored.fit(bundle)
            # the checkpoint restores every replica's copies (another init: seed 1)
            restored = trainer_for(kind, strategy, bundle, tmp, seed=1)
            assert restored.restore() == 1
        out[kind] = {
            "max_diff": max_diff(values(single), values(mirrored)),
            "replica_spread": replica_spread(mirrored),
            "restore_diff": max_diff(values(mirrored), values(restored)),
            "restore_spread": replica_spread(restored),
            "variables": len(values(single)),
            "loss": [h1[0]["train_loss"], h2[0]["train_loss"]],
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
