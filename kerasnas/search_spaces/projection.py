"""The most probable child of a cell supernet whose cost lies in a band around a target.

A search with a cost target (:mod:`kerasnas.target`) steers the architecture distribution
until its derived child costs about the target, but the distribution can freeze first: SNAS
anneals its temperature, and once the logits are nearly one-hot the penalty's gradient on
them vanishes, so the child stops moving a few per cent to tens of per cent away (measured
on digits, 15 epochs: 1.22 and 1.16 of params targets). :func:`project_to_band` is the
derivation step that finishes the job. It keeps the derivation rule's structure and trades
log-probability for cost:

* ``argmax`` (SNAS): every edge of each cell type takes one op, ``none`` meaning the edge
  is dropped; the child's log-probability is the sum over edges of log p(op).
* ``top2`` (DARTS): every node keeps two incoming edges from distinct inputs, each with a
  non-``none`` op; the child's log-probability is the sum over kept edges of log p(op).

Greedy: while the child's cost is outside the band, make the one change of a single edge
(argmax: its op; top2: the op or input of one kept edge) that lands the cost in the band at
the least loss of log-probability; if none lands, the change that removes the most error
per nat of log-probability lost. It stops inside the band, or when no change brings the cost
closer (then the closest child is returned). Not an exact knapsack: a greedy path over
single-edge changes, each step exact in cost (the caller's cost function).

Log-probability is a weak guide once the distribution is nearly one-hot: every alternative
op then costs about the same few nats, but their inherited weights differ in how well they
were trained. So with a `score` (e.g. the child's validation accuracy with the supernet's
weights), the landing change is the best-scoring of the `candidates` landing changes that
lose the least log-probability. Measured on digits (params targets, C=4, 15 epochs), the
landing change chosen by log-probability alone cost the child 0.5-12 points of validation
accuracy without retraining.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import keras
import numpy as np

from kerasnas.genotype import Genotype

__all__ = ["Projection", "project_to_band"]

MAX_CHANGES = 200
_TINY = 1e-12


@dataclasses.dataclass(frozen=True)
class Projection:
    """What :func:`project_to_band` did: the child, its cost, the start's cost, the number of
    edge changes, the log-probability (nats) they gave up, and how many children it scored."""

    genotype: Genotype
    cost: float
    start_cost: float
    changes: int
    logprob_lost: float
    in_band: bool
    scored: int = 0


def _log_probs(space, supernet: keras.Model) -> dict[str, dict[tuple[int, int], np.ndarray]]:
    out = {}
    for kind in ("normal", "reduce"):
        out[kind] = {}
        for src, dst in space.edges():
            p = keras.ops.convert_to_numpy(space.mixed_op(supernet, kind, src, dst).probabilities())
            out[kind][(src, dst)] = np.log(np.maximum(p.astype("float64"), _TINY))
    return out


def project_to_band(
    space,
    supernet: keras.Model,
    genotype: Genotype,
    rule: str,
    cost: Callable[[Genotype], float],
    target: float,
    band: float,
    score: Callable[[Genotype], float] | None = None,
    candidates: int = 8,
) -> Projection:
    """The child nearest in probability to `genotype` whose ``cost`` is within
    ``|log(cost / target)| <= band`` (see the module doc).

    Args:
      space: the :class:`~kerasnas.search_spaces.cell.CellSpace` of `supernet`.
      genotype: the derived child to start from (rule `rule` applied to `supernet`).
      rule: ``argmax`` or ``top2``.
      cost: the cost of a child (any unit, the same as `target`).
      target, band: the target cost (> 0) and the tolerance on the log ratio.
      score: higher is better (e.g. validation accuracy); picks the landing change among
        the `candidates` most probable ones. None: the most probable.
    """
    if rule not in ("argmax", "top2"):
        raise ValueError(f"project_to_band: rule must be 'argmax' or 'top2', got {rule!r}")
    logp = _log_probs(space, supernet)
    ops = list(space.ops)
    kinds = ("normal", "reduce")
    dsts = range(2, space.nodes + 2)
    # the child as {kind: {dst: {src: op index}}}
    choice = {
        kind: {
            dst: {src: ops.index(op) for op, src in node}
            for dst, node in enumerate(genotype.cell(kind), start=2)
        }
        for kind in kinds
    }

    def to_genotype(ch) -> Genotype:
        cells = {
            kind: tuple(
                tuple((ops[k], src) for src, k in sorted(ch[kind][dst].items())) for dst in dsts
            )
            for kind in kinds
        }
        return Genotype.of_cells(cells["normal"], cells["reduce"])

    def error(c: float) -> float:
        return abs(math.log(max(c, _TINY * target) / target))

    def moves(ch):
        """(kind, dst, new inputs of dst, log-probability change) of every single-edge change."""
        keep = [k for k, op in enumerate(ops) if op != "none"]
        for kind in kinds:
            for dst in dsts:
                node = ch[kind][dst]
                if rule == "argmax":
                    for src in range(dst):
                        old = node.get(src)  # None: dropped (its op is 'none')
                        lp = logp[kind][(src, dst)]
                        old_lp = lp[old] if old is not None else lp[ops.index("none")]
                        for k in range(len(ops)):
                            new = None if ops[k] == "none" else k
                            if new == old:
                                continue
                            changed = {s: o for s, o in node.items() if s != src}
                            if new is not None:
                                changed[src] = new
                            yield kind, dst, changed, float(lp[k] - old_lp)
                else:
                    for src, old in node.items():
                        old_lp = logp[kind][(src, dst)][old]
                        others = {s for s in node if s != src}
                        for new_src in range(dst):
                            if new_src in others:
                                continue
                            for k in keep:
                                if new_src == src and k == old:
                                    continue
                                changed = {s: o for s, o in node.items() if s != src}
                                changed[new_src] = k
                                delta = logp[kind][(new_src, dst)][k] - old_lp
                                yield kind, dst, changed, float(delta)

    start = current = float(cost(genotype))
    lost, changes = 0.0, 0
    scored = 0
    while error(current) > band and changes < MAX_CHANGES:
        landing, best_ratio = [], None
        for kind, dst, node, delta in moves(choice):
            trial = {**choice, kind: {**choice[kind], dst: node}}
            c = float(cost(to_genotype(trial)))
            gain = error(current) - error(c)
            if gain <= 0:
                continue
            if error(c) <= band:
                landing.append((delta, trial, c))
            else:
                ratio = -delta / gain  # nats lost per unit of error removed
                if best_ratio is None or ratio < best_ratio[0]:
                    best_ratio = (ratio, trial, c, delta)
        if landing:
            landing.sort(key=lambda t: -t[0])  # stable: the first found wins ties
            if score is not None and len(landing) > 1:
                shortlist = landing[:candidates]
                values = [float(score(to_genotype(trial))) for _, trial, _ in shortlist]
                scored += len(shortlist)
                delta, choice, current = shortlist[int(np.argmax(values))]
            else:
                delta, choice, current = landing[0]
        elif best_ratio is not None:
            _, choice, current, delta = best_ratio
        else:
            break
        lost -= delta
        changes += 1
    return Projection(
        genotype=to_genotype(choice) if changes else genotype,
        cost=current,
        start_cost=start,
        changes=changes,
        logprob_lost=lost,
        in_band=error(current) <= band,
        scored=scored,
    )


def steer_logits(space, supernet: keras.Model, genotype: Genotype, rule: str) -> None:
    """Makes `genotype` the child the rule derives from `supernet`'s logits, in place, by
    swapping logits (the distribution keeps its shape, its mass moves): an edge whose op
    changed swaps the old and the new op's logits; with ``top2``, an input a node no longer
    keeps swaps its whole logit vector with the input it keeps instead, then each kept
    edge swaps its op's logit with its strongest other non-``none`` op's (when the new op
    is not the strongest). Used to project a search's child into its target's band while
    the search goes on, so the weights adapt to the projected child before the end."""
    if rule not in ("argmax", "top2"):
        raise ValueError(f"steer_logits: rule must be 'argmax' or 'top2', got {rule!r}")
    ops = list(space.ops)
    current = space.derive(supernet, rule)

    def swap(layer, i: int, j: int) -> None:
        logits = layer.arch_logits.numpy().copy()
        logits[[i, j]] = logits[[j, i]]
        layer.arch_logits.assign(logits)

    for kind in ("normal", "reduce"):
        for dst, (old, new) in enumerate(
            zip(current.cell(kind), genotype.cell(kind), strict=True), 2
        ):
            old_ops, new_ops = {s: o for o, s in old}, {s: o for o, s in new}
            if rule == "argmax":
                for src in range(dst):
                    a, b = old_ops.get(src, "none"), new_ops.get(src, "none")
                    if a != b:
                        swap(
                            space.mixed_op(supernet, kind, src, dst).owner(),
                            ops.index(a),
                            ops.index(b),
                        )
                continue
            gone = sorted(set(old_ops) - set(new_ops))
            came = sorted(set(new_ops) - set(old_ops))
            for a, b in zip(gone, came, strict=True):
                la = space.mixed_op(supernet, kind, a, dst).owner()
                lb = space.mixed_op(supernet, kind, b, dst).owner()
                va = la.arch_logits.numpy().copy()
                vb = lb.arch_logits.numpy().copy()
                la.arch_logits.assign(vb)
                lb.arch_logits.assign(va)
            for src, op in new_ops.items():
                layer = space.mixed_op(supernet, kind, src, dst).owner()
                logits = layer.arch_logits.numpy()
                keep = [k for k, o in enumerate(ops) if o != "none"]
                strongest = max(keep, key=lambda k: logits[k])
                if ops[strongest] != op:
                    swap(layer, strongest, ops.index(op))
