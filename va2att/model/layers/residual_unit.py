"""Pre-activation bottleneck residual unit, the building brick of the backbone and of both attention branches."""

from __future__ import annotations

import keras

from va2att.model.layers.utils import make_batch_norm, make_conv
from va2att.util.checks import check_positive_int


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
            # Stride applied by a 1x1 average pool in `call`, then this stride-1 1x1 conv: the same arithmetic
            # as a strided 1x1 conv, without oneDNN's strided 1x1 kernel (it corrupts memory on some small shapes).
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
            # kernel corrupts memory on narrow inputs (BENCHMARKS.md, "History of the speed changes").
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
