"""Choose a tf.distribute strategy, tell the chief worker from the others, synchronise batch norm.

`auto` mirrors over all local GPUs when there are several and otherwise uses the
default strategy; `multiworker` reads the cluster from `TF_CONFIG`. The global
batch size stays the configured one: each replica gets batch / replicas. With more
than one replica (mirrored or multi-worker) every BatchNormalization uses the
global batch's statistics (`synchronize_batch_norm`), switched off while a model
is saved (`unsynchronized_batch_norm`).
"""

from __future__ import annotations

import contextlib
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


def batch_norm_layers(model):
    """Every BatchNormalization inside `model` (`FusedBatchNormalization` and those within custom layers)."""
    import keras

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def synchronize_batch_norm(model, synchronized: bool) -> None:
    """Use the global batch's statistics in every BatchNormalization (all-reduced across replicas).

    Without this each replica keeps moving statistics from its own share of the batch, and workers
    end with different models. Switched off while saving, so a saved model keeps the fused kernel.
    """
    for layer in batch_norm_layers(model):
        layer.synchronized = synchronized


@contextlib.contextmanager
def unsynchronized_batch_norm(model):
    """Within the block the model's synchronised batch norms are plain ones (a model is saved this way)."""
    layers = [layer for layer in batch_norm_layers(model) if layer.synchronized]
    for layer in layers:
        layer.synchronized = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.synchronized = True
