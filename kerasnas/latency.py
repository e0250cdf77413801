"""Latency lookup tables: per-op LiteRT latency measured on this machine, for the SNAS penalty.

Each candidate op of a MixedOp, at that MixedOp's input shape, is converted alone to a float
TFLite model (``Input(shape) -> op`` in inference mode, via
:func:`kerasnas.export.litert.convert_keras_frozen`) and timed with
:func:`kerasnas.export.litert.latency_ms` (median wall time of one ``invoke`` on one image).
The table entry is that time minus the time of an empty model of the same input (the
interpreter's per-invoke overhead), clipped at 0, in milliseconds: summing entries over a
network's ops then counts the fixed overhead zero times instead of once per op.

Rules, not measurements: ``none`` (:class:`kerasnas.ops.Zero`) costs 0, since a child drops
the edge; identities (``skip_connect`` at stride 1, ``keras.layers.Identity``) cost 0, since
they convert to no TFLite op at all (measured: the same time as the empty model).

Before conversion every weight of the op is set to random values (batch-norm variances
positive), so the converter folds batch norm as it does for a trained child: with the
initial zero means a pooling op's batch norm would fold to one MUL instead of MUL + ADD.

Measurements are cached in one JSON file per device (``<cache_dir>/<device id>.json``,
written atomically; default ``$KERASNAS_CACHE/latency``, else ``~/.cache/kerasnas/latency``).
The device is platform.machine(), the CPU model name, the LiteRT and TensorFlow versions
and the thread count; an entry's key is the op's class and config (``get_config()`` minus
``name``, so user-defined ops work), its input shape (H, W, C) and its stride.

``python -m kerasnas.cli.latency --dataset=digits --init_channels=8 --layers=5 --nodes=4``
builds the table of a cell supernet and prints it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np

from kerasnas import io, resource
from kerasnas import ops as ops_lib
from kerasnas.errors import SettingError
from kerasnas.layers import MixedOp, mixed_ops
from kerasnas.wording import count

CACHE_ENV = "KERASNAS_CACHE"
FORMAT_VERSION = 1
DEFAULT_RUNS = 200  # timed invokes per op (median taken)
DEFAULT_WARMUP = 20

Shape = tuple[int, ...]


class LatencyCacheError(SettingError):
    """A latency cache file cannot be used: the message names the file and the fix."""


# -- keys ------------------------------------------------------------------------------------


def default_cache_dir() -> str:
    """``$KERASNAS_CACHE/latency`` when the variable is set, else ``~/.cache/kerasnas/latency``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "kerasnas")
    return os.path.join(root, "latency")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (else platform.processor(), else "unknown")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info(num_threads: int = 1) -> dict[str, Any]:
    """What a latency depends on besides the op: machine, CPU, runtime versions, threads."""
    import tensorflow as tf

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001 - any metadata problem: fall back to a marker
        litert = "unknown"
    return {
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "litert": litert,
        "tensorflow": tf.__version__,
        "num_threads": int(num_threads),
    }


def _digest(obj: Any, n: int = 16) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def op_signature(layer: keras.layers.Layer) -> dict[str, Any]:
    """The op part of a cache key: class path and ``get_config()`` without ``name``."""
    config = dict(layer.get_config())
    config.pop("name", None)
    cls = type(layer)
    return {"class": f"{cls.__module__}.{cls.__qualname__}", "config": config}


def entry_key(layer: keras.layers.Layer, input_shape: Sequence[int], strides: int) -> str:
    """Cache key of `layer` on inputs of shape (H, W, C) with stride `strides` (hex digest)."""
    shape = [int(d) for d in input_shape]
    return _digest({"op": op_signature(layer), "input_shape": shape, "strides": int(strides)})


def is_free(layer: keras.layers.Layer) -> bool:
    """True for ops that cost 0 by rule: ``none`` and identities (no TFLite op)."""
    return isinstance(layer, (ops_lib.Zero, ops_lib.Identity, keras.layers.Identity))


# -- measuring -------------------------------------------------------------------------------


