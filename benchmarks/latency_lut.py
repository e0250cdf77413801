"""How well does the per-op latency table predict whole children? (prints figures; not a test)

For random children of the digits cell space (random genotypes from a fixed seed; each edge
is `none` with a per-child probability drawn from U(0, 0.9), else a uniform non-`none` op),
the predicted latency is

    fixed + sum over the child's edge ops of the table latency (kerasnas.latency)

where `fixed` (stem, preprocessing, cell inputs, concatenations, classifier) is a fitted
intercept: the mean of (measured - sum of ops) over the other children (leave-one-out, so
the reported errors are honest). The child whose every edge is `none` is printed too but is
no good as `fixed`: the converter prunes everything its output does not depend on, and
zeros depend on nothing, so most of the stem and cell inputs vanish. The same happens to a
child with a cell without edges (marked `*`): the ops before that cell are dead code.

Each child (weights randomised like a trained one) is converted to float TFLite with
litert.convert_keras_frozen (same TFLite ops as the SavedModel export path, 7x faster;
--saved_model uses litert.convert_keras) and timed with litert.latency_ms, three
interleaved rounds, median. Prints a table per thread count and Pearson / Spearman
correlations of predicted and measured latency.

  python benchmarks/latency_lut.py [--children=24] [--threads=1,2] [--cache_dir=...]
"""

from __future__ import annotations

import time

import numpy as np
from absl import app, flags

import kerasnas
from kerasnas import data as data_lib
from kerasnas import latency
from kerasnas.export import litert
from kerasnas.genotype import Genotype
from kerasnas.layers import mixed_ops
from kerasnas.search_spaces.cell import CELL_KINDS, CellSpace

flags.DEFINE_integer("children", 24, "Random children to measure.", lower_bound=3)
flags.DEFINE_list("threads", ["1", "2"], "LiteRT thread counts to measure.")
flags.DEFINE_integer("seed", 0, "Seed of the random genotypes.")
flags.DEFINE_integer("runs", 300, "Timed invokes per child (median).", lower_bound=1)
flags.DEFINE_string("cache_dir", None, "Latency table cache (default: kerasnas' default).")
flags.DEFINE_integer("init_channels", 8, "C.")
flags.DEFINE_integer("layers", 5, "L.")
flags.DEFINE_integer("nodes", 4, "N.")
flags.DEFINE_boolean("saved_model", False, "Convert children via SavedModel (slow).")
FLAGS = flags.FLAGS


def random_genotype(space: CellSpace, rng: np.random.Generator, p_none: float) -> Genotype:
    """Every edge of both cell kinds: `none` with probability p_none, else a random op."""
    others = [op for op in space.ops if op != "none"]
    cells = {}
    for kind in CELL_KINDS:
        nodes = []
        for dst in range(2, space.nodes + 2):
            pairs = []
            for src in range(dst):
                if rng.random() >= p_none:
                    pairs.append((others[rng.integers(len(others))], src))
            nodes.append(tuple(pairs))
        cells[kind] = tuple(nodes)
    concat = tuple(range(2, space.nodes + 2))
    return Genotype(cells["normal"], concat, cells["reduce"], concat)


def predicted_ops_ms(space, supernet, genotype, table) -> float:
    """Sum of the table latencies of the child's edge ops (every cell, ms)."""
    total = 0.0
    for cell in range(space.layers):
        kind = "reduce" if cell in space.reduction_cells else "normal"
        for src, dst, op in genotype.edges(kind):
            mixed = supernet.get_layer(f"cell{cell}_edge{src}_{dst}")
            candidate = mixed.candidates[mixed.candidate_names.index(op)]
            shape = latency._input_shape(mixed)
            ms = table.lookup(candidate, shape, mixed.strides)
            assert ms is not None, (op, shape)
            total += ms
    return total


def child_tflite(space, genotype, preprocessing) -> bytes:
    child = space.build_child(genotype, preprocessing=preprocessing)
    latency.randomize_weights(child)  # trained-like batch norm statistics
    if FLAGS.saved_model:
        return litert.convert_keras(child)
    return litert.convert_keras_frozen(child)


def has_empty_cell(genotype: Genotype) -> bool:
    return any(not genotype.edges(kind) for kind in CELL_KINDS)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv):
    del argv
    kerasnas.ops  # noqa: B018 - registers the layers
    bundle = data_lib.load("digits")
    space = CellSpace(
        bundle.input_shape, bundle.num_classes, FLAGS.init_channels, FLAGS.layers, FLAGS.nodes
    )
    supernet = space.build_supernet("gumbel", seed=0)
    rng = np.random.default_rng(FLAGS.seed)
    genotypes = [random_genotype(space, rng, rng.uniform(0.0, 0.9)) for _ in range(FLAGS.children)]
    empty = Genotype(
        ((),) * space.nodes,
        range(2, space.nodes + 2),
        ((),) * space.nodes,
        range(2, space.nodes + 2),
    )
    t0 = time.perf_counter()
    models = [child_tflite(space, g, bundle.normalization_layer()) for g in genotypes]
    empty_model = child_tflite(space, empty, bundle.normalization_layer())
    print(f"converted {len(models) + 1} children in {time.perf_counter() - t0:.0f} s")
    for threads in [int(t) for t in FLAGS.threads]:
        table = latency.attach_latency(
            mixed_ops(supernet), cache_dir=FLAGS.cache_dir, num_threads=threads, verbose=1
        )
        fixed = litert.latency_ms(empty_model, threads, FLAGS.runs)
        ops_ms = np.array([predicted_ops_ms(space, supernet, g, table) for g in genotypes])
        # interleave rounds so slow drift of the machine hits every child alike
        rounds = [
            [litert.latency_ms(m, threads, FLAGS.runs // 3) for m in models] for _ in range(3)
        ]
        measured = np.median(np.array(rounds), axis=0)
        # leave-one-out intercept (slope 1): fixed part of child i from the other children
        n = len(genotypes)
        fixed_loo = np.array([np.mean(np.delete(measured - ops_ms, i)) for i in range(n)])
        predicted = fixed_loo + ops_ms
        edges = [sum(len(g.edges(k)) for k in CELL_KINDS) for g in genotypes]
        dead = np.array([has_empty_cell(g) for g in genotypes])
        print(
            f"\n== {threads} thread(s): fixed part (intercept) {np.mean(measured - ops_ms):.4f} ms"
            f"; all-none child measured {fixed:.4f} ms =="
        )
        print(f"{'child':>6} {'edges':>5} {'ops ms':>8} {'predicted':>9} {'measured':>9}")
        for i in range(n):
            mark = "*" if dead[i] else " "
            print(
                f"{i:>5}{mark} {edges[i]:>5} {ops_ms[i]:>8.4f} {predicted[i]:>9.4f} "
                f"{measured[i]:>9.4f}"
            )
        for label, keep in (("all children", np.ones(n, bool)), ("without *", ~dead)):
            p, m = predicted[keep], measured[keep]
            rel = np.abs(p - m) / m
            print(
                f"{label} ({keep.sum()}): Pearson r = {np.corrcoef(p, m)[0, 1]:.3f}, "
                f"Spearman rho = {spearman(p, m):.3f}, mean |error| {np.mean(rel) * 100:.1f}% "
                f"(max {np.max(rel) * 100:.1f}%)"
            )
        slope, intercept = np.polyfit(ops_ms[~dead], measured[~dead], 1)
        print(f"least squares without *: measured = {slope:.3f} * ops ms + {intercept:.4f} ms")


if __name__ == "__main__":
    app.run(main)
