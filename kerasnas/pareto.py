"""Pareto fronts of (accuracy, cost): non-dominated sorting and crowding distance (NSGA-II,
Deb, Pratap, Agarwal and Meyarivan, IEEE TEC 2002), the 2-D front and its hypervolume, and
the ``pareto.csv`` / ``pareto.png`` every front-producing command writes.

Numpy only at import (matplotlib is imported when a figure is drawn), so that a command can
read and write fronts before TensorFlow loads.

``pareto.csv`` has one row per point, the columns :data:`COLUMNS`:

- ``point``: the point's name (a trial id, a target's label, ...);
- ``target``: the cost target the point was searched for, e.g. ``params:30k``; empty for a
  search without a target;
- ``resource``: the cost axis: ``params``, ``flops``, ``mac`` or ``latency``;
- ``child_cost``: the child's cost in that resource's unit (a count; milliseconds for
  ``latency``);
- ``child_params``, ``child_flops``: the child's parameter and FLOP counts;
- ``accuracy``: the child's accuracy without retraining (see the writer for which split);
- ``retrained_accuracy``: its test accuracy after retraining (the mean over the retraining
  seeds where there are several); empty when not retrained;
- ``retrained_std``: the sample standard deviation of that accuracy over the retraining
  seeds; empty with fewer than two;
- ``latency_ms``: the child's float TFLite latency on this machine, LiteRT at 1 thread
  (:func:`kerasnas.export.litert.latency_ms`); empty when not exported;
- ``on_front``: 1 when no other row dominates it in (``child_cost``, ``accuracy``), else 0;
- ``dir``: the point's directory relative to the csv; empty when none was kept.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from kerasnas.io import write_text

__all__ = [
    "COLUMNS",
    "UNITS",
    "crowding_distance",
    "dominates",
    "front_indices",
    "hypervolume",
    "non_dominated_sort",
    "plot_front",
    "read_csv",
    "write_csv",
]

COLUMNS = (
    "point",
    "target",
    "resource",
    "child_cost",
    "child_params",
    "child_flops",
    "accuracy",
    "retrained_accuracy",
    "retrained_std",
    "latency_ms",
    "on_front",
    "dir",
)
# the type of each column when read back (str columns are kept as written)
_INTS = ("child_params", "child_flops", "on_front")
_FLOATS = ("child_cost", "accuracy", "retrained_accuracy", "retrained_std", "latency_ms")
# each resource's axis label
UNITS = {
    "params": "parameters",
    "flops": "FLOPs (mult-adds)",
    "mac": "memory accesses (elements)",
    "latency": "latency (ms)",
}


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether `a` dominates `b` (objectives to minimise): no worse in every objective and
    better in at least one."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_sort(objectives: Any) -> list[list[int]]:
    """The fronts of the points, best first (Deb et al.'s fast non-dominated sort).

    Args:
      objectives: shape (n, m), every objective to MINIMISE.

    Returns:
      Lists of row indices, ascending within each: front 0 holds the points no other point
      dominates, front k those only points of fronts < k dominate. Equal points share a
      front. Every index appears once; n = 0 gives [].
    """
    f = np.asarray(objectives, float)
    if f.ndim != 2:
        raise ValueError(f"objectives must have shape (n, m), got {f.shape}")
    n = f.shape[0]
    if n == 0:
        return []
    le = np.all(f[:, None, :] <= f[None, :, :], axis=2)
    lt = np.any(f[:, None, :] < f[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many points dominate j
    fronts, current = [], np.flatnonzero(count == 0)
    while current.size:
        fronts.append([int(i) for i in current])
        count = count - dom[current].sum(axis=0)
        count[current] = -1  # placed
        current = np.flatnonzero(count == 0)
    return fronts


def crowding_distance(objectives: Any, front: Sequence[int]) -> np.ndarray:
    """The crowding distance of each point of `front` (indices into `objectives`, shape
    (n, m)), in the order of `front`: per objective, the gap between its two neighbours
    along that objective divided by the front's range of it, summed over objectives. The
    extreme points of each objective get infinity (so do all points of a front of at most
    two); an objective with zero range adds nothing."""
    f = np.asarray(objectives, float)[list(front)]
    k = len(front)
    distance = np.zeros(k)
    if k <= 2:
        return np.full(k, np.inf)
    for column in f.T:
        order = np.argsort(column, kind="stable")
        values = column[order]
        span = values[-1] - values[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (values[2:] - values[:-2]) / span
    return distance


def front_indices(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (lower or equal cost and higher or
    equal accuracy, one of them strictly), sorted by cost (then accuracy, highest first).
    Points whose cost or accuracy is missing (None or NaN) are never on the front."""
    points = [
        (float(c), float(a), i)
        for i, (c, a) in enumerate(zip(costs, accuracies, strict=True))
        if _finite(c) and _finite(a)
    ]
    if not points:
        return []
    objectives = [(c, -a) for c, a, _ in points]
    first = non_dominated_sort(objectives)[0]
    return sorted((points[j][2] for j in first), key=lambda i: (costs[i], -accuracies[i], i))


def hypervolume(objectives: Any, reference: Sequence[float]) -> float:
    """The 2-D hypervolume (area) dominated by the points of `objectives` (shape (n, 2),
    both to minimise) and bounded by `reference`; points not strictly better than the
    reference in both objectives add nothing. E.g. for a front of (params, accuracy):
    ``hypervolume([(log10(p), 1 - a) ...], (log10(p_max), 1 - a_min))``."""
    f = np.asarray(objectives, float).reshape(-1, 2)
    r0, r1 = (float(v) for v in reference)
    f = f[(f[:, 0] < r0) & (f[:, 1] < r1)]
    if not len(f):
        return 0.0
    f = f[np.lexsort((f[:, 1], f[:, 0]))]
    area, best = 0.0, r1
    for i, (x, y) in enumerate(f):
        if y < best:
            best = y
        right = f[i + 1, 0] if i + 1 < len(f) else r0
        area += (right - x) * (r1 - best)
    return float(area)


def _finite(value: Any) -> bool:
    return value is not None and value != "" and math.isfinite(float(value))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # the shortest text that reads back to the same float
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def write_csv(path: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> None:
    """Writes `rows` (dicts keyed by :data:`COLUMNS`; a missing key or None: an empty cell)
    to `path` atomically, in the order given. Floats are written with all their digits.
    A key outside :data:`COLUMNS` raises ValueError."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"pareto.csv has no column {sorted(unknown)}; its columns: {COLUMNS}")
        writer.writerow([_cell(row.get(c)) for c in COLUMNS])
    write_text(path, buffer.getvalue())


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``pareto.csv``: every column of :data:`COLUMNS` present, empty cells as
    None, counts and ``on_front`` as int, costs, accuracies and latencies as float, the rest
    as str."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = []
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for c in COLUMNS:
                text = raw.get(c) or ""
                if text == "":
                    row[c] = None
                elif c in _INTS:
                    row[c] = int(float(text))
                elif c in _FLOATS:
                    row[c] = float(text)
                else:
                    row[c] = text
            rows.append(row)
    return rows


def plot_front(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    title: str = "Pareto front",
    front_key: str = "accuracy",
) -> None:
    """Draws ``pareto.png`` from ``pareto.csv`` rows: every point grey, the front (rows with
    ``on_front``; computed from ``child_cost`` and ``accuracy`` when no row says) connected
    in colour, x = ``child_cost`` in its resource's unit (log scale when it spans more than
    10x), y = accuracy; a point's ``retrained_accuracy``, where present, as a second marker
    joined to its first (with ``retrained_std`` as an error bar); points with a ``dir``
    (exported) ringed. The front line joins the `front_key` accuracies
    (``retrained_accuracy``: a front judged after retraining)."""
    from kerasnas.plotting import plot_pareto

    plot_pareto(rows, path, title, front_key)