def randomize_weights(model: keras.Model, seed: int = 0) -> None:
    """Sets every weight of `model` to random values (N(0, 0.1); variances U(0.5, 1.5)), so
    conversion keeps the batch-norm arithmetic a trained network keeps."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape = tuple(w.shape)
        if "variance" in w.path:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        w.assign(value.astype(w.dtype))


def _clone(layer: keras.layers.Layer) -> keras.layers.Layer:
    try:
        return layer.__class__.from_config(layer.get_config())
    except Exception:  # noqa: BLE001 - a layer that cannot round-trip is measured itself
        return layer


def single_op_model(layer: keras.layers.Layer | None, input_shape: Sequence[int]) -> keras.Model:
    """``Input(input_shape) -> layer`` (a fresh copy of it), or the empty model for None."""
    inputs = keras.Input(tuple(int(d) for d in input_shape), name="x")
    outputs = (
        keras.layers.Identity(name="empty")(inputs) if layer is None else _clone(layer)(inputs)
    )
    model = keras.Model(inputs, outputs)
    randomize_weights(model)
    return model


class LatencyTable:
    """Measures and caches single-op LiteRT latencies (ms) on this machine.

    Args:
      cache_dir: directory of the JSON cache files (default :func:`default_cache_dir`);
        None uses the default, "" keeps nothing on disk.
      num_threads: interpreter threads (part of the device key).
      runs, warmup: timed and untimed invokes per measurement.
      verbose: 1 prints a line per measured op.
      log: where progress lines go (default: print to stdout).

    ``conversions`` counts TFLite conversions made by this object (0 when all was cached).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike | None = None,
        num_threads: int = 1,
        runs: int = DEFAULT_RUNS,
        warmup: int = DEFAULT_WARMUP,
        verbose: int = 0,
        log: Callable[[str], None] | None = None,
    ):
        if not isinstance(num_threads, int) or num_threads < 1:
            raise SettingError(
                f"LatencyTable: {{num_threads}} must be a positive int, got {num_threads}"
            )
        if runs < 1 or warmup < 0:
            raise SettingError(
                f"LatencyTable: {{runs}} must be >= 1, {{warmup}} >= 0, got {runs}, {warmup}"
            )
        self.cache_dir = default_cache_dir() if cache_dir is None else os.fspath(cache_dir)
        self.num_threads = num_threads
        self.runs = runs
        self.warmup = warmup
        self.verbose = verbose
        self.log = log or (lambda line: print(line, flush=True))
        self.device = device_info(num_threads)
        self.device_id = f"{self.device['machine']}-t{num_threads}-{_digest(self.device, 12)}"
        self.conversions = 0
        self.entries: dict[str, dict[str, Any]] = self._read()

    @property
    def path(self) -> str | None:
        """The cache file of this device, or None when nothing is kept on disk."""
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, f"{self.device_id}.json")

    # -- cache file ------------------------------------------------------------------------
    def _read(self) -> dict[str, dict[str, Any]]:
        path = self.path
        if path is None or not os.path.exists(path):
            return {}
        fix = "delete it (it is only a cache) or choose another latency cache directory"
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyCacheError(f"latency cache {path} is unreadable ({e}); {fix}") from None
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT_VERSION
            or not isinstance(data.get("entries"), dict)
            or not all(
                isinstance(v, dict) and isinstance(v.get("ms"), (int, float))
                for v in data["entries"].values()
            )
        ):
            raise LatencyCacheError(
                f"latency cache {path} is not a kerasnas latency table "
                f"(format {FORMAT_VERSION}); {fix}"
            )
        return dict(data["entries"])

    def save(self) -> None:
        """Writes the table atomically, merged with entries another process may have added."""
        path = self.path
        if path is None:
            return
        try:
            merged = {**self._read(), **self.entries}
        except LatencyCacheError:
            merged = dict(self.entries)  # measured now beats a broken file
        self.entries = merged
        io.write_json(
            path, {"format": FORMAT_VERSION, "device": self.device, "entries": self.entries}
        )

    # -- measurements ----------------------------------------------------------------------
    def _time(self, layer: keras.layers.Layer | None, input_shape: Shape) -> float:
        from kerasnas.export import litert

        tflite = litert.convert_keras_frozen(single_op_model(layer, input_shape))
        self.conversions += 1
        return litert.latency_ms(tflite, self.num_threads, self.runs, self.warmup)

    def baseline(self, input_shape: Sequence[int]) -> float:
        """ms of one invoke of the empty model on inputs (H, W, C): the interpreter overhead."""
        shape = tuple(int(d) for d in input_shape)
        key = _digest({"baseline": list(shape)})
        if key not in self.entries:
            ms = self._time(None, shape)
            self.entries[key] = {"op": "(empty model)", "input_shape": list(shape), "ms": ms}
        return float(self.entries[key]["ms"])

    def lookup(
        self, layer: keras.layers.Layer, input_shape: Sequence[int], strides: int = 1
    ) -> float | None:
        """The cached latency (ms) of `layer` at (H, W, C), stride `strides`; None if absent."""
        if is_free(layer):
            return 0.0
        entry = self.entries.get(entry_key(layer, input_shape, strides))
        return None if entry is None else float(entry["ms"])

    def latency(
        self, layer: keras.layers.Layer, input_shape: Sequence[int], strides: int = 1
    ) -> float:
        """Latency of `layer` on one (H, W, C) input in ms: op-alone model minus the empty
        model, clipped at 0. Measured once, then read from the table (call :meth:`save`)."""
        shape = tuple(int(d) for d in input_shape)
        cached = self.lookup(layer, shape, strides)
        if cached is not None:
            return cached
        base = self.baseline(shape)
        t0 = time.perf_counter()
        raw = self._time(layer, shape)
        ms = max(raw - base, 0.0)
        sig = op_signature(layer)
        self.entries[entry_key(layer, shape, strides)] = {
            "op": layer.name,
            "class": sig["class"],
            "input_shape": list(shape),
            "strides": int(strides),
            "ms": ms,
            "raw_ms": raw,
            "baseline_ms": base,
            "runs": self.runs,
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return ms


def _edges(layers: Iterable[MixedOp]) -> list[tuple[MixedOp, Shape]]:
    out = []
    for layer in layers:
        if not isinstance(layer, MixedOp):
            raise ValueError(f"attach_latency: expected MixedOp layers, got {type(layer).__name__}")
        if layer.cost_table is None or not layer.built:
            raise ValueError(
                f"attach_latency: MixedOp {layer.name!r} is not built on a fixed input shape"
            )
        out.append((layer, _input_shape(layer)))
    return out


def _input_shape(layer: MixedOp) -> Shape:
    """(H, W, C) the MixedOp was built on (Keras records the build shape)."""
    shapes = getattr(layer, "_build_shapes_dict", None) or {}
    shape = next(iter(shapes.values()), None)
    if shape is None:
        shape = layer.input.shape  # a functional node's input, (None, H, W, C)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"attach_latency: MixedOp {layer.name!r} has input shape {shape}")
    return tuple(int(d) for d in shape[1:])


def attach_latency(
    model_or_layers: keras.layers.Layer | Sequence[MixedOp],
    table: LatencyTable | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    num_threads: int = 1,
    verbose: int = 0,
) -> LatencyTable:
    """Gives every MixedOp of a model (or the given MixedOps) a latency column (ms) in its
    ``cost_table``, measuring what the cache lacks, so that
    ``resource.penalty(..., resource="latency")`` and ``expected_cost`` work.

    `table` (or a new :class:`LatencyTable` from `cache_dir`, `num_threads`, `verbose`)
    does the measuring; the cache is saved once at the end. Returns the table.
    """
    if isinstance(model_or_layers, keras.layers.Layer):
        layers = mixed_ops(model_or_layers)
    else:
        layers = list(model_or_layers)
    if not layers:
        raise ValueError("attach_latency: no MixedOp layers")
    if table is None:
        table = LatencyTable(cache_dir, num_threads, verbose=verbose)
    edges = _edges(layers)
    todo: dict[str, tuple[keras.layers.Layer, Shape, int]] = {}
    for layer, shape in edges:
        for op in layer.candidates:
            if table.lookup(op, shape, layer.strides) is None:
                todo.setdefault(entry_key(op, shape, layer.strides), (op, shape, layer.strides))
    if todo and table.verbose:
        table.log(
            f"latency table: measuring {count(len(todo), 'op')} with LiteRT "
            f"({count(table.num_threads, 'thread')}, {count(table.runs, 'run')} each; "
            f"cache {table.path})"
        )
    try:
        for i, (op, shape, strides) in enumerate(todo.values()):
            t0 = time.perf_counter()
            ms = table.latency(op, shape, strides)
            if table.verbose:
                table.log(
                    f"  [{i + 1}/{len(todo)}] {op.name} {'x'.join(map(str, shape))} "
                    f"stride {strides}: {ms:.4f} ms ({time.perf_counter() - t0:.1f} s)"
                )
    finally:
        if todo:
            table.save()  # keep what was measured even if interrupted
    for layer, shape in edges:
        column = np.array([table.latency(op, shape, layer.strides) for op in layer.candidates])
        analytic = layer.cost_table[:, : len(resource.ANALYTIC)]
        layer.cost_table = np.concatenate([analytic, column[:, None]], axis=1)
    return table


def table_rows(layers: Sequence[MixedOp], table: LatencyTable) -> list[dict[str, Any]]:
    """One row per distinct (op, input shape, stride) of `layers`: op name, input shape,
    stride, ms and how many of the layers (edges) have that candidate."""
    rows: dict[str, dict[str, Any]] = {}
    for layer, shape in _edges(layers):
        for op in layer.candidates:
            key = entry_key(op, shape, layer.strides)
            row = rows.setdefault(
                key,
                {
                    "op": op.name,
                    "input_shape": shape,
                    "strides": layer.strides,
                    "ms": table.latency(op, shape, layer.strides),
                    "rule": is_free(op),
                    "edges": 0,
                },
            )
            row["edges"] += 1
    return sorted(
        rows.values(),
        key=lambda r: (-r["input_shape"][0], r["input_shape"][2], r["strides"], r["op"]),
    )
