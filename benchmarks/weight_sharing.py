"""Does a weight-shared supernet learn, and how should its children's batch norm be set?

    python benchmarks/weight_sharing.py                          # uniform children, 10 epochs
    python benchmarks/weight_sharing.py --children=fixed,pool2,pool8,uniform --epochs=3
    python benchmarks/weight_sharing.py --children=uniform,wiring,ops --epochs=6
    python benchmarks/weight_sharing.py --ops=sep_conv_3x3,sep_conv_5x5,dil_conv_3x3,dil_conv_5x5
    python benchmarks/weight_sharing.py --children=enas,enas_prior,uniform --epochs=60 --final=0

Trains the digits cell supernet of the default comparison (C=8, L=5, N=4, the 8 ops,
batch 64, w_lr 0.025) with :class:`kerasnas.trainers.RandomWSTrainer` (the weight phase
ENAS and random search share): ``fixed`` always draws the same child (an ordinary network,
for reference), ``pool<k>`` one of k fixed uniform children per minibatch, ``uniform`` a new
uniform child per minibatch, ``wiring`` a uniform wiring with every op ``sep_conv_3x3``,
``ops`` uniform ops on a fixed wiring (node i reads nodes i and i+1), ``enas`` the children
of ENAS' controller as the digits job runs it (2 updates per epoch, no op prior),
``enas_prior`` the same with the authors' prior towards convolutions; ``--ops`` narrows the
supernet's candidate ops (``none`` is added). Prints per epoch the
training loss and accuracy of the sampled children and the validation accuracy of children
of the same policy, one per batch, with batch norm three ways:

- ``moving``: inference mode, the supernet's moving averages (every child's mixed);
- ``batch``: each validation batch's own statistics (ENAS' and DARTS' search code);
- ``recal``: statistics recomputed for the child on 8 training batches first (single-path
  one-shot NAS); measured on `--final` children over the whole validation split.
"""

from __future__ import annotations

import argparse
import os
import time

import keras
import numpy as np
import tensorflow as tf

from kerasnas.latency import cpu_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--children", default="uniform")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--final", type=int, default=5, help="children scored at the end")
    parser.add_argument("--ops", default="", help="candidate ops (comma separated)")
    args = parser.parse_args()

    from kerasnas import data as data_lib
    from kerasnas.search_spaces.cell import CellSpace
    from kerasnas.trainers.enas import (
        ENASConfig,
        ENASTrainer,
        RandomWSTrainer,
        WeightSharingConfig,
    )

    def pool_of(k: int):
        class Pool(RandomWSTrainer):
            """Every draw is one of k children (the first k uniform draws of the seed)."""

            def sample_archs(self, n, rng):
                pool = super().sample_archs(k, np.random.default_rng(self.config.seed))
                return [pool[i] for i in rng.integers(0, k, n)]

        return Pool

    def restricted(kind: str):
        class Restricted(RandomWSTrainer):
            """Uniform children with the wiring (``ops``) or the ops (``wiring``) fixed."""

            def sample_archs(self, n, rng):
                out = []
                for arch in super().sample_archs(n, rng):
                    for key in arch:
                        node = int(key.split("/")[1][4:])
                        if kind == "ops" and "/input" in key:
                            arch[key] = node + int(key[-1])
                        elif kind == "wiring" and "/op" in key:
                            arch[key] = "sep_conv_3x3"
                    out.append(self.discrete.validate(arch))
                return out

        return Restricted

    class Probed:
        def epoch_extras(self):
            valid = self._probe_data.valid(self.config.batch_size)
            return {
                **super().epoch_extras(),
                "valid_moving": self.evaluate(valid, bn="moving"),
                "valid_batch": self.evaluate(valid, bn="batch"),
            }

    cpu = cpu_model()
    print(f"{cpu}, {os.cpu_count()} CPUs; TensorFlow {tf.__version__}, Keras {keras.__version__}")
    bundle = data_lib.load("digits", seed=args.seed)
    for kind in args.children.split(","):
        keras.utils.set_random_seed(args.seed)
        extra = {"ops": ("none", *args.ops.split(","))} if args.ops else {}
        space = CellSpace(bundle.input_shape, bundle.num_classes, 8, 5, 4, **extra)
        net = space.build_supernet("controlled", bundle.normalization_layer(), seed=args.seed)
        config = WeightSharingConfig(epochs=args.epochs, seed=args.seed)
        if kind == "uniform":
            base = RandomWSTrainer
        elif kind in ("enas", "enas_prior"):  # the digits job's ENAS, its op prior off / on
            base = ENASTrainer
            config = ENASConfig(
                epochs=args.epochs,
                seed=args.seed,
                controller_steps=2,
                controller_op_bias=kind == "enas_prior",
            )
        elif kind in ("wiring", "ops"):
            base = restricted(kind)
        elif kind == "fixed" or kind.startswith("pool"):
            base = pool_of(1 if kind == "fixed" else int(kind[4:]))
        else:
            raise SystemExit(
                f"--children: fixed, pool<k>, uniform, wiring, ops, enas or enas_prior, "
                f"got {kind!r}"
            )
        cls = type(f"Probed{base.__name__}", (Probed, base), {})
        trainer = cls(net, space, config, verbose=0)
        trainer._probe_data = bundle
        t0 = time.perf_counter()
        history = trainer.fit(bundle)
        print(f"{kind} children, {args.epochs} epochs, {time.perf_counter() - t0:.0f} s:")
        for r in history:
            entropy = f" | policy entropy {r['entropy']:.2f}" if "entropy" in r else ""
            print(
                f"  epoch {r['epoch']:3d}: train loss {r['train_loss']:.3f}, accuracy "
                f"{r['train_acc']:.3f} | valid (one child per batch): moving "
                f"{r['valid_moving']:.3f}, batch {r['valid_batch']:.3f}{entropy}"
            )
        if not args.final:
            continue
        archs = trainer.sample_archs(args.final, np.random.default_rng([args.seed, 99]))
        valid = bundle.valid(64)
        rows = {
            bn: [trainer.child_accuracy(a, valid, bundle, bn=bn) for a in archs]
            for bn in ("moving", "batch", "recalibrate")
        }
        print(f"  {args.final} children on the whole validation split:")
        for bn, accs in rows.items():
            shown = " ".join(f"{a:.3f}" for a in accs)
            print(f"    {bn:<11} {shown}  mean {np.mean(accs):.3f}")


if __name__ == "__main__":
    main()
