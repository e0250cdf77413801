"""Lighter graph optimisation (grappler) for the compiled steps of a search.

A supernet's training step is a graph of 40-70 thousand nodes, and TensorFlow's graph
optimiser runs over it twice before the first step. Measured on the C=8 L=5 step
(2 cores, AMD EPYC, TF 2.21; ``TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=meta_optimizer=1``),
``layout``, ``remapper``, ``memory_optimizer``, ``loop_optimizer``, ``shape_optimizer`` and
``implementation_selector`` change 0-1 nodes of this graph on a CPU per pass and take about
5.5 s of each pass.

:func:`lean_graph_optimization` runs the functions called inside it without those six;
pruning, common-subexpression elimination, constant folding, the arithmetic and dependency
optimisers and the TFG passes still run, twice. The first call of the 8x8x1 batch-64 step
falls from 23-26 s to 16-20 s, its steady step is not slower and the process peak is about
110 MB lower (``benchmarks/README.md``, "Start-up").

One pass instead of two (``meta_optimizer_iterations=ONE``) would save about 6 s more but
is not used: a step optimised in one pass computed in a different float order in a resumed
process than in the uninterrupted one (the last digits of the loss differ), which breaks
the bit-exact resume that ``tests/test_faults.py`` checks. The cause was not found.

The options are part of the key under which TensorFlow instantiates a function, so a
function must be called (and traced) inside the scope every time, or it is optimised again
under the other key: :func:`lean_function` wraps a ``tf.function`` so that it always is.
``KERASNAS_GRAPPLER=full`` turns the scope into a no-op (TensorFlow's default passes).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

try:  # the per-thread function call options of the eager context (not public API)
    from tensorflow.python.eager import context as _context
except ImportError:  # pragma: no cover - a TensorFlow without it: default optimisation
    _context = None

ENV = "KERASNAS_GRAPPLER"
OFF_OPTIMIZERS = (
    "layout_optimizer",
    "remapping",
    "shape_optimization",
    "loop_optimization",
    "implementation_selector",
)
_cache: dict[bytes, config_pb2.ConfigProto] = {}


def enabled() -> bool:
    """Whether :func:`lean_graph_optimization` changes anything (``KERASNAS_GRAPPLER``
    unset or ``lean``; ``full`` keeps TensorFlow's default)."""
    value = os.environ.get(ENV, "lean").strip().lower()
    if value not in ("lean", "full"):
        raise ValueError(f"{ENV} must be 'lean' or 'full', got {value!r}")
    return value == "lean" and _context is not None


def lean_config(serialized: bytes | None) -> config_pb2.ConfigProto:
    """`serialized` (a ``ConfigProto``, or None for the empty one) with the six optimisers
    above off."""
    key = serialized or b""
    if key not in _cache:
        config = config_pb2.ConfigProto()
        config.ParseFromString(key)
        rewrite = config.graph_options.rewrite_options
        for name in OFF_OPTIMIZERS:
            setattr(rewrite, name, rewriter_config_pb2.RewriterConfig.OFF)
        rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.NO_MEM_OPT
        _cache[key] = config
    return _cache[key]


@contextlib.contextmanager
def lean_graph_optimization() -> Iterator[None]:
    """Functions traced or first called in this thread inside the scope are optimised
    without the optimisers that do nothing for a supernet on a CPU."""
    if not enabled():
        yield
        return
    ctx = _context.context()
    local = ctx._thread_local_data
    previous = local.function_call_options
    current = ctx.function_call_options  # builds the default from the context's config
    ctx.function_call_options = _context.FunctionCallOptions(
        executor_type=current.executor_type,
        config_proto=lean_config(current.config_proto_serialized),
    )
    try:
        yield
    finally:
        local.function_call_options = previous


def lean_function(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` (a ``tf.function``) called, and traced, inside :func:`lean_graph_optimization`.
    Its other attributes (``get_concrete_function``, ...) are those of `fn`; a concrete
    function obtained from it must be called inside the scope too."""

    def call(*args: Any, **kwargs: Any) -> Any:
        with lean_graph_optimization():
            return fn(*args, **kwargs)

    def concrete(*args: Any, **kwargs: Any) -> Any:
        with lean_graph_optimization():
            return fn.get_concrete_function(*args, **kwargs)

    call.__name__ = getattr(fn, "__name__", "lean_function")
    call.__doc__ = getattr(fn, "__doc__", None)
    call.get_concrete_function = concrete
    call.python_function = getattr(fn, "python_function", fn)
    call.wrapped_function = fn
    return call
