"""Helpers shared by va2att's layers: the sublayers a layer owns (convolutions,
batch normalisation), named from its prefix, with its initializer and dtype policy."""

from __future__ import annotations

import keras

from va2att.model.layers.fused_batch_normalization import (
    BN_MOMENTUM,
    FusedBatchNormalization,
)


def clone_initializer(initializer):
    """A fresh copy, so that unseeded initializers shared by several layers draw different values."""
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def make_conv(layer, filters, kernel_size, name, strides=1, use_bias=False, activation=None):
    """An NHWC convolution owned by `layer`, named from its prefix, with the layer's initializer and dtype."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=use_bias,
        activation=activation,
        kernel_initializer=clone_initializer(layer.kernel_initializer),
        dtype=layer.dtype_policy,
        name=f"{layer.name}_{name}",
    )


def make_batch_norm(layer, name):
    """Batch normalisation over the channel axis, owned by `layer` and named from its prefix."""
    return FusedBatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, dtype=layer.dtype_policy, name=f"{layer.name}_{name}")
