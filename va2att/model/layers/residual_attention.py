"""Residual attention block (first-level attention): trunk branch gated by an hourglass soft mask."""

from __future__ import annotations

import keras
from keras import ops

from va2att.model.layers.residual_unit import ResidualUnit
from va2att.model.layers.utils import clone_initializer, make_batch_norm, make_conv
from va2att.util.checks import check_positive_int

TRUNK_UNITS = 2  # residual units in the trunk branch (t = 2 in Wang et al. 2017)


def resize_like(x, reference):
    """Bilinear up-sampling of `x` to the spatial size of `reference` (its actual size, so odd sizes work)."""
    size = ops.shape(reference)[1:3]
    y = ops.image.resize(x, size, interpolation="bilinear", data_format="channels_last")
    return ops.cast(y, x.dtype)


@keras.saving.register_keras_serializable(package="va2att")
class ResidualAttentionBlock(keras.layers.Layer):
    """Attention module of Residual Attention Networks: `H = (1 + M(x)) * T(x)`.

    Reference: Wang et al. 2017, https://arxiv.org/abs/1704.06904.

    The trunk `T` is `TRUNK_UNITS` residual units. The mask `M` is a bottom-up top-down hourglass:
    `mask_depth` 2x2 max-poolings (padding "same"), one residual unit after each, a residual unit on
    each skip connection, two units at the bottom resolution, bilinear up-sampling back to the skip
    tensor's actual size (so 6x6 -> 3x3 -> 6x6 and 5x5 -> 3x3 -> 5x5 both work) added to the skip and
    followed by a residual unit, a last up-sampling to the input size, then `BN-ReLU-1x1 conv` twice
    and a sigmoid. The `1 +` lets trunk features pass unchanged where the mask is near zero.

    Args:
        filters: int. Output channels of both branches.
        mask_depth: int. Number of max-pool down-samplings in the mask branch.
        bottleneck_ratio: int. Passed to every `ResidualUnit`.
        kernel_initializer: initializer for the convolutions (He normal by default).

    Call: `block(x, training=None)` with `x` NHWC; returns `(batch, height, width, filters)`.
    No masking (the soft mask is computed, not passed in).

    Example:
    >>> block = ResidualAttentionBlock(16, mask_depth=1)
    >>> block(keras.ops.ones((2, 6, 6, 16))).shape
    (2, 6, 6, 16)
    """

    def __init__(self, filters, mask_depth=1, bottleneck_ratio=4, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        check_positive_int("filters", filters)
        check_positive_int("mask_depth", mask_depth)
        check_positive_int("bottleneck_ratio", bottleneck_ratio)
        self.filters = filters
        self.mask_depth = mask_depth
        self.bottleneck_ratio = bottleneck_ratio
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        def unit(name):
            return ResidualUnit(
                filters,
                bottleneck_ratio=bottleneck_ratio,
                kernel_initializer=clone_initializer(self.kernel_initializer),
                dtype=self.dtype_policy,
                name=f"{self.name}_{name}",
            )

        # === Layers ===
        self.trunk = [unit(f"trunk{i + 1}") for i in range(TRUNK_UNITS)]
        self.mask_down = [unit(f"mask_down{i + 1}") for i in range(mask_depth)]
        self.mask_skip = [unit(f"mask_skip{i + 1}") for i in range(mask_depth - 1)]
        self.mask_bottom = unit("mask_bottom")
        self.mask_up = [unit(f"mask_up{i + 1}") for i in range(mask_depth - 1)]
        self.mask_bn1 = make_batch_norm(self, "mask_bn1")
        self.mask_conv1 = make_conv(self, filters, 1, "mask_conv1")
        self.mask_bn2 = make_batch_norm(self, "mask_bn2")
        self.mask_conv2 = make_conv(self, filters, 1, "mask_conv2", use_bias=True)

    def build(self, input_shape):
        out_shape = (*input_shape[:-1], self.filters)
        shape = input_shape
        for layer in self.trunk:
            layer.build(shape)
            shape = out_shape
        batch, height, width, _ = input_shape
        shape = input_shape
        for i in range(self.mask_depth):
            height = None if height is None else (height + 1) // 2
            width = None if width is None else (width + 1) // 2
            self.mask_down[i].build((batch, height, width, shape[-1]))
            shape = (batch, height, width, self.filters)
            if i < self.mask_depth - 1:
                self.mask_skip[i].build(shape)
        self.mask_bottom.build(shape)
        for layer in self.mask_up:
            layer.build(out_shape)
        for layer in (self.mask_bn1, self.mask_conv1, self.mask_bn2, self.mask_conv2):
            layer.build(out_shape)

    def call(self, x, training=None):
        trunk = x
        for layer in self.trunk:
            trunk = layer(trunk, training=training)

        # Bottom-up: pool, unit; keep a residual-unit skip at each intermediate resolution.
        m = x
        skips = []
        for i in range(self.mask_depth):
            m = ops.max_pool(m, pool_size=2, strides=2, padding="same")
            m = self.mask_down[i](m, training=training)
            if i < self.mask_depth - 1:
                skips.append(self.mask_skip[i](m, training=training))
        m = self.mask_bottom(m, training=training)
        # Top-down: up-sample to the skip's size, add it, unit; finally back to the input size.
        for i in reversed(range(self.mask_depth - 1)):
            m = resize_like(m, skips[i]) + skips[i]
            m = self.mask_up[i](m, training=training)
        m = resize_like(m, x)
        m = self.mask_conv1(ops.relu(self.mask_bn1(m, training=training)))
        m = self.mask_conv2(ops.relu(self.mask_bn2(m, training=training)))
        mask = ops.sigmoid(m)
        return (1.0 + mask) * trunk

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            mask_depth=self.mask_depth,
            bottleneck_ratio=self.bottleneck_ratio,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
