"""Tests for kerasnas.pareto: non-dominated sorting, crowding distance, the 2-D front and
its hypervolume, pareto.csv and pareto.png."""

from __future__ import annotations

import itertools
import math

import matplotlib.image
import numpy as np
import pytest

from kerasnas import pareto


def _brute_fronts(f: np.ndarray) -> list[list[int]]:
    left, fronts = set(range(len(f))), []
    while left:
        front = sorted(
            i for i in left if not any(pareto.dominates(f[j], f[i]) for j in left if j != i)
        )
        fronts.append(front)
        left -= set(front)
    return fronts


@pytest.mark.parametrize("seed", range(6))
def test_non_dominated_sort_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 40)), int(rng.integers(2, 4))
    # a coarse grid makes ties and duplicates common
    f = rng.integers(0, 6, size=(n, m)).astype(float)
    fronts = pareto.non_dominated_sort(f)
    assert fronts == _brute_fronts(f)
    assert sorted(itertools.chain(*fronts)) == list(range(n))


def test_non_dominated_sort_edge_cases():
    assert pareto.non_dominated_sort(np.zeros((0, 2))) == []
    assert pareto.non_dominated_sort([[1.0, 1.0], [1.0, 1.0]]) == [[0, 1]]  # equal: one front
    assert pareto.non_dominated_sort([[2, 2], [1, 1], [0, 3]]) == [[1, 2], [0]]
    with pytest.raises(ValueError):
        pareto.non_dominated_sort([1.0, 2.0])


def test_crowding_distance():
    f = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0], [9.0, 9.0]])
    d = pareto.crowding_distance(f, [0, 1, 2, 3])
    assert math.isinf(d[0]) and math.isinf(d[3])
    # point 1: neighbours 0 and 2 span 3/4 of each objective's range
    assert d[1] == pytest.approx(3 / 4 + 3 / 4)
    assert d[2] == pytest.approx(3 / 4 + 3 / 4)
    # the order of `front` is the order of the result
    assert list(pareto.crowding_distance(f, [2, 0, 3, 1])) == pytest.approx(
        [d[2], d[0], d[3], d[1]]
    )
    assert np.isinf(pareto.crowding_distance(f, [0, 4])).all()
    assert len(pareto.crowding_distance(f, [])) == 0
    # an objective with zero range adds nothing; the ends of the other are infinite
    flat = np.array([[0.0, 1.0], [1.0, 1.0], [3.0, 1.0], [4.0, 1.0]])
    d = pareto.crowding_distance(flat, [0, 1, 2, 3])
    assert np.isinf(d[[0, 3]]).all() and np.isfinite(d[[1, 2]]).all()
    assert d[1] == pytest.approx(3 / 4)


def test_front_indices_sorted_by_cost_and_skip_missing():
    costs = [5.0, 1.0, 3.0, 3.0, 2.0, 8.0, 1.0]
    accs = [0.9, 0.5, 0.8, 0.7, 0.8, float("nan"), 0.4]
    # 3 is dominated by 2, 2 by 4 (cheaper, same accuracy), 6 by 1, 5 has no accuracy
    assert pareto.front_indices(costs, accs) == [1, 4, 0]
    assert pareto.front_indices([], []) == []


def test_hypervolume():
    ref = (4.0, 4.0)
    assert pareto.hypervolume([[1.0, 1.0]], ref) == pytest.approx(9.0)
    # a staircase: 3x1 + 2x1 + 1x1 cut by the reference
    assert pareto.hypervolume([[1, 3], [2, 2], [3, 1]], ref) == pytest.approx(6.0)
    # dominated points and points outside the reference add nothing
    assert pareto.hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], ref) == pytest.approx(6.0)
    assert pareto.hypervolume(np.zeros((0, 2)), ref) == 0.0


def _rows():
    return [
        {
            "point": "0003",
            "resource": "params",
            "child_cost": 1234,
            "child_params": 1234,
            "child_flops": 56789,
            "accuracy": 0.1 + 0.2,
            "on_front": 1,
            "dir": "front/0003",
            "latency_ms": 0.012345678901234,
        },
        {
            "point": "0007",
            "target": "params:30k",
            "resource": "params",
            "child_cost": 30000.0,
            "child_params": 30000,
            "accuracy": 0.75,
            "retrained_accuracy": 0.8125,
            "on_front": 0,
        },
    ]


def test_csv_round_trip(tmp_path):
    path = tmp_path / "pareto.csv"
    pareto.write_csv(path, _rows())
    header = path.read_text().splitlines()[0]
    assert header == ",".join(pareto.COLUMNS)
    back = pareto.read_csv(path)
    assert len(back) == 2 and set(back[0]) == set(pareto.COLUMNS)
    for row, read in zip(_rows(), back, strict=True):
        for column in pareto.COLUMNS:
            assert read[column] == row.get(column), column
    assert back[0]["accuracy"] == 0.1 + 0.2  # every digit kept
    assert back[0]["target"] is None and back[1]["latency_ms"] is None
    assert isinstance(back[0]["child_params"], int)
    with pytest.raises(ValueError, match="no column"):
        pareto.write_csv(tmp_path / "bad.csv", [{"points": "x"}])


def test_plot_front_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    costs = 10 ** rng.uniform(3, 5, size=20)
    accs = 0.5 + 0.4 * np.log10(costs / 1000) / 2 + rng.normal(0, 0.05, 20)
    front = set(pareto.front_indices(costs, accs))
    rows = [
        {
            "point": str(i),
            "resource": "params",
            "child_cost": c,
            "accuracy": a,
            "on_front": int(i in front),
            "retrained_accuracy": a + 0.02 if i in front else None,
        }
        for i, (c, a) in enumerate(zip(costs, accs, strict=True))
    ]
    path = tmp_path / "pareto.png"
    pareto.plot_front(rows, path, title="test front")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 300 and image.shape[1] >= 500
    assert image[..., :3].std() > 0.05
    # blue front line is drawn: some pixels near tab:blue (31, 119, 180)
    rgb = (image[..., :3] * 255).astype(int)
    assert (np.abs(rgb - [31, 119, 180]).sum(axis=-1) < 30).sum() > 50


def test_hypervolume_matches_a_grid_count():
    rng = np.random.default_rng(3)
    f = rng.uniform(0, 1, size=(15, 2))
    ref = (1.0, 1.0)
    xs = (np.arange(500) + 0.5) / 500
    gx, gy = np.meshgrid(xs, xs)
    covered = np.zeros_like(gx, bool)
    for x, y in f:
        covered |= (gx >= x) & (gy >= y)
    assert pareto.hypervolume(f, ref) == pytest.approx(covered.mean(), abs=5e-3)
