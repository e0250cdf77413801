"""Every figure kerasnas draws, as PNG files written atomically (matplotlib Figure + Agg
canvas; pyplot is never touched): genotype cells, a trial-based search's curve, and the
comparison's accuracy, entropy and supernet-vs-child plots, and a Pareto front."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kerasnas.genotype import KINDS, Genotype
from kerasnas.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.patches import Circle

__all__ = ["plot_bars", "plot_cells", "plot_curves", "plot_pareto", "plot_search_curve"]

Point = tuple[float, float]

_INPUT_LABELS = (r"$c_{k-2}$", r"$c_{k-1}$")
_COLORS = {"input": "#a6cee3", "node": "#fdd58c", "empty": "#e0e0e0", "output": "#b2df8a"}
_TITLES = {"normal": "normal cell", "reduce": "reduction cell"}
_COL_GAP = 3.6  # horizontal distance between depth columns (data units)
_ROW_GAP = 1.5  # vertical distance between nodes of one column
_RADIUS = 0.36  # node circle radius
_ARROW_SCALE = 10  # arrowheads: head length 0.5 of this, in points
_CLEARANCE = _RADIUS + 0.22  # how far an edge should pass from the centre of a foreign node
_RADS = (0.0, 0.15, -0.15, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6)  # candidate edge curvatures
# Candidate label positions along an edge, best first (the middle, then outwards).
_LABEL_TS = tuple(0.5 + sign * k / 40 for k in range(13) for sign in ((1,) if k == 0 else (-1, 1)))
_EDGE_SAMPLES = 80  # points per edge when checking which edges a label would sit on
# Placement costs: per point of a label's 9x3 grid under a node, another label or outside
# the panel; per foreign edge under the label (x0.3 at its ends .. x1 at its middle).
_HIDDEN_COST = 10.0
_CROSSING_COST = {"op": 30.0, "concat": 12.0}
_LABEL_FONT = 6.5
_LABEL_STYLE: dict[str, Any] = {
    "fontsize": _LABEL_FONT,
    "ha": "center",
    "va": "center",
    "rotation_mode": "anchor",
    "zorder": 2,
    "bbox": {"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.9},
}


def _layout(cell: tuple) -> dict[int, Point]:
    """Positions of DAG nodes 0..N+1 and the output (index N+2), in columns by depth."""
    depth = {0: 0, 1: 0}
    for k, node in enumerate(cell):
        depth[k + 2] = 1 + max((depth[src] for _, src in node), default=0)
    depth[len(cell) + 2] = 1 + max(depth.values())
    columns: dict[int, list[int]] = {}
    for index in sorted(depth):
        columns.setdefault(depth[index], []).append(index)
    pos: dict[int, Point] = {}
    for col, members in columns.items():
        top = (len(members) - 1) * _ROW_GAP / 2
        for row, index in enumerate(members):
            pos[index] = (col * _COL_GAP, top - row * _ROW_GAP)
    return pos


def _control(p0: Point, p2: Point, rad: float) -> Point:
    """Control point of matplotlib's ``arc3,rad=rad`` quadratic curve (valid at equal aspect)."""
    (x0, y0), (x2, y2) = p0, p2
    return (x0 + x2) / 2 + rad * (y2 - y0), (y0 + y2) / 2 - rad * (x2 - x0)


def _curve_point(p0: Point, p2: Point, rad: float, t: float) -> Point:
    """Point at parameter t on the ``arc3`` curve from p0 to p2."""
    (x0, y0), (x2, y2), (cx, cy) = p0, p2, _control(p0, p2, rad)
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
    return a * x0 + b * cx + c * x2, a * y0 + b * cy + c * y2


def _curve_angle(p0: Point, p2: Point, rad: float, t: float) -> float:
    """Direction in degrees of the ``arc3`` curve at t, folded into -90..90 to stay readable."""
    (x0, y0), (x2, y2), (cx, cy) = p0, p2, _control(p0, p2, rad)
    dx = (1 - t) * (cx - x0) + t * (x2 - cx)
    dy = (1 - t) * (cy - y0) + t * (y2 - cy)
    angle = math.degrees(math.atan2(dy, dx))
    return angle - 180 if angle > 90 else angle + 180 if angle < -90 else angle


