"""Tests for cost targets (kerasnas.target, kerasnas.trainers.penalty): parsing, the dual
step, the derived child's cost against the built child's, and a target search that lands."""

from __future__ import annotations

import dataclasses
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import resource
from kerasnas.errors import SettingError
from kerasnas.search_spaces.cell import CellSpace
from kerasnas.target import DualAscent, Target, format_cost
from kerasnas.trainers.config import DARTSConfig, SNASConfig

OPS = ("none", "skip_connect", "max_pool_3x3", "sep_conv_3x3", "dil_conv_5x5")


def tiny_search(output_dir: str, strategy: str = "snas", **config):
    """The settings of a search on digits in a tiny cell space (C=4, L=3, N=2)."""
    from kerasnas.jobs.one_shot import OneShotSettings, default_config

    return OneShotSettings(
        output_dir=output_dir,
        init_channels=4,
        layers=3,
        nodes=2,
        ops=OPS,
        export=(),
        verbose=0,
        strategy=strategy,
        config=default_config(strategy, **config),
    )


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


def test_dual_ascent_pushes_towards_the_target_and_turns_at_once():
    d = DualAscent(target=100.0, lr=0.1, band=0.05)
    w = d.update(200.0)  # too big: the multiplier grows, the weight pushes the cost down
    assert d.mu == pytest.approx(0.1 * (math.log(2) - 0.05)) and w > 0
    w = d.update(50.0)  # too small: the sign turns in the same step (no wind-up to undo)
    assert w < 0 and d.mu > 0
    mu = d.mu
    d.update(101.0)  # inside the band: the multiplier relaxes
    assert d.mu < mu
    for _ in range(1000):
        d.update(100.0)
    assert d.mu == 0.0 and d.weight == 0.0  # projected onto mu >= 0
    with pytest.raises(ValueError, match="lr"):
        DualAscent(100.0, 0.0)
    with pytest.raises(ValueError, match="band"):
        DualAscent(100.0, 0.1, band=0.0)


