"""Choose a tf.distribute strategy and tell the chief worker from the others.

`auto` mirrors over all local GPUs when there are several and otherwise uses the
default strategy; `multiworker` reads the cluster from `TF_CONFIG`. The global
batch size stays the configured one: each replica gets batch / replicas.
"""

from __future__ import annotations

import json
import os


def require_cluster() -> None:
    """Multi-worker training needs TF_CONFIG; fail with a clear message before any work starts."""
    if not os.environ.get("TF_CONFIG"):
        raise ValueError("--strategy multiworker needs TF_CONFIG describing the cluster and this worker's task.")


def make_strategy(name: str):
    import tensorflow as tf

    if name == "multiworker":  # must come before anything initialises TensorFlow's runtime
        require_cluster()
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "one":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}: allowed values are auto, one, mirrored, multiworker.")


def task() -> tuple[str | None, int, int]:
    """(task type, task index, number of workers) from TF_CONFIG; (None, 0, 1) without one."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster") or {}
    spec = config.get("task") or {}
    workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return spec.get("type"), int(spec.get("index", 0)), max(workers, 1)


def is_chief() -> bool:
    """The chief writes checkpoints, logs and exports: the `chief` task, else worker 0, else a lone process."""
    kind, index, _ = task()
    if kind is None:
        return True
    config = json.loads(os.environ["TF_CONFIG"])
    if "chief" in (config.get("cluster") or {}):
        return kind == "chief"
    return kind == "worker" and index == 0
