"""How fast a weight-shared supernet trains when every minibatch runs another child.

    python benchmarks/weight_sharing.py --epochs=4 --children=fixed,uniform
    python benchmarks/weight_sharing.py --epochs=40 --children=uniform

Trains the digits cell supernet (C=8, L=5, N=4, the 8 ops) with
:class:`kerasnas.trainers.RandomWSTrainer` (the weight phase ENAS and random search share):
``fixed`` always draws the same child (an ordinary network, for reference), ``uniform``
draws a new uniform child per minibatch. Prints per epoch the training loss and accuracy
and the validation accuracy of children of the same policy (batch norm in inference mode).
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--children", default="fixed,uniform")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from kerasnas import data as data_lib
    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.enas import RandomWSTrainer, WeightSharingConfig

    class FixedChild(RandomWSTrainer):
        """Every draw is the same child (the first uniform draw of the seed)."""

        def sample_archs(self, n, rng):
            child = super().sample_archs(1, np.random.default_rng(self.config.seed))[0]
            return [child] * n

    bundle = data_lib.load("digits", seed=args.seed)
    for kind in args.children.split(","):
        keras.utils.set_random_seed(args.seed)
        space = CellSpace(bundle.input_shape, bundle.num_classes, 8, 5, 4)
        net = space.build_supernet("controlled", bundle.normalization_layer(), seed=args.seed)
        cls = FixedChild if kind == "fixed" else RandomWSTrainer
        trainer = cls(
            net, space, WeightSharingConfig(epochs=args.epochs, seed=args.seed), verbose=0
        )
        t0 = time.perf_counter()
        history = trainer.fit(bundle)
        print(f"{kind} children, {args.epochs} epochs, {time.perf_counter() - t0:.0f} s:")
        for r in history:
            print(
                f"  epoch {r['epoch']:3d}: train loss {r['loss']:.3f}, train accuracy "
                f"{r['accuracy']:.3f}, valid accuracy {r['valid_accuracy']:.3f}"
            )


if __name__ == "__main__":
    main()
