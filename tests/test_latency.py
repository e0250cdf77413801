"""kerasnas.latency: measured per-op LiteRT latency tables and the latency penalty."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from kerasnas import data as data_lib
from kerasnas import latency, ops, resource
from kerasnas.layers import MixedOp
from kerasnas.trainers.snas import SNASConfig, SNASTrainer

OPS = ["none", "skip_connect", "max_pool_3x3", "sep_conv_3x3"]
RUNS = dict(runs=30, warmup=3)


def _mixed(names=OPS, size=8, channels=4, strides=1, seed=0):
    layer = MixedOp(names, channels=channels, strides=strides, seed=seed)
    x = np.random.default_rng(seed).normal(size=(2, size, size, channels)).astype("float32")
    layer(x, training=True)  # builds and draws a sample
    return layer


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("latency"))


@pytest.fixture(scope="module")
def measured(cache_dir):
    """A MixedOp on 8x8x4 inputs with its latency column, and the table that measured it."""
    layer = _mixed()
    table = latency.LatencyTable(cache_dir, **RUNS)
    latency.attach_latency([layer], table)
    return layer, table


def test_table_measures_positive_latencies_and_free_ops_by_rule(measured):
    layer, table = measured
    assert layer.cost_table.shape == (len(OPS), len(resource.RESOURCES))
    ms = resource.cost_column(layer, "latency")
    assert ms[OPS.index("none")] == 0.0 and ms[OPS.index("skip_connect")] == 0.0
    assert ms[OPS.index("max_pool_3x3")] > 0 and ms[OPS.index("sep_conv_3x3")] > 0
    # one baseline and two ops converted; none and the identity are free by rule
    assert table.conversions == 3
    entry = table.entries[latency.entry_key(layer.candidates[3], (8, 8, 4), 1)]
    assert entry["ms"] == pytest.approx(max(entry["raw_ms"] - entry["baseline_ms"], 0.0))


def test_conv_costs_more_than_pooling(cache_dir):
    layer = _mixed(["max_pool_3x3", "conv_3x3", "sep_conv_3x3"], size=16, channels=16)
    latency.attach_latency([layer], cache_dir=cache_dir)
    pool, conv, sep = resource.cost_column(layer, "latency")
    assert conv > pool and sep > pool


def test_cache_is_reused_and_written_atomically(measured, cache_dir):
    layer, table = measured
    again = latency.LatencyTable(cache_dir, **RUNS)
    fresh = _mixed(seed=3)  # same ops and shape, other layer names and weights
    latency.attach_latency([fresh], again)
    assert again.conversions == 0
    np.testing.assert_array_equal(fresh.cost_table, layer.cost_table)
    with open(again.path, encoding="utf-8") as f:
        saved = json.load(f)
    assert saved["device"] == latency.device_info(1)
    assert not [n for n in os.listdir(cache_dir) if n.endswith(".tmp.json")]


def test_cache_key_changes_with_shape_stride_config_and_not_name():
    op = ops.create_op("sep_conv_3x3", 4, 1, affine=False, search=True)
    key = latency.entry_key(op, (8, 8, 4), 1)
    assert latency.entry_key(op, (6, 6, 4), 1) != key
    assert latency.entry_key(op, (8, 8, 4), 2) != key
    renamed = ops.create_op("sep_conv_3x3", 4, 1, affine=False, search=True, layer_name="x")
    assert latency.entry_key(renamed, (8, 8, 4), 1) == key
    wider = ops.create_op("sep_conv_3x3", 8, 1, affine=False, search=True)
    assert latency.entry_key(wider, (8, 8, 4), 1) != key
    user = keras.layers.Conv2D(4, 3, padding="same")
    assert latency.entry_key(user, (8, 8, 4), 1) != latency.entry_key(
        keras.layers.Conv2D(4, 5, padding="same"), (8, 8, 4), 1
    )


def test_device_file_depends_on_threads(cache_dir):
    one = latency.LatencyTable(cache_dir, num_threads=1)
    two = latency.LatencyTable(cache_dir, num_threads=2)
    assert one.path != two.path and one.device["num_threads"] == 1


@pytest.mark.parametrize("content", ["{not json", '{"format": 99, "entries": {}}', "[1, 2]"])
def test_corrupt_cache_file_is_a_clear_error(tmp_path, content):
    path = latency.LatencyTable(str(tmp_path)).path
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    with pytest.raises(latency.LatencyCacheError, match="latency cache .*delete it"):
        latency.LatencyTable(str(tmp_path))


@pytest.mark.parametrize("estimator", resource.ESTIMATORS)
@pytest.mark.parametrize("form", resource.FORMS)
def test_latency_penalty_and_expected_cost(measured, estimator, form):
    layer, _ = measured
    ms = resource.cost_column(layer, "latency")
    p = keras.ops.convert_to_numpy(layer.probabilities())
    assert resource.expected_cost([layer], "latency") == pytest.approx(float(p @ ms), rel=1e-5)
    surrogate, value = resource.penalty([layer], "latency", form, estimator)
    assert np.isfinite(keras.ops.convert_to_numpy(surrogate))
    if estimator == "expected" and form == "linear":  # ms, not millions
        assert float(keras.ops.convert_to_numpy(value)) == pytest.approx(float(p @ ms), rel=1e-5)


def test_penalty_without_latency_column_says_what_to_do():
    layer = _mixed()
    with pytest.raises(ValueError, match="attach_latency"):
        resource.penalty([layer], "latency")
    with pytest.raises(ValueError, match="attach_latency"):
        resource.expected_cost([layer], "latency")
    with pytest.raises(ValueError, match="measured"):
        resource.Cost().get("latency")


def test_snas_step_with_latency_penalty(cache_dir):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    x = MixedOp(OPS, channels=4, seed=0, name="choice")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x))
    bundle = data_lib.load("digits", seed=0, max_examples=64)
    config = SNASConfig(
        epochs=1,
        batch_size=32,
        a_lr=0.1,
        resource="latency",
        resource_lambda=1.0,
        resource_form="linear",
        latency_cache=cache_dir,
    )
    trainer = SNASTrainer(model, config, verbose=0)
    before = keras.ops.convert_to_numpy(trainer.mixed[0].arch_logits).copy()
    history = trainer.fit(bundle)
    after = keras.ops.convert_to_numpy(trainer.mixed[0].arch_logits)
    assert np.abs(after - before).max() > 1e-4
    assert history[-1]["penalty"] > 0
    assert history[-1]["expected_latency"] > 0
    assert "latency_cache" not in trainer.config_dict()
