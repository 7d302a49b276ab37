"""Graph convolution `A·(X·W)` and the Emotion-GCN classifier/regressor it builds (DESIGN.md §3)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from va2att.model.layers.utils import clone_initializer
from va2att.util.checks import check_positive_int


@keras.saving.register_keras_serializable(package="va2att")
class GraphConvolution(keras.layers.Layer):
    """Graph convolution without bias: `A · (X · W)` (Kipf & Welling 2017, as used by ML-GCN / Emotion-GCN).

    Reference: https://arxiv.org/abs/1609.02907.

    Args:
        units: int. Output features per node.
        kernel_initializer: initializer for `W` (Glorot uniform by default).

    Call: `layer(node_features, adjacency)` with `node_features` `(nodes, in_features)` and
    `adjacency` `(nodes, nodes)`; returns `(nodes, units)`. No batch axis and no masking: the graph is
    the same for every image.

    Example:
    >>> gc = GraphConvolution(4)
    >>> gc(keras.ops.eye(3), keras.ops.eye(3)).shape
    (3, 4)
    """

    def __init__(self, units, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        check_positive_int("units", units)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, node_features_shape, adjacency_shape=None):
        self.kernel = self.add_weight(
            name="kernel", shape=(node_features_shape[-1], self.units), initializer=self.kernel_initializer
        )

    def call(self, node_features, adjacency):
        return ops.matmul(adjacency, ops.matmul(node_features, self.kernel))

    def compute_output_shape(self, node_features_shape, adjacency_shape=None):
        return (node_features_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units, kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
        return config


def _as_matrix(name, value, rows=None, cols=None):
    array = np.asarray(value, dtype="float32")
    if array.ndim != 2 or (rows is not None and array.shape[0] != rows) or (cols is not None and array.shape[1] != cols):
        want = f"({rows if rows is not None else 'n'}, {cols if cols is not None else 'm'})"
        raise ValueError(f"{name} must be a matrix of shape {want}. Received: {name} with shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite. Received: {name} containing NaN or inf")
    return array


@keras.saving.register_keras_serializable(package="va2att")
class EmotionGCN(keras.layers.Layer):
    """Emotion-GCN head: two graph convolutions produce the weights of the expression classifier and V/A regressor.

    Reference: Antoniadis et al. 2021, "Exploiting Emotional Dependencies with Graph Convolutional
    Networks for Facial Expression Recognition" (`papers/emotion-gcn-abstract.txt`; public code
    PanosAntoniadis/emotion-gcn, `models.py`, `utils.py`).

    Nodes are the `num_classes` expressions, then valence, then arousal. With node features `X`
    (one-hot by default) and the normalised label-correlation adjacency `A`,
    `W = A·(LeakyReLU(A·(X·W1))·W2)` has shape `(num_classes + 2, D)` where D is the size of the image
    feature `z`; `logits = z · Wᵀ`. The first `num_classes` logits go through a softmax (expression
    probabilities), the last two through tanh (valence, arousal in [-1, 1]). Outputs are float32.

    `adjacency` and `node_features` are kept in the layer config (plain nested lists), so a saved
    model carries its graph as constants and needs no side file.

    Args:
        num_classes: int. Number of expression classes K.
        adjacency: `(K + 2, K + 2)` array-like, already normalised (see `va2att.model.gcn.build_adjacency`).
        hidden_units: int. Width of the first graph convolution.
        node_features: optional `(K + 2, F)` array-like (e.g. label word vectors); None = one-hot.
        negative_slope: float. Slope of the LeakyReLU between the two graph convolutions.
        kernel_initializer: initializer of both graph convolutions.

    Call: `layer(z)` with `z` `(batch, D)`; returns `(expression (batch, K), valence (batch, 1),
    arousal (batch, 1))`. No masking.

    Example:
    >>> gcn = EmotionGCN(8, adjacency=np.eye(10), hidden_units=16)
    >>> [t.shape for t in gcn(keras.ops.ones((2, 32)))]
    [(2, 8), (2, 1), (2, 1)]
    """

    def __init__(
        self,
        num_classes,
        adjacency,
        hidden_units=512,
        node_features=None,
        negative_slope=0.2,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_positive_int("num_classes", num_classes)
        check_positive_int("hidden_units", hidden_units)
        nodes = num_classes + 2
        self.num_classes = num_classes
        self.adjacency = _as_matrix("adjacency", adjacency, nodes, nodes)
        self.node_features = None if node_features is None else _as_matrix("node_features", node_features, nodes)
        self.hidden_units = hidden_units
        self.negative_slope = float(negative_slope)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

        # === Layers ===
        self.gc1 = GraphConvolution(
            hidden_units, clone_initializer(self.kernel_initializer), dtype=self.dtype_policy, name=f"{self.name}_gc1"
        )
        self.gc2 = None  # output width = size of z, known in build

    def _features(self):
        if self.node_features is None:
            return np.eye(self.num_classes + 2, dtype="float32")
        return self.node_features

    def build(self, input_shape):
        nodes = self.num_classes + 2
        self.gc1.build(self._features().shape, (nodes, nodes))
        self.gc2 = GraphConvolution(
            input_shape[-1], clone_initializer(self.kernel_initializer), dtype=self.dtype_policy, name=f"{self.name}_gc2"
        )
        self.gc2.build((nodes, self.hidden_units), (nodes, nodes))

    def call(self, z):
        adjacency = ops.convert_to_tensor(self.adjacency, dtype=self.compute_dtype)
        features = ops.convert_to_tensor(self._features(), dtype=self.compute_dtype)
        hidden = ops.leaky_relu(self.gc1(features, adjacency), negative_slope=self.negative_slope)
        weights = self.gc2(hidden, adjacency)
        logits = ops.cast(ops.matmul(z, ops.transpose(weights)), "float32")
        k = self.num_classes
        expression = ops.softmax(logits[:, :k], axis=-1)
        valence = ops.tanh(logits[:, k : k + 1])
        arousal = ops.tanh(logits[:, k + 1 : k + 2])
        return expression, valence, arousal

    def get_config(self):
        config = super().get_config()
        config.update(
            num_classes=self.num_classes,
            adjacency=self.adjacency.tolist(),
            hidden_units=self.hidden_units,
            node_features=None if self.node_features is None else self.node_features.tolist(),
            negative_slope=self.negative_slope,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config
