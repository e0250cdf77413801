"""Tests for kerasnas.plotting."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import matplotlib.image
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from kerasnas.genotype import DARTS_V1, DARTS_V2, Genotype
from kerasnas.plotting import plot_cells

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 20_000  # two drawn panels, not a blank canvas
    image = matplotlib.image.imread(path)
    height, width, channels = image.shape
    assert 400 <= height <= 6000 and 600 <= width <= 8000
    assert channels in (3, 4)
    assert image[..., :3].std() > 0.05  # something is drawn


@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2], ids=["V1", "V2"])
def test_plot_cells_writes_png(tmp_path: Path, genotype: Genotype) -> None:
    path = tmp_path / "cells.png"
    plot_cells(genotype, str(path), title="DARTS")
    _check_png(path)
    assert os.listdir(tmp_path) == ["cells.png"]


def test_plot_cells_empty_node_and_uneven_cells(tmp_path: Path) -> None:
    genotype = Genotype(
        normal=[
            [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_5x5", 0)],
            [],
            [("sep_conv_5x5", 2), ("max_pool_3x3", 3), ("avg_pool_3x3", 0)],
        ],
        normal_concat=[2, 3, 4],
        reduce=[[]],
        reduce_concat=[2],
    )
    path = tmp_path / "nested" / "snas.png"
    plot_cells(genotype, path)  # PathLike and a missing directory are fine
    _check_png(path)


def test_plot_cells_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "cells.png"
    path.write_bytes(b"old")
    plot_cells(DARTS_V2, path)
    _check_png(path)


def test_plot_cells_leaves_pyplot_alone(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    backend, figures = matplotlib.get_backend(), plt.get_fignums()
    plot_cells(DARTS_V2, tmp_path / "cells.png")
    assert matplotlib.get_backend() == backend
    assert plt.get_fignums() == figures


def test_render_failure_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(FigureCanvasAgg, "print_png", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        plot_cells(DARTS_V2, tmp_path / "cells.png")
    assert os.listdir(tmp_path) == []


def test_render_failure_keeps_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cells.png"
    path.write_bytes(b"previous")

    original = FigureCanvasAgg.print_png
    targets: list[str] = []

    def broken_after_partial_write(self: FigureCanvasAgg, target: object, **kwargs: object) -> None:
        if not isinstance(target, (str, os.PathLike)):  # in-memory draws, e.g. for layout
            kwargs.pop("orientation", None)
            return original(self, target, **kwargs)
        targets.append(os.fspath(target))
        with open(target, "wb") as f:
            f.write(PNG_SIGNATURE)  # half-written output must not replace the old file
        raise OSError("interrupted")

    monkeypatch.setattr(FigureCanvasAgg, "print_png", broken_after_partial_write)
    with pytest.raises(OSError, match="interrupted"):
        plot_cells(DARTS_V2, path)
    assert path.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["cells.png"]
    assert targets and targets[0].endswith(".png")  # rendered to a temp path keeping the suffix
    assert os.path.dirname(targets[0]) == str(tmp_path)


def test_plot_curves_runs_of_different_lengths_against_seconds(tmp_path: Path) -> None:
    """budget=time: each strategy did its own number of epochs, plotted against seconds."""
    from kerasnas.plotting import plot_curves

    styles = {"snas": ("SNAS", "tab:red"), "enas": ("ENAS", "tab:blue"), "none": ("-", "k")}
    series = {"snas": [[0.1, 0.5], [0.2]], "enas": [[0.1, 0.2, 0.4, 0.6, 0.7]], "none": []}
    xs = {"snas": [[60.0, 120.0], [118.0]], "enas": [[20.0, 45.0, 70.0, 95.0, 121.0]], "none": []}
    for name, kwargs in (("by_seconds.png", {"xs": xs}), ("by_epoch.png", {})):
        plot_curves(series, styles, "seconds", "accuracy", tmp_path / name, **kwargs)
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000
    with pytest.raises(ValueError):  # an x per value
        plot_curves(series, styles, "s", "a", tmp_path / "bad.png", xs={**xs, "snas": [[1.0]]})


def _panels(genotype: Genotype):
    """Per cell panel: node numbers shown, and per op label its centre's distance (pixels)
    to its own edge and to the nearest other edge."""
    import numpy as np
    from matplotlib.patches import FancyArrowPatch

    from kerasnas.plotting import _LABEL_FONT, _cells_figure

    fig = _cells_figure(genotype)
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    panels = []
    for ax in fig.axes:
        texts = [t for t in ax.texts if t.get_text()]
        numbers = sorted(int(t.get_text()) for t in texts if t.get_text().isdigit())
        edges = []
        for patch in ax.patches:
            if isinstance(patch, FancyArrowPatch):
                points = [  # the drawn curves (and arrowhead), in data coordinates
                    curve(np.linspace(0, 1, 200)) for curve, _ in patch.get_path().iter_bezier()
                ]
                edges.append(ax.transData.transform(np.concatenate(points)))
        distances = []
        for text in texts:
            if text.get_fontsize() != _LABEL_FONT or text.get_text() == "no inputs":
                continue
            centre = np.asarray(ax.transData.transform(text.get_position()))
            ds = sorted(float(np.linalg.norm(e - centre, axis=1).min()) for e in edges)
            distances.append((text.get_text(), ds[0], ds[1]))
        panels.append((numbers, distances))
    return panels


def test_nodes_are_numbered_as_in_the_genotype() -> None:
    (normal, _), (reduce, _) = _panels(DARTS_V2)
    assert normal == reduce == [0, 1, 2, 3, 4, 5]  # inputs 0, 1; nodes 2..5 as genotype.json
    genotype = Genotype(
        normal=[[("sep_conv_3x3", 0)], [], [("skip_connect", 2)]],
        normal_concat=[2, 3, 4],
        reduce=[[("max_pool_3x3", 1)]],
        reduce_concat=[2],
    )
    (normal, _), (reduce, _) = _panels(genotype)
    assert normal == [0, 1, 2, 3, 4] and reduce == [0, 1, 2]


@pytest.mark.parametrize("genotype", [DARTS_V1, DARTS_V2], ids=["V1", "V2"])
def test_op_labels_sit_on_their_edge_away_from_crossings(genotype: Genotype) -> None:
    for kind, (_, labels) in zip(("normal", "reduce"), _panels(genotype), strict=True):
        assert len(labels) == sum(len(node) for node in genotype.cell(kind))
        for op, own, other in labels:
            assert own < 2, op  # on its edge
            assert other > 6, (kind, op, other)  # no other edge through its middle


def test_search_curve_says_what_its_marks_are(tmp_path, monkeypatch):
    from kerasnas import plotting

    figures = []
    monkeypatch.setattr(plotting, "_save", lambda fig, path: figures.append(fig))
    records = [
        {"reward": 0.5, "start_time": 100.0, "end_time": 110.0},
        {"reward": 0.4, "start_time": 105.0, "end_time": 120.0},
        {"reward": 0.7, "start_time": 111.0, "end_time": 130.0},
        {"reward": None, "start_time": 121.0, "end_time": None},  # running: not drawn
    ]
    plotting.plot_search_curve(records, tmp_path / "curve.png", "random on nasrl")
    (fig,) = figures
    trials, seconds = fig.axes
    legend = trials.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["best so far", "one trial"]
    best, dots = trials.get_lines()
    assert list(best.get_ydata()) == [0.5, 0.5, 0.7] and best.get_color() == "tab:blue"
    assert list(dots.get_ydata()) == [0.5, 0.4, 0.7] and dots.get_color() == "tab:gray"
    assert list(seconds.get_lines()[1].get_xdata()) == [10.0, 20.0, 30.0]
    assert trials.get_ylabel() == "reward" and seconds.get_xlabel() == "wall-clock seconds"
