"""Tests for cost targets (kerasnas.target, kerasnas.trainers.penalty): parsing, the dual
step, the derived child's cost against the built child's, and a target search that lands."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import resource
from kerasnas.errors import SettingError
from kerasnas.layers import mixed_ops
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.target import DualAscent, Target, format_cost
from kerasnas.trainers.config import DARTSConfig, SNASConfig

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_5x5")


@pytest.mark.parametrize(
    "text, resource_, value",
    [
        ("params:30k", "params", 30e3),
        ("params:30000", "params", 30e3),
        ("flops:1.2M", "flops", 1.2e6),
        ("mac:2e5", "mac", 2e5),
        ("latency:0.05ms", "latency", 0.05),
        ("latency:0.05", "latency", 0.05),
        ("latency:50us", "latency", 0.05),
        (" params : 30K ", "params", 30e3),
    ],
)
def test_parse(text, resource_, value):
    t = Target.parse(text)
    assert t.resource == resource_
    assert math.isclose(t.value, value)
    assert Target.parse(str(t)) == t  # round trip


@pytest.mark.parametrize(
    "text, words",
    [
        ("30k", "<resource>:<cost>"),
        ("weight:30k", "must be one of"),
        ("params:30ms", "unit 'ms'"),
        ("latency:5k", "unit 'k'"),
        ("params:0", "> 0"),
        ("params:-3", "<resource>:<cost>"),
    ],
)
def test_parse_errors_name_the_flag(text, words):
    with pytest.raises(SettingError) as e:
        Target.parse(text)
    assert "target" in str(e.value) and words in str(e.value)


def test_config_checks_the_target():
    SNASConfig(target="params:30k").validate()
    SNASConfig(target="latency:0.05ms", resource="latency").validate()
    assert SNASConfig(target="flops:300k").penalty_resource == "flops"
    assert DARTSConfig(target="flops:300k").penalty_resource == "flops"
    with pytest.raises(SettingError, match="resource"):
        SNASConfig(target="params:30k", resource="latency").validate()
    with pytest.raises(SettingError, match="target"):
        SNASConfig(target="params=30k").validate()


def test_format_cost():
    assert format_cost(30_000, "params") == "30k"
    assert format_cost(1_234_567, "flops") == "1.23M"
    assert format_cost(0.05, "latency") == "0.0500 ms"


def test_dual_ascent_moves_the_weight_towards_the_target():
    d = DualAscent(target=100.0, lr=0.1)
    assert d.update(200.0) == pytest.approx(0.1 * math.log(2))  # too big: weight grows
    d.update(50.0)  # too small by the same ratio: back to 0
    assert d.weight == pytest.approx(0.0, abs=1e-12)
    d.update(50.0)
    assert d.weight < 0  # a target above the cost pushes the cost up
    assert DualAscent(100.0, 0.1).update(0.0) == pytest.approx(0.1 * math.log(1e-6))
    with pytest.raises(ValueError, match="lr"):
        DualAscent(100.0, 0.0)


def test_dual_ascent_lands_on_a_monotone_plant():
    """On a plant whose cost falls as the weight rises (cost = c0 * exp(-k * weight)), the
    multiplier settles where cost = target, from above and from below."""
    for target in (20.0, 60.0, 200.0):
        d = DualAscent(target, lr=0.05)
        cost = 100.0
        for _ in range(2000):
            cost = 100.0 * math.exp(-3.0 * d.weight)
            d.update(cost)
        assert cost == pytest.approx(target, rel=1e-3)


@pytest.fixture(scope="module")
def space_and_supernet():
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2, ops=OPS)
    keras.utils.set_random_seed(0)
    return space, space.build_supernet("gumbel", seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["argmax", "top2"])
def test_table_cost_plus_a_fixed_part_is_the_built_childs_cost(space_and_supernet, rule):
    """For random logits, space.table_cost + one constant equals network_cost of the built
    child, for every analytic resource and both derivation rules."""
    space, supernet = space_and_supernet
    rng = np.random.default_rng(1)
    owners = {id(m.owner()): m.owner() for m in supernet.layers if hasattr(m, "arch_logits")}
    fixed = {r: set() for r in resource.ANALYTIC}
    tables = set()
    for _ in range(5):
        for m in owners.values():
            m.arch_logits.assign(rng.normal(size=m.num_candidates).astype("float32") * 3)
        genotype = space.derive(supernet, rule)
        child = space.build_child(genotype, supernet)
        cost = resource.network_cost(child)
        for r in resource.ANALYTIC:
            fixed[r].add(round(cost.get(r) - space.table_cost(supernet, genotype, r), 6))
        tables.add(space.table_cost(supernet, genotype, "params"))
    assert len(tables) > 1  # the children differ
    for r in resource.ANALYTIC:
        assert len(fixed[r]) == 1, (r, fixed[r])
        assert next(iter(fixed[r])) > 0


@pytest.mark.slow
def test_a_params_target_search_lands_within_15_percent(tmp_path):
    """A short SNAS search on digits with a target between the smallest and the largest
    child lands its child within 15% of it; the weight rose above 0 to get there."""
    from kerasnas.jobs.one_shot import OneShotSettings, default_config, run_search

    tf.config.experimental.enable_op_determinism()
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2, ops=OPS)
    supernet = space.build_supernet("gumbel", seed=0)
    genotype = space.derive(supernet, "argmax")
    fixed = resource.network_cost(space.build_child(genotype, supernet)).params - (
        space.table_cost(supernet, genotype, "params")
    )
    largest = fixed + sum(resource.cost_column(m, "params").max() for m in mixed_ops(supernet))
    target = round(fixed + 0.3 * (largest - fixed))  # well inside the range
    settings = OneShotSettings(
        output_dir=str(tmp_path / "run"),
        init_channels=4,
        layers=3,
        nodes=2,
        ops=OPS,
        export=(),
        verbose=0,
        config=default_config("snas", epochs=6, target=f"params:{target}", target_lr=0.05),
    )
    metrics = run_search(settings)
    assert metrics["target_value"] == target
    assert metrics["child_cost"] == metrics["child_params"]
    assert abs(metrics["target_ratio"] - 1) <= 0.15, metrics["target_ratio"]
    assert metrics["final_penalty_weight"] != 0