@pytest.mark.parametrize("target", [20.0, 60.0, 200.0])
def test_dual_ascent_lands_on_a_plant_with_inertia(target):
    """A plant whose log-cost follows the weight with momentum and a pull of its own
    towards 100 (the task's preference): the controller brings it within the band and
    keeps it there, from above and from below."""
    d = DualAscent(target, lr=0.05, band=0.05)
    log_cost, velocity, costs = math.log(100.0), 0.0, []
    for _ in range(3000):
        force = -d.weight - 0.5 * (log_cost - math.log(100.0))
        velocity = 0.8 * velocity + 0.05 * force
        log_cost += velocity
        d.update(math.exp(log_cost))
        costs.append(math.exp(log_cost))
    assert all(abs(math.log(c / target)) < 0.15 for c in costs[-500:])


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
    child lands its child within 15% of it; the controller acted to get there. A target no
    child reaches is refused before anything is written."""
    from kerasnas.jobs.one_shot import default_config, run_search

    tf.config.experimental.enable_op_determinism()
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2, ops=OPS)
    supernet = space.build_supernet("gumbel", seed=0)
    cheapest, dearest = space.cost_range(supernet, "params", dropped_edges=False)
    target = round(cheapest * (dearest / cheapest) ** 0.4)  # well inside the range
    settings = tiny_search(
        str(tmp_path / "run"),
        epochs=8,
        target=f"params:{target}",
        target_lr=0.1,
        target_project=False,
    )
    metrics = run_search(settings)  # the controller alone, without the final projection
    assert metrics["projected"] is False
    assert metrics["target_value"] == target
    assert metrics["child_cost"] == metrics["child_params"]
    assert abs(metrics["target_ratio"] - 1) <= 0.15, metrics["target_ratio"]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert max(r["penalty_multiplier"] for r in history) > 0  # the controller had to act
    assert history[-1]["target_ratio"] == pytest.approx(metrics["predicted_target_ratio"])
    below = dataclasses.replace(
        settings,
        output_dir=str(tmp_path / "below"),
        config=default_config("snas", epochs=1, target=f"params:{cheapest * 0.9:.0f}"),
    )
    with pytest.raises(SettingError, match="every edge kept"):
        run_search(below)
    assert not (tmp_path / "below").exists()


@pytest.mark.parametrize("rule", ["argmax", "top2"])
def test_projection_lands_in_the_band_at_a_small_loss(space_and_supernet, rule):
    """project_to_band: a child already in the band is kept as is; for targets around the
    space's range it returns a child of the rule's structure inside the band, whose cost (the
    exact table cost) it reports, giving up log-probability only to get there."""
    from kerasnas.search_spaces.projection import project_to_band

    space, supernet = space_and_supernet
    rng = np.random.default_rng(2)
    owners = {id(m.owner()): m.owner() for m in supernet.layers if hasattr(m, "arch_logits")}
    for m in owners.values():
        m.arch_logits.assign(rng.normal(size=m.num_candidates).astype("float32") * 3)
    start = space.derive(supernet, rule)

    def cost(g):
        return space.table_cost(supernet, g, "params")

    same = project_to_band(space, supernet, start, rule, cost, cost(start) * 1.02, 0.05)
    assert same.genotype == start and same.changes == 0 and same.in_band
    for factor in (0.5, 0.8, 1.3, 2.0):
        target = cost(start) * factor
        p = project_to_band(space, supernet, start, rule, cost, target, 0.05)
        assert p.in_band, (factor, p.cost / target)
        assert abs(math.log(cost(p.genotype) / target)) <= 0.05
        assert p.cost == pytest.approx(cost(p.genotype))
        assert p.start_cost == pytest.approx(cost(start))
        assert p.changes >= 1 and p.logprob_lost >= 0
        if rule == "top2":  # two kept edges per node, from distinct inputs, no 'none'
            for kind in ("normal", "reduce"):
                for node in p.genotype.cell(kind):
                    assert len(node) == 2 and len({src for _, src in node}) == 2
                    assert all(op != "none" for op, _ in node)
    with pytest.raises(ValueError, match="rule"):
        project_to_band(space, supernet, start, "best_sampled", cost, 1.0, 0.05)

    def pools(g):  # a score: how many kept edges are max pools
        return sum(
            op == "max_pool_3x3" for kind in ("normal", "reduce") for _, _, op in g.edges(kind)
        )

    scored = 0
    for factor in (0.6, 0.8, 1.3, 1.5):  # the score picks among the landing changes
        target = cost(start) * factor
        plain = project_to_band(space, supernet, start, rule, cost, target, 0.05)
        for sign in (1, -1):
            p = project_to_band(
                space, supernet, start, rule, cost, target, 0.05, lambda g, s=sign: s * pools(g)
            )
            assert p.in_band
            assert sign * pools(p.genotype) >= sign * pools(plain.genotype)
            scored += p.scored
    assert scored > 0  # some projections had a choice to make


@pytest.mark.parametrize("rule", ["argmax", "top2"])
def test_steering_the_logits_makes_the_projected_child_the_derived_one(space_and_supernet, rule):
    """steer_logits: after it, the rule derives the projected child (same edges and ops),
    and every edge's logits are a permutation of what they were."""
    from kerasnas.search_spaces.projection import project_to_band, steer_logits

    space, supernet = space_and_supernet
    rng = np.random.default_rng(3)
    owners = {id(m.owner()): m.owner() for m in supernet.layers if hasattr(m, "arch_logits")}

    def edges(g):
        return {kind: sorted(g.edges(kind)) for kind in ("normal", "reduce")}

    for factor in (0.5, 0.8, 1.3, 2.0):
        for m in owners.values():
            m.arch_logits.assign(rng.normal(size=m.num_candidates).astype("float32") * 3)
        before = sorted(sorted(m.arch_logits.numpy().round(5).tolist()) for m in owners.values())
        start = space.derive(supernet, rule)

        def cost(g):
            return space.table_cost(supernet, g, "params")

        p = project_to_band(space, supernet, start, rule, cost, cost(start) * factor, 0.05)
        steer_logits(space, supernet, p.genotype, rule)
        assert edges(space.derive(supernet, rule)) == edges(p.genotype)
        after = sorted(sorted(m.arch_logits.numpy().round(5).tolist()) for m in owners.values())
        assert after == before


