"""Per-image standardisation of the input face: zero mean and unit variance over its pixels."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="va2att")
class PerImageStandardization(keras.layers.Layer):
    """`(x - mean(x)) / max(std(x), 1 / sqrt(N))` per image, over height, width and channels.

    The same as `tf.image.per_image_standardization`: it removes each face's brightness and contrast,
    so the network sees the same pattern for a dim and a bright photo of the same face. The floor
    on the standard deviation keeps a uniform image finite (all zeros).

    Call: `layer(x)` with `x` of shape `(batch, height, width, channels)`; same shape out, float32.
    """

    def call(self, x):
        x = ops.cast(x, "float32")
        centred = x - ops.mean(x, axis=(1, 2, 3), keepdims=True)
        variance = ops.mean(ops.square(centred), axis=(1, 2, 3), keepdims=True)
        count = ops.cast(ops.prod(ops.shape(x)[1:]), "float32")
        floor = ops.rsqrt(count)
        return ops.cast(centred / ops.maximum(ops.sqrt(variance), floor), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
