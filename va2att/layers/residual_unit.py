"""Pre-activation bottleneck residual unit, the building brick of the backbone and of both attention branches."""

from __future__ import annotations

import keras
from keras import ops


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


@keras.saving.register_keras_serializable(package="va2att")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs TensorFlow's fused kernel on NHWC feature maps.

    Keras 3 normalises with separate moment, subtract, scale ops; on a CPU the fused kernel
    (`FusedBatchNormV3`, forward and gradient) is about three times faster on the backbone's maps.
    Same weights, same config, same moving-average rule (the moving variance uses the kernel's
    unbiased batch variance). Falls back to the parent layer for other backends, ranks or axes.
    Computes in float32 and casts back, like the parent, under a mixed-precision policy.

    Args: those of `keras.layers.BatchNormalization`.

    Call: `bn(x, training=None)`; no masking (a mask is passed to the parent's path only).
    """

    def _fused_applicable(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and self.center
            and self.scale
            and not self.synchronized
            and not self.renorm
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fused_applicable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        x = ops.cast(inputs, "float32")
        gamma = ops.cast(self.gamma, "float32")
        beta = ops.cast(self.beta, "float32")
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
            momentum = ops.cast(self.momentum, "float32")
            self.moving_mean.assign(self.moving_mean * momentum + ops.stop_gradient(mean) * (1.0 - momentum))
            self.moving_variance.assign(
                self.moving_variance * momentum + ops.stop_gradient(variance) * (1.0 - momentum)
            )
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=ops.cast(self.moving_mean, "float32"),
                variance=ops.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon,
                is_training=False,
            )
        return ops.cast(y, self.compute_dtype)


# Moving-statistics momentum. Keras's 0.99 needs several hundred steps before the moving mean and
# variance forget their initial values; at the demo set's 23 steps per epoch validation scores then
# lag training for the whole run. 0.9 (PyTorch's default) settles within tens of steps and is as
# good on AffectNet's ~1,100 steps per epoch.
BN_MOMENTUM = 0.9


def make_batch_norm(layer, name):
    """Batch normalisation over the channel axis, owned by `layer` and named from its prefix."""
    return FusedBatchNormalization(momentum=BN_MOMENTUM, epsilon=1e-3, dtype=layer.dtype_policy, name=f"{layer.name}_{name}")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")


@keras.saving.register_keras_serializable(package="va2att")
class ResidualUnit(keras.layers.Layer):
    """Pre-activation bottleneck residual unit (He et al. 2016), as used by Residual Attention Networks.

    Reference: https://arxiv.org/abs/1603.05027 (identity mappings), https://arxiv.org/abs/1704.06904 (ResAttNet).

    `BN-ReLU-1x1(filters/ratio) - BN-ReLU-3x3(filters/ratio, stride) - BN-ReLU-1x1(filters)` plus a shortcut:
    the identity when the shape is kept, otherwise a strided 1x1 projection of the pre-activated input.

    Args:
        filters: int. Output channels.
        strides: int. 1 keeps the spatial size, 2 halves it (down-sampling unit).
        bottleneck_ratio: int. Channels inside the unit are `max(1, filters // bottleneck_ratio)`.
        kernel_initializer: initializer for the convolutions (He normal by default).

    Call: `unit(x, training=None)` with `x` of shape `(batch, height, width, channels)` (NHWC).
    No masking: the input is a dense feature map.

    Example:
    >>> unit = ResidualUnit(32, strides=2)
    >>> unit(keras.ops.ones((2, 48, 48, 16))).shape
    (2, 24, 24, 32)
    """

    def __init__(self, filters, strides=1, bottleneck_ratio=4, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        if strides not in (1, 2):
            raise ValueError(f"strides must be 1 or 2. Received: strides={strides!r}")
        check_positive_int("bottleneck_ratio", bottleneck_ratio)
        self.filters = filters
        self.strides = strides
        self.bottleneck_ratio = bottleneck_ratio
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        inner = max(1, filters // bottleneck_ratio)

        # === Layers ===
        self.bn1 = make_batch_norm(self, "bn1")
        self.conv1 = make_conv(self, inner, 1, "conv1")
        self.bn2 = make_batch_norm(self, "bn2")
        self.conv2 = make_conv(self, inner, 3, "conv2", strides=strides)
        self.bn3 = make_batch_norm(self, "bn3")
        self.conv3 = make_conv(self, filters, 1, "conv3")
        self.shortcut = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.bn1.build(input_shape)
        if channels != self.filters or self.strides != 1:
            # Stride applied by slicing, then a stride-1 1x1 conv: the same arithmetic as a strided 1x1
            # conv, without oneDNN's strided 1x1 kernel (it corrupts memory on some small shapes).
            self.shortcut = make_conv(self, self.filters, 1, "shortcut")
            self.shortcut.build(input_shape)
        self.conv1.build(input_shape)
        inner_shape = (*input_shape[:-1], self.conv1.filters)
        self.bn2.build(inner_shape)
        self.conv2.build(inner_shape)
        out_spatial = self.conv2.compute_output_shape(inner_shape)
        self.bn3.build(out_spatial)
        self.conv3.build(out_spatial)

    def call(self, x, training=None):
        pre = keras.ops.relu(self.bn1(x, training=training))
        if self.shortcut is None:
            shortcut = x
        else:
            # Every `strides`-th pixel, as a strided 1x1 conv would read: a 1x1 average pool selects exactly
            # those (also on odd sizes) and is faster than a strided slice or a strided 1x1 conv, whose oneDNN
            # kernel corrupts memory on narrow inputs (BENCHMARKS.md, speed pass).
            sub = keras.ops.average_pool(pre, 1, self.strides, "valid") if self.strides > 1 else pre
            shortcut = self.shortcut(sub)
        y = self.conv1(pre)
        y = self.conv2(keras.ops.relu(self.bn2(y, training=training)))
        y = self.conv3(keras.ops.relu(self.bn3(y, training=training)))
        return y + shortcut

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        if self.strides == 2:
            height = None if height is None else (height + 1) // 2
            width = None if width is None else (width + 1) // 2
        return (batch, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            bottleneck_ratio=self.bottleneck_ratio,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
