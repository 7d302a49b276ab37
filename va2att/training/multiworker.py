"""Training under MultiWorkerMirroredStrategy.

Keras 3's `Model.fit` does not run under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585: it fails reducing the first batch and the per-replica logs).
This loop is what `fit` would do, on TensorFlow's own engine: `strategy.run` of the
model's own `train_step` / `test_step` (so the compiled losses, loss scaling for
distribution and streaming metrics are the same as in single-process training),
gradients all-reduced by the optimizer, metrics read across all workers, and the same
callbacks (schedule, checkpoint, TensorBoard) called at the same points.

Every worker reads the whole (deterministically ordered) dataset and keeps its share
of each global batch (`AutoShardPolicy.DATA`), so all workers run the same number of
steps and no collective waits for a worker that ran out of data.
"""

from __future__ import annotations

import hashlib

import numpy as np


def distribute(strategy, dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


def weights_digest(model) -> str:
    """A short fingerprint of all weights, equal on workers that hold the same model."""
    h = hashlib.sha256()
    for w in model.get_weights():
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()[:16]


def fit(model, strategy, train_ds, val_ds, *, epochs: int, initial_epoch: int, callbacks, log=print):
    """`model.fit(train_ds, validation_data=val_ds, ...)` for a MultiWorkerMirroredStrategy; returns the last logs."""
    import keras
    import tensorflow as tf

    train_dist = distribute(strategy, train_ds)
    val_dist = distribute(strategy, val_ds)

    @tf.function
    def train_step(batch):
        strategy.run(model.train_step, args=(batch,))

    @tf.function
    def test_step(batch):
        strategy.run(model.test_step, args=(batch,))

    def results(prefix=""):
        return {prefix + k: float(keras.ops.convert_to_numpy(v)) for k, v in model.get_metrics_result().items()}

    cbs = keras.callbacks.CallbackList(callbacks, model=model)
    cbs.on_train_begin()
    logs: dict = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        cbs.on_epoch_begin(epoch)
        steps = 0
        for batch in train_dist:
            cbs.on_train_batch_begin(steps)
            train_step(batch)
            cbs.on_train_batch_end(steps)
            steps += 1
        logs = results()
        model.reset_metrics()
        for batch in val_dist:
            test_step(batch)
        logs.update(results("val_"))
        cbs.on_epoch_end(epoch, logs)
        log(f"Epoch {epoch + 1}/{epochs}: {steps} steps, " +
            " - ".join(f"{k}: {v:.4f}" for k, v in sorted(logs.items()) if k in ("loss", "val_loss")
                       or k.endswith("_ccc")))
    cbs.on_train_end(logs)
    return logs


def barrier(strategy) -> None:
    """Wait until every worker gets here (a collective all-reduce), e.g. for the chief's export."""
    import tensorflow as tf

    strategy.reduce("SUM", strategy.run(tf.function(lambda: tf.constant(1.0))), axis=None)