@pytest.mark.slow
@pytest.mark.parametrize("strategy, rule", [("snas", "argmax"), ("darts", "top2")])
def test_scoring_a_child_on_the_supernet_equals_scoring_the_built_child(tmp_path, strategy, rule):
    """A search scores candidate children (the projection's choice) on its supernet, logits
    steered to each candidate (dropped edges to ``none``) for one argmax pass, not on a
    built child: the same accuracy, and the logits are put back."""
    from kerasnas.evaluate import accuracy
    from kerasnas.jobs.one_shot import OneShotSearch
    from kerasnas.layers import arch_variables

    settings = tiny_search(str(tmp_path / "s"), strategy, epochs=1, batch_size=32)
    job = OneShotSearch(settings)
    assert job.settings.derive == rule
    job.seed_everything()
    job.bundle = job.load_data()
    job.prepare()
    rng = np.random.default_rng(0)
    logits = arch_variables(job.supernet)
    for v in logits:  # a supernet that is not its initial one
        v.assign(rng.normal(size=v.shape).astype("float32") * 2)
    for w in job.supernet.trainable_weights:
        if not any(w is v for v in logits) and "kernel" in w.path:
            w.assign(w + rng.normal(size=w.shape).astype("float32") * 0.1)
    before = [v.numpy().copy() for v in logits]
    data = job.bundle.valid(32)
    for _ in range(3):  # candidates: children of other random logits
        for v in logits:
            v.assign(rng.normal(size=v.shape).astype("float32") * 2)
        g = job.space.derive(job.supernet, rule)
        for v, value in zip(logits, before, strict=True):
            v.assign(value)
        assert g != job.space.derive(job.supernet, rule)
        built = accuracy(job.build_child(g), data)
        assert job.valid_accuracy_of(g) == pytest.approx(built, abs=1e-6)
        assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, logits, strict=True))


def test_the_controller_state_is_checkpointed(space_and_supernet):
    """A target search's multiplier and fixed part survive a checkpoint: the weight is a
    checkpointed variable (only with a target), the rest is extra state."""
    from kerasnas.trainers.snas import SNASTrainer

    _, supernet = space_and_supernet
    config = SNASConfig(epochs=1, target="params:5k")
    a = SNASTrainer(supernet, config, verbose=0)
    a.penalty.controller.mu, a.penalty.fixed = 0.7, 123.0
    a.penalty.weight.assign(-0.5)
    assert a.penalty.weight in a.extra_variables()
    state = a.extra_state()
    b = SNASTrainer(supernet, config, verbose=0)
    b.penalty.weight.assign(-0.5)  # restored with the variables
    b.set_extra_state(state)
    assert (b.penalty.controller.mu, b.penalty.fixed) == (0.7, 123.0)
    assert b.penalty.controller.weight == pytest.approx(a.penalty.controller.weight)
    plain = SNASTrainer(supernet, SNASConfig(epochs=1), verbose=0)
    assert plain.extra_variables() == [] and "target" not in plain.config_dict()


