"""Second-level attention: a bidirectional GRU over the level vectors, then dot-product self-attention."""

from __future__ import annotations

import math

import keras
from keras import ops

from va2att.layers.utils import check_positive_int

POOLINGS = ("flatten", "mean")


@keras.saving.register_keras_serializable(package="va2att")
class LevelAttention(keras.layers.Layer):
    """Bidirectional GRU + dot-product self-attention over a short sequence of level vectors (2Att-2Mt §3.2).

    Reference: Wang et al., "Two-level Attention with Two-stage Multi-task Learning for Facial Emotion
    Recognition" (`papers/2att-2mt.txt`, §3.2).

    The level vectors (low -> high level) form a sequence `X` of length L. A bidirectional GRU returns
    `H` of shape `(batch, L, 2 * gru_units)` (forward and backward states concatenated); the attended
    sequence is `softmax(H Hᵀ / √d) H` with `d = 2 * gru_units`; `pooling` turns it into one vector:
    "flatten" -> `(batch, L * d)`, "mean" -> `(batch, d)`.

    The GRU is built with `use_cudnn=False` and unrolled (L is tiny and fixed), so a graph traced on a
    GPU contains no cuDNN-only kernels and runs on a CPU server.

    Args:
        gru_units: int. Units per direction.
        pooling: str. "flatten" or "mean".

    Call: `layer(levels, training=None)` where `levels` is a list of `(batch, D)` tensors or one
    `(batch, L, D)` tensor. No masking: every level is always present, so no padding mask is used.

    Example:
    >>> att = LevelAttention(8)
    >>> att([keras.ops.ones((2, 16))] * 3).shape
    (2, 48)
    """

    def __init__(self, gru_units, pooling="flatten", **kwargs):
        super().__init__(**kwargs)
        check_positive_int("gru_units", gru_units)
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}. Received: pooling={pooling!r}")
        self.gru_units = gru_units
        self.pooling = pooling

        # === Layers ===
        gru = keras.layers.GRU(
            gru_units,
            return_sequences=True,
            use_cudnn=False,
            unroll=True,
            dtype=self.dtype_policy,
            name=f"{self.name}_gru",
        )
        self.bigru = keras.layers.Bidirectional(gru, merge_mode="concat", dtype=self.dtype_policy, name=f"{self.name}_bigru")

    @staticmethod
    def _sequence_shape(input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and isinstance(input_shape[0], (list, tuple)):
            return (input_shape[0][0], len(input_shape), input_shape[0][-1])
        return tuple(input_shape)

    def build(self, input_shape):
        self.bigru.build(self._sequence_shape(input_shape))

    def call(self, levels, training=None):
        x = ops.stack(levels, axis=1) if isinstance(levels, (list, tuple)) else levels
        h = self.bigru(x, training=training)
        scale = 1.0 / math.sqrt(2 * self.gru_units)
        scores = ops.matmul(h, ops.transpose(h, (0, 2, 1))) * ops.cast(scale, h.dtype)
        attended = ops.matmul(ops.softmax(scores, axis=-1), h)
        if self.pooling == "mean":
            return ops.mean(attended, axis=1)
        return ops.reshape(attended, (-1, attended.shape[1] * attended.shape[2]))

    def compute_output_shape(self, input_shape):
        batch, length, _ = self._sequence_shape(input_shape)
        d = 2 * self.gru_units
        return (batch, d) if self.pooling == "mean" else (batch, length * d)

    def get_config(self):
        config = super().get_config()
        config.update(gru_units=self.gru_units, pooling=self.pooling)
        return config
