"""FLOPs of one SNAS supernet training step, from the library's per-op cost model.

    python benchmarks/step_flops.py                     # the two sizes of the issue
    python benchmarks/step_flops.py --sizes="8,5,32" --ops=none,sep_conv_3x3

Convention. ``kerasnas.resource`` counts mult-adds (MACs) of convolutions and dense layers
per image; batch norm, ReLU, pooling, additions and the mixing weights are not counted.
A MixedOp's ``cost_table[:, 1]`` holds each candidate's mult-adds (plain units, not
millions). The forward mult-adds of the supernet per image are:

- stem, cell preprocessing (1x1 ReLU-conv-BN, factorized reduce) and classifier, plus
- ``gumbel`` (soft): every candidate of every MixedOp (all ops are computed);
- ``gumbel_hard``: per MixedOp, the mean over its candidates, i.e. the expected cost of one
  op drawn uniformly per edge (the initial logits are near-uniform; ``none`` counts 0).

One training step = forward mult-adds x 2 (FLOP per mult-add) x 3 (forward + backward,
the backward taken as twice the forward: input and weight gradients) x batch.
"""

from __future__ import annotations

import argparse

FLOP_PER_MAC = 2
TRAIN_FACTOR = 3  # forward + backward ~ 3x forward


def supernet_step_flops(net, relaxation: str) -> dict:
    """Forward mult-adds per image of `net` (a kerasnas supernet) under `relaxation`.

    Returns ``fixed_macs`` (stem, preprocessing, classifier), ``mixed_all_macs`` (every
    candidate of every MixedOp), ``mixed_mean_macs`` (mean candidate per MixedOp),
    ``forward_macs`` (fixed + all for ``gumbel``/``softmax``, fixed + mean for
    ``gumbel_hard``/``controlled``) and ``mixed_ops`` (number of MixedOp layers).
    """
    from kerasnas import resource
    from kerasnas.layers import mixed_ops

    layers = mixed_ops(net)
    mixed_all = mixed_mean = 0.0
    for layer in layers:
        column = resource.cost_column(layer, "flops")
        mixed_all += float(column.sum())
        mixed_mean += float(column.mean())
    # A MixedOp has no cost() method, so network_cost counts no mult-adds for it: its
    # flops are the fixed part only.
    fixed = float(resource.network_cost(net).flops)
    one_op = relaxation in ("gumbel_hard", "controlled")
    return {
        "fixed_macs": fixed,
        "mixed_all_macs": mixed_all,
        "mixed_mean_macs": mixed_mean,
        "forward_macs": fixed + (mixed_mean if one_op else mixed_all),
        "mixed_ops": len(layers),
    }


def train_step_flop(forward_macs: float, batch: int) -> float:
    """FLOP of one training step: forward mult-adds x 2 x 3 x batch."""
    return forward_macs * FLOP_PER_MAC * TRAIN_FACTOR * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="8,5,32;16,8,64", help="C,L,batch triples separated by ';'"
    )
    parser.add_argument("--relaxations", default="gumbel,gumbel_hard")
    parser.add_argument("--ops", default=None, help="comma-separated candidate ops (default: 8)")
    args = parser.parse_args()

    from kerasnas.search_spaces.cell import CellSpace

    extra = {"ops": tuple(args.ops.split(","))} if args.ops else {}
    print(
        f"{'C':>3} {'L':>2} {'batch':>5} {'relaxation':<12} {'fixed MMAC':>10} "
        f"{'mixed MMAC':>10} {'fwd MMAC/img':>12} {'GFLOP/step':>10}"
    )
    for size in args.sizes.split(";"):
        c, layers, batch = (int(v) for v in size.split(","))
        for relaxation in args.relaxations.split(","):
            space = CellSpace((32, 32, 3), 10, init_channels=c, layers=layers, nodes=4, **extra)
            net = space.build_supernet(relaxation, seed=0)
            f = supernet_step_flops(net, relaxation)
            mixed = f["forward_macs"] - f["fixed_macs"]
            print(
                f"{c:>3} {layers:>2} {batch:>5} {relaxation:<12} {f['fixed_macs'] / 1e6:>10.1f} "
                f"{mixed / 1e6:>10.1f} {f['forward_macs'] / 1e6:>12.1f} "
                f"{train_step_flop(f['forward_macs'], batch) / 1e9:>10.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
