"""One traced function per kind of edge, shared by every MixedOp of that kind.

A cell supernet has tens of MixedOps (70 at 5 cells of 4 nodes), most of them alike: the same
candidates, channels, stride and input shape. Traced one by one, each adds its candidates'
ops and their gradients to the step's graph (about 41,000 nodes at 8 channels and 5 cells),
and TensorFlow spends most of a search's start-up tracing, optimising and instantiating
that graph. Here the first MixedOp of a kind traces a ``tf.function`` of its forward pass
that takes the layer's variables as inputs, and every MixedOp of the same kind calls that
function with its own variables: Python traces one body (and one gradient body) per kind.
One-op bodies (``gumbel_hard``, ``controlled``, ``argmax`` inference: a switch over the
candidates) are not inlined into the step (``_noinline``), so graph optimisation and kernel
creation also happen once per kind. MixedOp sends only those here: weighted sums
(``gumbel``, ``softmax``) are traced inline, as before, because shared they made the step
slower (not inlined 1.6x; inlined 6-22%: ``benchmarks/README.md``); :func:`call` returns
None for them.

The maths is the same as the layer's own ``call``: inside the function the layer's code
runs with its variables mapped to the inputs (``keras.StatelessScope``): the trainable ones
as values read by the caller, so the gradients reach the edge's own variables; the others
(batch-norm moving averages) as the resource handles of the edge's variables, read and
assigned inside.

Used only inside a ``tf.function`` (eager calls run the layer directly), for MixedOps whose
candidates are all op names (layers passed in by the user are run directly). Set the
environment variable ``KERASNAS_SHARED_EDGES=0`` (read when a call is traced) to trace
every edge inline, as before (for comparisons).
"""

from __future__ import annotations

import functools
import os
import weakref
from typing import Any

import keras
import tensorflow as tf

from kerasnas import ops as ops_lib

# body kinds: "one" (index: op_index(x)), "one_scaled" (index and weights (k,):
# weights[index] * op_index(x)); weighted sums are not shared (see the module doc)
BODIES = ("one", "one_scaled")
_CACHE: dict[tuple, dict[str, Any]] = {}


def enabled() -> bool:
    """Whether MixedOps traced now share functions (``KERASNAS_SHARED_EDGES``, default on)."""
    return os.environ.get("KERASNAS_SHARED_EDGES", "1") not in ("0", "false", "False")


def clear() -> None:
    """Forgets every shared function (the next call of each kind traces anew)."""
    _CACHE.clear()


def edge_variables(layer) -> list:
    """Every variable of `layer`'s candidates (trainable and not), in a fixed order."""
    return [v for c in layer.candidates for v in c.weights]


def _config(layer) -> str:
    """The candidate's settings that its traced ops depend on (its name left out)."""
    config = {k: v for k, v in layer.get_config().items() if k != "name"}
    return repr(sorted(config.items()))


def _key(layer, x, body: str, training: bool) -> tuple | None:
    if not all(layer._specs_are_names) or not layer.built or tf.distribute.has_strategy():
        return None
    statistics = tuple(
        getattr(sub, "statistics", None)
        for c in layer.candidates
        for sub in c._flatten_layers(include_self=True, recursive=True)
    )
    variables = tuple((tuple(v.shape), str(v.dtype)) for v in edge_variables(layer))
    return (
        body,
        bool(training),
        tuple(layer.candidate_names),
        tuple(_config(c) for c in layer.candidates),
        layer.channels,
        layer.strides,
        layer.affine,
        layer.search,
        tuple(x.shape.as_list()),
        x.dtype.name,
        layer.dtype_policy.name,
        statistics,
        variables,
    )


def _run_one(layer, i: int, x, scale, training: bool):
    candidate = layer.candidates[i]
    if scale is None:
        return ops_lib.call_layer(candidate, x, training)
    return ops_lib.call_scaled(candidate, x, scale[i], training)


def _make(template, body: str, training: bool) -> dict[str, Any]:
    """The shared function of `template`'s kind."""
    # the template is held weakly: a traced function needs none of its state, so the cache
    # does not keep a discarded model alive (an entry whose template is gone is remade)
    template_ref = weakref.ref(template)

    def run(values, handles, compute):
        """``compute()`` with the template's trainable variables mapped to `values` (read
        outside, so gradients reach the edge's variables) and its other variables (batch-norm
        statistics) to the edge's `handles`, read and, where ``compute`` updates them,
        assigned here."""
        trainable, fixed = _split(edge_variables(template_ref()))
        reads = [
            tf.ensure_shape(tf.raw_ops.ReadVariableOp(resource=h, dtype=v.dtype), v.shape)
            for h, v in zip(handles, fixed, strict=True)
        ]
        mapping = list(zip(trainable, values, strict=True)) + list(zip(fixed, reads, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            y = compute()
            after = [scope.get_current_value(v) for v in trainable + fixed]
        before = list(values) + reads
        n = len(trainable)
        if any(a is not b for a, b in zip(after[:n], before[:n], strict=True)):
            raise RuntimeError(f"{template_ref().name}: an op assigned a trainable variable")
        for handle, a, b in zip(handles, after[n:], before[n:], strict=True):
            if a is not b:
                tf.raw_ops.AssignVariableOp(resource=handle, value=a)
        return y

    def fn(x, weights, index, values, handles):
        template = template_ref()
        scale = weights if body == "one_scaled" else None

        def branch(i):
            return run(values, handles, lambda: _run_one(template, i, x, scale, training))

        k = template.num_candidates
        return tf.switch_case(index, [functools.partial(branch, i) for i in range(k)])

    # not inlined: the switch over the candidates and its gradient are optimised and
    # instantiated once per kind and called per edge
    return {
        "template": template_ref,
        "fn": tf.function(
            fn,
            autograph=False,
            reduce_retracing=False,
            experimental_attributes={"_noinline": True},
        ),
    }


def _split(variables: list) -> tuple[list, list]:
    return [v for v in variables if v.trainable], [v for v in variables if not v.trainable]


def _handle(variable):
    """The resource handle (a tensor) of the ``tf.Variable`` behind a Keras variable, or None.
    Handles, not variables, are passed: a function traced with variable arguments keeps
    weak references to them and refuses to run once they are gone, even for other edges."""
    inner = getattr(variable, "_value", None)
    return inner.handle if isinstance(inner, tf.Variable) else None


def call(layer, x, body: str, weights, index, training: bool):
    """`layer`'s forward pass (a MixedOp's `body`, see :data:`BODIES`) through its kind's
    shared function; None when the layer cannot share one (the caller runs it directly)."""
    if body not in BODIES:
        return None
    key = _key(layer, x, body, training)
    if key is None:
        return None
    trainable, fixed = _split(edge_variables(layer))
    handles = [_handle(v) for v in fixed]
    if any(h is None for h in handles):
        return None
    entry = _CACHE.get(key)
    if entry is None or entry["template"]() is None:
        for dead in [k for k, e in _CACHE.items() if e["template"]() is None]:
            del _CACHE[dead]
        entry = _CACHE[key] = _make(layer, body, training)
    values = [tf.convert_to_tensor(v) for v in trainable]
    if index is not None:
        index = tf.cast(index, tf.int32)
    return entry["fn"](x, weights, index, values, handles)
