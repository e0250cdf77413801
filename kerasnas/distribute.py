"""Supernet training under ``tf.distribute``: strategies, and the reductions the trainers use.

The trainers run their step in each replica (``strategy.run``) on its share of the global
batch. Each replica's loss is its examples' sum divided by the GLOBAL batch size
(:func:`batch_mean`), so the sum of the replicas' gradients (:func:`sum_over_replicas`) is
the gradient of the global batch's mean loss; clipping, decay and the optimizer step then
run on that sum, identically in every replica (each updates its own copy of a mirrored
variable). Every helper is the plain single-device computation when there is no strategy
or one replica (decided when the step is traced: nothing is added to single-device graphs).
"""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf

from kerasnas.errors import SettingError
from kerasnas.graph_options import lean_function
from kerasnas.names import DISTRIBUTIONS

_SUM = tf.distribute.ReduceOp.SUM


def split_cpu(n: int) -> None:
    """Splits the first physical CPU into `n` logical devices (for tests and benchmarks of
    MirroredStrategy without GPUs). Must run before TensorFlow initialises its devices."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
    )


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise SettingError("{distribution}=multi_worker needs the TF_CONFIG environment variable")
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
        if workers < 1 or task["type"] not in cluster or int(task["index"]) < 0:
            raise ValueError("no worker, or the task is not in the cluster")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SettingError(f"{{distribution}}=multi_worker: TF_CONFIG is invalid ({e})") from None
    return config


def make_strategy(name: str) -> tf.distribute.Strategy | None:
    """The strategy of ``--distribution`` `name`: None for ``none``; ``mirrored``: every
    GPU of this machine, else every logical CPU (see :func:`split_cpu`); ``multi_worker``:
    the cluster of TF_CONFIG (create it before any other TensorFlow op). Raises ValueError
    naming ``--distribution``."""
    if name == "none":
        return None
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    if name == "multi_worker":
        _tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SettingError(f"{{distribution}} must be one of {DISTRIBUTIONS}, got {name!r}")


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the output files: always, except the non-chief workers
    of a multi-worker cluster (the chief is task ``chief``, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def replicas() -> int:
    """Replicas in sync when called in a replica context of a strategy (1 otherwise)."""
    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return 1
    return tf.distribute.get_replica_context().num_replicas_in_sync


def all_reduce_sum(values):
    """The sum over the replicas of `values` (a tensor or list of tensors)."""
    return tf.distribute.get_replica_context().all_reduce(_SUM, values)


def batch_mean(values):
    """Mean over the batch (axis 0) of per-example `values`; in a replica of several, this
    replica's share of the global batch's mean (its sum / the global batch size)."""
    if replicas() == 1:
        return keras.ops.mean(values)
    count = tf.cast(tf.shape(values)[0], values.dtype)
    return tf.reduce_sum(values) / all_reduce_sum(count)


def share(value):
    """This replica's share of a `value` every replica computes alike (value / replicas),
    so that summing over replicas (gradients, logs) counts it once."""
    n = replicas()
    return value if n == 1 else value / n


def sum_over_replicas(grads: list) -> list:
    """Gradients summed over the replicas (unchanged with one replica)."""
    return grads if replicas() == 1 else all_reduce_sum(list(grads))


def for_keras_optimizer(grads: list) -> list:
    """Reduced gradients as a Keras optimizer wants them in a replica: it sums them over
    the replicas itself, so each replica passes its share."""
    n = replicas()
    return grads if n == 1 else [g / n for g in grads]


def distribute_step(strategy: tf.distribute.Strategy, step, jit_compile: bool, signature):
    """`step` (a replica's ``train_step`` returning a dict of scalar shares, see
    :func:`batch_mean` and :func:`share`) as a compiled global step on distributed batches:
    the logs are summed over the replicas."""

    def global_step(*batch):
        logs = strategy.run(step, args=batch)
        return {k: strategy.reduce(_SUM, v, axis=None) for k, v in logs.items()}

    return lean_function(
        tf.function(global_step, jit_compile=jit_compile, input_signature=signature)
    )