def _route(p0: Point, p2: Point, obstacles: list[Point], taken: list[float]) -> float:
    """Curvature for an edge p0->p2 that keeps clear of `obstacles` and of parallel edges."""
    best, best_clear = _RADS[0], -math.inf
    for rad in _RADS:
        if any(abs(rad - r) < 0.2 for r in taken):
            continue
        samples = [_curve_point(p0, p2, rad, i / 20) for i in range(1, 20)]
        clear = min(
            (math.dist(s, o) for s in samples for o in obstacles),
            default=math.inf,
        )
        if clear >= _CLEARANCE:
            return rad
        if clear > best_clear:
            best, best_clear = rad, clear
    return best


class _CellDrawing:
    """One panel: nodes and arrows are drawn at once; labels once the layout is final."""

    def __init__(self, ax: Axes, genotype: Genotype, kind: str) -> None:
        self.ax = ax
        self.cell = genotype.cell(kind)
        self.output = len(self.cell) + 2
        self.pos = _layout(self.cell)
        self.circles: dict[int, Circle] = {}
        self.labels: list[tuple[str, int, Point, Point, float]] = []  # op, edge, p0, p2, rad
        self.edges: list[tuple[str, Point, Point, float]] = []  # kind, p0, p2, rad
        self.curve_ys: list[float] = []
        self._draw_nodes()
        routes: dict[tuple[int, int], list[float]] = {}
        for k, node in enumerate(self.cell):
            for op, src in node:
                rad = self._arrow(src, k + 2, routes, color="black", linewidth=0.9)
                self.labels.append((op, len(self.edges), self.pos[src], self.pos[k + 2], rad))
                self.edges.append(("op", self.pos[src], self.pos[k + 2], rad))
        for index in genotype.concat(kind):
            rad = self._arrow(
                index, self.output, routes, color="#9a9a9a", linestyle="--", linewidth=0.9
            )
            self.edges.append(("concat", self.pos[index], self.pos[self.output], rad))
        xs = [x for x, _ in self.pos.values()]
        ys = [y for _, y in self.pos.values()]
        bottom = min(min(ys) - 0.85, min(self.curve_ys, default=0.0) - 0.3)
        top = max(max(ys) + 0.6, max(self.curve_ys, default=0.0) + 0.3)
        ax.set_xlim(min(xs) - 0.75, max(xs) + 0.75)
        ax.set_ylim(bottom, top)
        self.size = (max(xs) - min(xs) + 1.5, top - bottom)  # data units
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(_TITLES[kind], fontsize=11)

    def _draw_nodes(self) -> None:
        from matplotlib.patches import Circle

        for index, (x, y) in self.pos.items():
            if index < 2:
                role, text = "input", _INPUT_LABELS[index]
            elif index == self.output:
                role, text = "output", r"$c_{k}$"
            else:  # numbered as in genotype.json: inputs 0 and 1, then 2..N+1
                role, text = ("node" if self.cell[index - 2] else "empty"), str(index)
            empty = role == "empty"
            circle = Circle(
                (x, y),
                _RADIUS,
                facecolor=_COLORS[role],
                edgecolor="#8c8c8c" if empty else "black",
                linestyle="--" if empty else "-",
                linewidth=1.0,
                zorder=3,
            )
            self.ax.add_patch(circle)
            self.circles[index] = circle
            color = "#777777" if empty else "black"
            self.ax.text(x, y, text, ha="center", va="center", fontsize=10, color=color, zorder=4)
            if role == "input":  # its number in genotype.json, left of the circle
                self.ax.text(
                    x - _RADIUS - 0.08,
                    y,
                    str(index),
                    ha="right",
                    va="center",
                    fontsize=9,
                    color="#555555",
                    zorder=4,
                )
            if empty:
                below = y - _RADIUS - 0.08
                self.ax.text(
                    x,
                    below,
                    "no inputs",
                    ha="center",
                    va="top",
                    fontsize=_LABEL_FONT,
                    color="#777777",
                )

    def _arrow(
        self, src: int, dst: int, routes: dict[tuple[int, int], list[float]], **style: Any
    ) -> float:
        from matplotlib.patches import FancyArrowPatch

        obstacles = [p for i, p in self.pos.items() if i not in (src, dst)]
        taken = routes.setdefault((src, dst), [])
        rad = _route(self.pos[src], self.pos[dst], obstacles, taken)
        taken.append(rad)
        self.curve_ys += [
            _curve_point(self.pos[src], self.pos[dst], rad, t / 8)[1] for t in range(9)
        ]
        self.ax.add_patch(
            FancyArrowPatch(
                self.pos[src],
                self.pos[dst],
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>,head_length=0.5,head_width=0.22",
                mutation_scale=_ARROW_SCALE,
                patchA=self.circles[src],
                patchB=self.circles[dst],
                shrinkA=0,
                shrinkB=1,
                zorder=1,
                **style,
            )
        )
        return rad

    def place_labels(self, renderer: RendererBase) -> None:
        """Adds the op labels along their edges, each where it covers the least: no node,
        no other label and, above all, no other edge (a label on a crossing is ambiguous;
        a foreign edge costs more the nearer it passes to the label's middle)."""
        import numpy as np

        frame = self.ax.get_window_extent(renderer)
        to_px = self.ax.transData.transform
        boxes = [c.get_window_extent(renderer) for c in self.circles.values()]
        centres = np.array([((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2) for b in boxes])
        # a node's footprint reaches over the arrowheads that end on it
        head = renderer.points_to_pixels(_ARROW_SCALE * 0.5) + 2
        radii = np.array([b.width / 2 + head for b in boxes])
        ts = (np.arange(_EDGE_SAMPLES) + 0.5) / _EDGE_SAMPLES
        paths = [to_px([_curve_point(p0, p2, rad, t) for t in ts]) for _, p0, p2, rad in self.edges]
        placed: list[_Rect] = []
        for op, edge, p0, p2, rad in self.labels:
            probe = self.ax.text(0, 0, op, **_LABEL_STYLE)
            size = probe.get_window_extent(renderer)
            probe.remove()
            foreign = [(self.edges[j][0], path) for j, path in enumerate(paths) if j != edge]
            best, best_cost = None, math.inf
            for t in _LABEL_TS:
                x, y = _curve_point(p0, p2, rad, t)
                angle = _curve_angle(p0, p2, rad, t)
                px, py = to_px((x, y))
                rect = _Rect(px, py, size.width / 2 + 2, size.height / 2 + 1, angle)
                margin = _Rect(px, py, size.width / 2 + 5, size.height / 2 + 4, angle)
                points = rect.points()
                hidden = (
                    (np.linalg.norm(points[:, None] - centres, axis=-1) < radii).any(-1)
                    | ~((points[:, 0] >= frame.x0) & (points[:, 0] <= frame.x1))
                    | ~((points[:, 1] >= frame.y0) & (points[:, 1] <= frame.y1))
                )
                for other in placed:
                    hidden |= other.contains(points)
                hidden_points = hidden.sum()
                hidden_points += sum(rect.contains(other.points()).sum() for other in placed)
                cost = _HIDDEN_COST * float(hidden_points)
                for kind, path in foreign:
                    inside = margin.contains(path)
                    if inside.any():
                        middle = 1 - np.abs(margin.along(path[inside])).min() / margin.hw
                        cost += _CROSSING_COST[kind] * (0.3 + 0.7 * middle)
                cost += 2 * abs(t - 0.5)  # all else equal, the middle of the edge
                if cost < best_cost:
                    best, best_cost = (x, y, angle, rect), cost
            assert best is not None
            x, y, angle, rect = best
            self.ax.text(x, y, op, rotation=angle, **_LABEL_STYLE)
            placed.append(rect)


class _Rect:
    """A rotated rectangle in display coordinates (a label's footprint)."""

    def __init__(self, cx: float, cy: float, hw: float, hh: float, angle: float) -> None:
        self.cx, self.cy, self.hw, self.hh = cx, cy, hw, hh
        self.cos, self.sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        self._points = None

    def along(self, points):
        """Coordinates of `points` (M, 2) along the rectangle's long axis, from its centre."""
        return (points[:, 0] - self.cx) * self.cos + (points[:, 1] - self.cy) * self.sin

    def contains(self, points):
        """Whether each of `points` (M, 2) is inside, a bool array (M,)."""
        dx, dy = points[:, 0] - self.cx, points[:, 1] - self.cy
        u, v = dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos
        return (abs(u) <= self.hw) & (abs(v) <= self.hh)

    def points(self):
        """A 9x3 grid over the rectangle, corners included, (27, 2)."""
        import numpy as np

        if self._points is None:
            u, v = np.meshgrid(self.hw * (np.arange(9) / 4 - 1), self.hh * (np.arange(3) - 1))
            u, v = u.ravel(), v.ravel()
            self._points = np.stack(
                [self.cx + u * self.cos - v * self.sin, self.cy + u * self.sin + v * self.cos], -1
            )
        return self._points


def plot_cells(genotype: Genotype, path: str | os.PathLike, title: str | None = None) -> None:
    """Writes one PNG to `path` (atomically) showing the normal and the reduction cell.

    Nodes are laid out left-to-right by depth and numbered as in ``genotype.json``: the
    inputs ``c_{k-2}`` (0) and ``c_{k-1}`` (1), intermediate nodes 2..N+1 (grey and dashed
    when they have no inputs), and the output ``c_{k}``. Every edge is labelled with its op,
    placed off other edges where there is room; grey dashed arrows mark the nodes
    concatenated into the output.
    """
    if not isinstance(genotype, Genotype):
        raise TypeError(f"plot_cells: expected a Genotype, got {type(genotype).__name__}")
    fig = _cells_figure(genotype, title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor="white")


def _cells_figure(genotype: Genotype, title: str | None = None):
    """The figure :func:`plot_cells` writes: a panel per cell kind, labels placed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(dpi=150)
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1)
    drawings = [_CellDrawing(ax, genotype, kind) for ax, kind in zip(axes, KINDS, strict=False)]
    # Size the figure so one data unit is about the same length in both panels.
    scale = 0.62  # inches per data unit
    width = max(d.size[0] for d in drawings)
    heights = [d.size[1] for d in drawings]
    axes[0].get_gridspec().set_height_ratios(heights)
    for drawing in drawings:  # same data width, hence the same scale, in both panels
        left = drawing.ax.get_xlim()[0]
        drawing.ax.set_xlim(left, left + width)
    fig.set_size_inches(max(6.0, width * scale), sum(heights) * scale + (1.1 if title else 0.7))
    if title:
        fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    fig.set_layout_engine("none")  # layout is final: labels are placed against it
    renderer = canvas.get_renderer()
    for drawing in drawings:
        drawing.ax.apply_aspect()
        drawing.place_labels(renderer)
    return fig


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def plot_search_curve(records: list[dict[str, Any]], path: str | os.PathLike, title: str) -> None:
    """Best reward so far (blue steps) against completed trials and against wall-clock
    seconds since the first trial started; a grey dot per trial, its own reward where it
    ended. `records` have ``reward``, ``start_time`` and ``end_time`` (seconds since the
    epoch; None: not finished)."""
    done = sorted(
        (r for r in records if r["reward"] is not None and r["end_time"] is not None),
        key=lambda r: r["end_time"],
    )
    origin = min((r["start_time"] for r in done), default=0.0)
    best, curve = float("-inf"), []
    for r in done:
        best = max(best, float(r["reward"]))
        curve.append(best)
    fig = _figure(9, 3.6)
    for k, (xs, label) in enumerate(
        (
            (list(range(1, len(done) + 1)), "completed trials"),
            ([r["end_time"] - origin for r in done], "wall-clock seconds"),
        )
    ):
        ax = fig.add_subplot(1, 2, k + 1)
        ax.step(xs, curve, where="post", color="tab:blue", label="best so far")
        rewards = [float(r["reward"]) for r in done]
        ax.plot(xs, rewards, ".", color="tab:gray", alpha=0.6, label="one trial")
        ax.set_xlabel(label)
        ax.set_ylabel("reward")
        ax.grid(alpha=0.3)
        if k == 0 and done:
            ax.legend(loc="lower right")
    fig.suptitle(title)
    _save(fig, path)


def plot_curves(
    series: dict[str, list[list[float]]],
    styles: dict[str, tuple[str, str]],
    xlabel: str,
    ylabel: str,
    path: str | os.PathLike,
    xs: dict[str, list[list[float]]] | None = None,
) -> None:
    """Curves against their index (1-based), or against `xs` (the same shape as `series`:
    an x per value, e.g. seconds): per group of `series` (name -> one list of values per
    run, runs may differ in length) a thin line per run and their mean bold (at each
    index up to the shortest run, the mean of the runs' x and of their values), in the
    group's (label, colour) of `styles`."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for name, curves in series.items():
        if xs is None:
            pairs = [(list(range(1, len(c) + 1)), c) for c in curves if c]
        else:
            pairs = [(x, c) for x, c in zip(xs[name], curves, strict=True) if c]
        if not pairs:
            continue
        label, color = styles[name]
        for x, c in pairs:
            ax.plot(x, c, color=color, alpha=0.25, lw=1, marker="." if len(c) == 1 else None)
        n = min(len(c) for _, c in pairs)
        mean_x = [sum(x[i] for x, _ in pairs) / len(pairs) for i in range(n)]
        mean = [sum(c[i] for _, c in pairs) / len(pairs) for i in range(n)]
        ax.plot(mean_x, mean, color=color, lw=2, label=label, marker="o" if n == 1 else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def plot_bars(
    groups: dict[str, tuple[list[float], list[float]]],
    styles: dict[str, tuple[str, str]],
    ylabel: str,
    title: str,
    path: str | os.PathLike,
) -> None:
    """Two bars per group (name -> (left values, right values), one value per run): the
    mean of each side, the left one lighter, with a dot per run."""
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.38
    names = list(groups)
    for i, name in enumerate(names):
        for j, (values, shade) in enumerate(zip(groups[name], (0.45, 1.0), strict=True)):
            x = i + (j - 0.5) * width
            ax.bar(x, sum(values) / len(values), width, color=styles[name][1], alpha=shade)
            ax.plot([x] * len(values), values, "k.", ms=4)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([styles[n][0] for n in names], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)


def plot_pareto(
    rows: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    title: str,
    front_key: str = "accuracy",
) -> None:
    """The figure of :func:`kerasnas.pareto.plot_front` (see there): `rows` are
    ``pareto.csv`` rows; the front line joins the `front_key` accuracies of its points."""
    from kerasnas.pareto import UNITS, front_indices

    points = [r for r in rows if r.get("child_cost") is not None and r.get("accuracy") is not None]
    costs = [float(r["child_cost"]) for r in points]
    accuracies = [float(r["accuracy"]) for r in points]
    if any(r.get("on_front") is not None for r in points):
        front = [i for i, r in enumerate(points) if r.get("on_front")]
        front.sort(key=lambda i: (costs[i], -accuracies[i]))
    else:
        front = front_indices(costs, accuracies)
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(costs, accuracies, "o", color="tab:gray", alpha=0.45, ms=4, label="all points")
    front = [i for i in front if points[i].get(front_key) is not None]
    ax.plot(
        [costs[i] for i in front],
        [float(points[i][front_key]) for i in front],
        "-",
        color="tab:blue",
        drawstyle="steps-post",
        label="front" if front_key == "accuracy" else "front (after retraining)",
    )
    retrained = [
        (
            costs[i],
            points[i].get("retrained_accuracy"),
            accuracies[i],
            points[i].get("retrained_std"),
        )
        for i in range(len(points))
    ]
    retrained = [(c, float(r), a, float(s or 0)) for c, r, a, s in retrained if r is not None]
    if retrained:
        for c, r, a, _ in retrained:
            ax.plot([c, c], [a, r], color="tab:orange", lw=0.8, alpha=0.6)
        spread = any(s > 0 for *_, s in retrained)
        ax.errorbar(
            [c for c, *_ in retrained],
            [r for _, r, *_ in retrained],
            yerr=[s for *_, s in retrained] if spread else None,
            fmt="s",
            color="tab:orange",
            ms=5,
            capsize=3,
            label="after retraining" + (" (mean +- std over seeds)" if spread else ""),
        )
    exported = [i for i, r in enumerate(points) if r.get("dir")]
    if exported:
        ax.plot(
            [costs[i] for i in exported],
            [accuracies[i] for i in exported],
            "o",
            mfc="none",
            mec="black",
            ms=10,
            label="exported",
        )
    positive = [c for c in costs if c > 0]
    if positive and max(positive) > 10 * min(positive):
        ax.set_xscale("log")
    resources = {r.get("resource") for r in points} - {None, ""}
    resource = resources.pop() if len(resources) == 1 else None
    ax.set_xlabel(f"child {UNITS.get(resource, resource)}" if resource else "child cost")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3, which="both")
    if points:
        ax.legend(loc="lower right")
    ax.set_title(title, fontsize=10)
    _save(fig, path)