def test_a_latency_target_re_measures_only_when_the_child_changed(monkeypatch):
    """The intercept of a latency target is measured at the end of an epoch whose derived
    child differs from the one measured last, and only then."""
    from kerasnas.trainers import penalty as penalty_lib

    measured = iter([0.05, 0.07, 0.06])
    monkeypatch.setattr(penalty_lib, "measured_cost", lambda *a: next(measured))
    config = SNASConfig(epochs=1, target="latency:0.05ms")
    p = penalty_lib.ResourcePenalty([], config)
    child = ["a"]
    p.child_key = lambda: child[0]
    p.child_model = lambda: None
    p.table_cost = lambda: {"a": 0.04, "b": 0.05}[child[0]]
    p.calibrate()
    assert p.fixed == pytest.approx(0.01)
    p.on_epoch_end(0)  # the same child: not measured again
    assert len(p.calibrations) == 1
    child[0] = "b"
    p.on_epoch_end(1)
    assert len(p.calibrations) == 2 and p.fixed == pytest.approx(0.02)
    p.on_epoch_end(2)
    assert len(p.calibrations) == 2
    p.child_key = None  # without a key: every calibrate_every epochs
    p.on_epoch_end(p.calibrate_every - 1)
    assert len(p.calibrations) == 3


def test_projection_in_the_search_runs_from_half_the_epochs_or_half_the_time_budget():
    """A child outside the band is projected at the end of epochs from PROJECT_FROM of the
    search on, never in the last epoch (the job's final projection); with a time budget,
    from the epoch that began with that share of the budget spent."""
    from kerasnas.trainers import penalty as penalty_lib

    p = penalty_lib.ResourcePenalty([], SNASConfig(epochs=1, target="params:5k"))
    p.fixed, p.table_cost = 0.0, lambda: 8000.0  # 1.6 of the target: outside the band
    calls = []
    p.project_child = lambda: calls.append(1) or "projected"
    due = [e for e in range(10) if p.project(e, 10)]
    assert due == [4, 5, 6, 7, 8]  # epochs 5 to 9 of 10
    by_time = [f for f in (0.2, 0.45, 0.5, 0.8, 0.99) if p.project(3, 100, budget_fraction=f)]
    assert by_time == [0.5, 0.8, 0.99]
    assert not p.project(99, 100, budget_fraction=0.9)  # the epoch cap: the final one
    p.table_cost = lambda: 5100.0  # inside the band: nothing to do
    assert not p.project(8, 10) and not p.project(3, 100, budget_fraction=0.9)
    assert len(calls) == 8 and len(p.projections) == 8


@pytest.mark.slow
def test_darts_architecture_step_carries_the_penalty():
    """With a penalty weight, DARTS' architecture gradient gains the penalty's gradient:
    one step from the same state moves the logits towards cheaper ops than without."""
    from kerasnas import data as data_lib
    from kerasnas.trainers.darts import DARTSTrainer

    bundle = data_lib.load("digits", seed=0, max_examples=128)
    space = CellSpace((8, 8, 1), 10, init_channels=4, layers=3, nodes=2, ops=OPS)
    moved = {}
    for lam in (0.0, 5.0):
        keras.utils.set_random_seed(0)
        supernet = space.build_supernet("softmax", bundle.normalization_layer(), seed=0)
        trainer = DARTSTrainer(
            supernet, DARTSConfig(epochs=1, a_lr=0.1, resource_lambda=lam), verbose=0
        )
        batch = next(iter(trainer.train_batches(bundle, 0)))
        logs = trainer.train_step(*batch)
        assert ("penalty" in logs) == (lam > 0)
        moved[lam] = resource.expected_cost(trainer.mixed, "params")
    assert moved[5.0] < moved[0.0]


def test_a_childs_latency_is_the_smallest_block_median(monkeypatch):
    """child_latency_ms: bursts of load only add time, so the smallest of the block
    medians is kept."""
    from kerasnas.export import litert

    readings = iter([0.071, 0.051, 0.090, 0.052, 0.0506])
    monkeypatch.setattr(litert, "latency_ms", lambda *a, **k: next(readings))
    monkeypatch.setattr(litert, "CHILD_PAUSE", 0.0)
    assert litert.child_latency_ms(b"", 1) == 0.0506
