"""Shared edge functions (kerasnas.edge_functions): same maths as tracing every edge inline,
a smaller step graph, and no model kept alive by the cache."""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasnas import edge_functions
from kerasnas.layers import MixedOp, mixed_ops
from kerasnas.search_spaces.cell import CellSpace


def _space():
    return CellSpace((12, 12, 3), 10, init_channels=4, layers=3, nodes=2)


def _run(relaxation: str, shared: bool, monkeypatch) -> tuple[dict, int]:
    """One training-mode forward and backward pass and one inference pass of a fresh
    supernet (same seed): outputs, gradients, batch-norm statistics after the step, and
    the node count of the traced training function (its functions' bodies included)."""
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1" if shared else "0")
    keras.utils.set_random_seed(0)
    net = _space().build_supernet(relaxation, seed=0)
    if relaxation == "controlled":
        for i, m in enumerate(mixed_ops(net)):
            if m.share_with is None:
                m.choice.assign(i % m.num_candidates)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 12, 12, 3)).astype("float32"))

    def step(x):
        with tf.GradientTape() as tape:
            y = net(x, training=True)
            loss = tf.reduce_sum(y * y)
        grads = tape.gradient(loss, net.trainable_variables)
        return y, [
            tf.zeros_like(v) if g is None else g
            for g, v in zip(grads, net.trainable_variables, strict=True)
        ]

    fn = tf.function(step)
    y, grads = fn(x)
    graph = fn.get_concrete_function(x).graph.as_graph_def()
    nodes = len(graph.node) + sum(len(f.node_def) for f in graph.library.function)
    inference = tf.function(lambda x: net(x, training=False))(x)
    out = {
        "y": y.numpy(),
        "inference": inference.numpy(),
        **{f"grad{i}": g.numpy() for i, g in enumerate(grads)},
        **{f"stat{i}": v.numpy() for i, v in enumerate(net.non_trainable_variables)},
    }
    return out, nodes


@pytest.mark.parametrize("relaxation", ["gumbel", "softmax"])
def test_weighted_sums_are_traced_inline(relaxation, monkeypatch):
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1")
    edge_functions.clear()
    net = _space().build_supernet(relaxation, seed=0)
    tf.function(lambda x: net(x, training=True))(tf.zeros((2, 12, 12, 3)))
    assert not edge_functions._CACHE


@pytest.mark.slow
@pytest.mark.parametrize("relaxation", ["gumbel_hard", "controlled"])
def test_shared_functions_compute_what_inline_edges_compute(relaxation, monkeypatch):
    shared, shared_nodes = _run(relaxation, True, monkeypatch)
    inline, inline_nodes = _run(relaxation, False, monkeypatch)
    assert shared.keys() == inline.keys()

    for name in shared:  # one op per edge: the same ops in the same order, bit for bit
        np.testing.assert_array_equal(shared[name], inline[name], err_msg=name)
    assert shared_nodes < inline_nodes


def test_one_function_per_kind_of_edge(monkeypatch):
    """The 2-cell-kind supernet's edges reuse a handful of traced bodies."""
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1")
    edge_functions.clear()
    net = _space().build_supernet("gumbel_hard", seed=0)
    x = tf.zeros((2, 12, 12, 3))
    tf.function(lambda x: net(x, training=True))(x)
    edges = len(mixed_ops(net))
    assert 1 <= len(edge_functions._CACHE) < edges / 2


def test_user_layers_run_inline(monkeypatch):
    """A MixedOp over user layers (not op names) is traced directly: nothing is cached."""
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1")
    edge_functions.clear()
    layer = MixedOp([keras.layers.Conv2D(3, 1), keras.layers.Conv2D(3, 3, padding="same")])
    x = tf.ones((2, 5, 5, 3))
    eager = layer(x, training=True)
    traced = tf.function(lambda x: layer(x, training=True))(x)
    assert eager.shape == traced.shape == (2, 5, 5, 3)
    assert not edge_functions._CACHE


@pytest.mark.slow
def test_cache_keeps_no_model_alive(monkeypatch):
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1")
    edge_functions.clear()
    net = _space().build_supernet("gumbel_hard", seed=0)
    tf.function(lambda x: net(x, training=True))(tf.zeros((2, 12, 12, 3)))
    assert edge_functions._CACHE
    ref = weakref.ref(net)
    del net
    gc.collect()
    assert ref() is None
    # the next model of the same kinds replaces the dead entries instead of failing
    net = _space().build_supernet("gumbel_hard", seed=1)
    y = tf.function(lambda x: net(x, training=True))(tf.zeros((2, 12, 12, 3)))
    assert y.shape == (2, 10)
    assert all(e["template"]() is not None for e in edge_functions._CACHE.values())


@pytest.mark.slow
def test_a_function_outlives_the_models_that_called_it(monkeypatch):
    """Model B calls the function model A traced, B is dropped, A and a new model C still
    run it (a function traced with variable arguments would refuse once B's are gone)."""
    monkeypatch.setenv("KERASNAS_SHARED_EDGES", "1")
    edge_functions.clear()
    x = tf.zeros((2, 12, 12, 3))
    a = _space().build_supernet("controlled", seed=0)
    run_a = tf.function(lambda x: a(x, training=True))
    run_a(x)
    b = _space().build_supernet("controlled", seed=1)
    run_b = tf.function(lambda x, b=b: b(x, training=True))
    run_b(x)
    del b, run_b
    gc.collect()
    assert run_a(x).shape == (2, 10)
    c = _space().build_supernet("controlled", seed=2)
    assert tf.function(lambda x: c(x, training=False))(x).shape == (2, 10)
