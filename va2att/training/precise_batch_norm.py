"""Batch-norm population statistics recomputed for the current weights ("precise BN").

A BatchNormalization layer normalises with its batch's statistics while training and with its
moving mean and variance at inference. The moving values are an exponential average over training
steps (momentum 0.9), so they mix the statistics of the weights of the last ten to twenty steps.
While the weights still move fast (the paper's lr 1e-3; 11 steps an epoch on a set of 3,000 faces)
those values do not match the network they are used with: validation CCC then swings by 0.1-0.3
from one epoch to the next while the training loss falls smoothly, and the epoch chosen as best,
the checkpoint and the export carry the mismatch (docs/architecture.md, "Batch-norm statistics").

`recompute_batch_norm_statistics` replaces them with the average over a number of training batches
of each layer's batch mean and variance, computed with the weights as they are now (Wu & Johnson
2021, "Rethinking 'Batch' in BatchNorm", https://arxiv.org/abs/2105.07576: "precise BN").
The trainer does this before each validation (`PreciseBatchNorm`), so the validation scores, the
best model, every checkpoint and the export use statistics of the network they belong to.
Training itself is unchanged: it normalises with each batch's own statistics either way.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np

from va2att.training.distribute import batch_norm_layers


def batches_for(samples: int, batch_size: int) -> int:
    """Training batches that cover `samples` faces (at least one; 0 when `samples` is 0)."""
    return 0 if samples <= 0 else max(1, math.ceil(samples / batch_size))


def recompute_batch_norm_statistics(model, images, batches: int, forward=None) -> int:
    """Set every trainable batch norm's moving mean and variance to its average batch statistics.

    Args:
        model: a Keras model; batch norms that are not trainable (frozen) keep their statistics.
        images: a dataset (or iterable) of input batches, as the model takes them in training.
        batches: at most this many batches are read.
        forward: optional callable `forward(x)` running `model(x, training=True)`, e.g. a
            `tf.function` kept between calls (it must have been traced under `momentum == 0`,
            which this function sets while it runs). Default: a new `tf.function` of the model.

    Returns the number of batches averaged (0: nothing changed).
    """
    layers = [layer for layer in batch_norm_layers(model) if layer.trainable]
    if not layers or batches <= 0:
        return 0
    if forward is None:
        forward = _forward(model)
    momenta = [layer.momentum for layer in layers]
    means = [np.zeros(layer.moving_mean.shape, np.float64) for layer in layers]
    variances = [np.zeros(layer.moving_variance.shape, np.float64) for layer in layers]
    count = 0
    try:
        for layer in layers:  # with momentum 0 a training-mode call leaves the batch's own statistics
            layer.momentum = 0.0
        for x in itertools.islice(images, batches):
            forward(x)
            for k, layer in enumerate(layers):
                means[k] += keras.ops.convert_to_numpy(layer.moving_mean)
                variances[k] += keras.ops.convert_to_numpy(layer.moving_variance)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if count:
        for k, layer in enumerate(layers):
            layer.moving_mean.assign((means[k] / count).astype(layer.moving_mean.dtype))
            layer.moving_variance.assign((variances[k] / count).astype(layer.moving_variance.dtype))
    return count


def _forward(model):
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=True), reduce_retracing=True)


class PreciseBatchNorm(keras.callbacks.Callback):
    """Before each validation of `model.fit`, recompute the batch-norm statistics on training batches.

    Args:
        train_ds: the training dataset (`(images, labels[, weights])` batches); only the images are read.
        batches: batches averaged each time (`batches_for(train.precise_bn_samples, batch_size)`).

    Runs in `on_test_begin`, which `fit` calls before it validates an epoch, so the validation logs,
    the checkpoint and the best model of that epoch all use the recomputed statistics.
    """

    def __init__(self, train_ds, batches: int):
        super().__init__()
        self.images = train_ds.map(lambda x, *_: x)
        self.batches = batches
        self.forward = None

    def on_test_begin(self, logs=None):
        if self.forward is None:
            self.forward = _forward(self.model)
        recompute_batch_norm_statistics(self.model, self.images, self.batches, self.forward)
