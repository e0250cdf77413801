"""Lighter grappler options for compiled steps (kerasnas.graph_options)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context

from kerasnas import graph_options

RC = rewriter_config_pb2.RewriterConfig


def _current_rewrite():
    config = config_pb2.ConfigProto()
    config.ParseFromString(context.context().function_call_options.config_proto_serialized)
    return config


def test_lean_config_turns_six_optimizers_off_and_keeps_other_settings():
    base = config_pb2.ConfigProto(allow_soft_placement=True)
    base.graph_options.rewrite_options.constant_folding = RC.OFF
    lean = graph_options.lean_config(base.SerializeToString())
    rewrite = lean.graph_options.rewrite_options
    assert rewrite.meta_optimizer_iterations == RC.DEFAULT_NUM_ITERS  # two passes
    assert rewrite.memory_optimization == RC.NO_MEM_OPT
    for name in graph_options.OFF_OPTIMIZERS:
        assert getattr(rewrite, name) == RC.OFF, name
    assert lean.allow_soft_placement
    assert rewrite.constant_folding == RC.OFF  # a user's setting is kept
    assert rewrite.arithmetic_optimization == RC.DEFAULT


def test_scope_sets_and_restores_the_thread_options():
    before = _current_rewrite()
    assert before.graph_options.rewrite_options.remapping != RC.OFF
    with graph_options.lean_graph_optimization():
        inside = _current_rewrite().graph_options.rewrite_options
        assert inside.remapping == RC.OFF
        assert inside.memory_optimization == RC.NO_MEM_OPT
    assert _current_rewrite() == before


def test_scope_restores_after_an_error():
    before = _current_rewrite()
    with pytest.raises(RuntimeError):
        with graph_options.lean_graph_optimization():
            raise RuntimeError("boom")
    assert _current_rewrite() == before


def test_full_turns_the_scope_off_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("KERASNAS_GRAPPLER", "full")
    before = _current_rewrite()
    with graph_options.lean_graph_optimization():
        assert _current_rewrite() == before
    monkeypatch.setenv("KERASNAS_GRAPPLER", "fast")
    with pytest.raises(ValueError, match="KERASNAS_GRAPPLER"):
        with graph_options.lean_graph_optimization():
            pass


def test_lean_function_computes_what_tf_function_does_and_traces_once():
    rng = np.random.default_rng(0)
    w = tf.Variable(rng.normal(size=(6, 4)).astype("float32"))
    x = tf.constant(rng.normal(size=(5, 6)).astype("float32"))

    def f(x):
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.nn.relu(x @ w) ** 2 + 0.0 * x[:, :4])
        return y, tape.gradient(y, w)

    spec = [tf.TensorSpec((None, 6))]
    plain = tf.function(f, input_signature=spec)
    lean = graph_options.lean_function(tf.function(f, input_signature=spec))
    for a, b in zip(plain(x), lean(x), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    lean(x)
    assert lean.wrapped_function.experimental_get_tracing_count() == 1
    concrete = lean.get_concrete_function()
    with graph_options.lean_graph_optimization():
        np.testing.assert_allclose(concrete(x)[0].numpy(), plain(x)[0].numpy(), rtol=1e-6)
