"""Second-level attention: a bidirectional GRU over the level vectors, then dot-product self-attention."""

from __future__ import annotations

import math

import keras
from keras import ops

from va2att.util.checks import check_positive_int

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

    The weights are those of a Keras `Bidirectional(GRU)` (`self.bigru`, built with `use_cudnn=False`,
    so `.keras` files keep their layout); the layer computes the GRU itself (`_bidirectional_gru`, the
    same arithmetic in fewer ops), so a graph traced on a GPU contains no cuDNN-only kernels and runs
    on a CPU server.

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

    def _bidirectional_gru(self, x):
        """The outputs of `self.bigru` on `x` (batch, L, D), both directions computed together.

        The same arithmetic as Keras's GRU (`reset_after=True`, sigmoid gates, tanh candidate) with
        the same weights, written with far fewer ops than the two unrolled Keras GRUs: one input
        projection for every step and both directions, then per step one recurrent matmul against a
        block-diagonal kernel and the gates of both directions at once. In a frozen export the weight
        rearrangement is constant-folded, so a call runs about 50 small ops here instead of about 130
        (the GRU is most of the graph's per-call overhead at batch 1).
        """
        u = self.gru_units
        cells = (self.bigru.forward_layer.cell, self.bigru.backward_layer.cell)

        def gates(tensor):  # (..., 3u) of one direction -> its z, r, h parts
            return tensor[..., :u], tensor[..., u:2 * u], tensor[..., 2 * u:]

        # Columns ordered [z_f, z_b, r_f, r_b, h_f, h_b] so that each gate of both directions is contiguous.
        def interleave(forward, backward):
            zf, rf, hf = gates(forward)
            zb, rb, hb = gates(backward)
            return ops.concatenate([zf, zb, rf, rb, hf, hb], axis=-1)

        kernel = interleave(*(ops.cast(c.kernel, x.dtype) for c in cells))
        input_bias = interleave(*(ops.cast(c.bias[0], x.dtype) for c in cells))
        recurrent_bias = interleave(*(ops.cast(c.bias[1], x.dtype) for c in cells))
        zeros = ops.zeros((u, 3 * u), x.dtype)
        rf, rb = (ops.cast(c.recurrent_kernel, x.dtype) for c in cells)
        recurrent = interleave(ops.concatenate([rf, zeros], axis=0), ops.concatenate([zeros, rb], axis=0))

        length, depth = x.shape[1], x.shape[2]
        projected = ops.matmul(ops.reshape(x, (-1, depth)), kernel) + input_bias
        projected = ops.reshape(projected, (-1, length, 6 * u))
        # The backward direction reads the sequence from its end: its columns are taken time-reversed.
        backward_columns = ops.tile(ops.repeat(ops.convert_to_tensor([False, True]), u), 3)
        projected = ops.where(backward_columns, ops.flip(projected, axis=1), projected)
        steps = []
        state = None
        for x_t in ops.unstack(projected, axis=1):
            x_zr, x_h = ops.split(x_t, [4 * u], axis=-1)
            inner = recurrent_bias if state is None else ops.matmul(state, recurrent) + recurrent_bias
            inner_zr, inner_h = ops.split(inner, [4 * u], axis=-1)
            z, r = ops.split(ops.sigmoid(x_zr + inner_zr), 2, axis=-1)
            candidate = ops.tanh(x_h + r * inner_h)
            # h = z * h_previous + (1 - z) * candidate, with h_previous = 0 at the first step.
            state = candidate * (1.0 - z) if state is None else candidate + z * (state - candidate)
            steps.append(state)
        states = ops.stack(steps, axis=1)  # (batch, L, 2u): forward state at t, backward state at L - 1 - t
        return ops.concatenate([states[..., :u], ops.flip(states[..., u:], axis=1)], axis=-1)

    def call(self, levels, training=None):
        x = ops.stack(levels, axis=1) if isinstance(levels, (list, tuple)) else levels
        h = self._bidirectional_gru(x)
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
