"""``python -m kerasnas.cli.latency``: measure (or read from the cache) the per-op LiteRT
latency table of a cell supernet and print it (see :mod:`kerasnas.latency`).

  python -m kerasnas.cli.latency --dataset=digits --init_channels=8 --layers=5 --nodes=4
"""

from __future__ import annotations

from kerasnas.cli.command import Command
from kerasnas.errors import SettingError
from kerasnas.jobs.base import DATASET_HELP
from kerasnas.names import PRIMITIVES

COMMAND = Command("kerasnas.cli.latency", __doc__ or "")
FLAGS = COMMAND.flags
for _kind, _name, _default, _help in (
    ("string", "dataset", "digits", DATASET_HELP + " Gives the input shape."),
    ("integer", "init_channels", 8, "C: channels of the first cells."),
    ("integer", "layers", 5, "L: number of cells."),
    ("integer", "nodes", 4, "N: intermediate nodes per cell."),
    ("list", "ops", list(PRIMITIVES), "Candidate ops, comma separated."),
    ("integer", "num_threads", 1, "LiteRT interpreter threads."),
    (
        "string",
        "cache_dir",
        None,
        "Cache directory (default $KERASNAS_CACHE/latency, else ~/.cache/kerasnas/latency).",
    ),
    ("integer", "runs", 200, "Timed invokes per op (median)."),
):
    COMMAND.define(_kind, _name, _default, _help)


def print_table() -> None:
    """Builds the supernet of the flags, measures its table and prints it."""
    from kerasnas import data as data_lib
    from kerasnas.latency import LatencyTable, attach_latency, table_rows
    from kerasnas.layers import mixed_ops
    from kerasnas.search_spaces.cell import CellSpace

    bundle = data_lib.load(FLAGS.dataset)
    space = CellSpace(
        bundle.input_shape,
        bundle.num_classes,
        FLAGS.init_channels,
        FLAGS.layers,
        FLAGS.nodes,
        tuple(FLAGS.ops),
    )
    supernet = space.build_supernet("gumbel", seed=0)
    table = LatencyTable(FLAGS.cache_dir, FLAGS.num_threads, runs=FLAGS.runs, verbose=1)
    layers = mixed_ops(supernet)
    try:
        attach_latency(layers, table)
    except OSError as e:
        raise SettingError(f"{{cache_dir}}: cannot write the table ({e})") from None
    print(f"\nlatency table ({table.path or 'not cached'}); device {table.device}")
    print(f"{'op':<14} {'input':>9} {'stride':>6} {'ms':>9} {'edges':>5}")
    for row in table_rows(layers, table):
        shape = "x".join(map(str, row["input_shape"]))
        ms = f"{row['ms']:.4f}" + ("*" if row["rule"] else " ")
        print(f"{row['op']:<14} {shape:>9} {row['strides']:>6} {ms:>9} {row['edges']:>5}")
    print("* 0 by rule (none deletes the edge; an identity converts to no TFLite op)")


main, run = COMMAND.entry_points(print_table)


if __name__ == "__main__":
    run()
