"""Prediction heads: from the image feature `z` to the named outputs `valence`, `arousal`, `expression`.

A head is one entry of `HEADS`: a `Head` carrying its builder and its loss weights, under the name
`model.head` gives it. The outputs each head gives are configuration (`va2att.config.HEAD_OUTPUTS`:
`ModelConfig` validates `model.head` against it and reads `ModelConfig.outputs` from it), so the
config loads without the model. `losses.compile_args` takes the loss weights from here and
`VA2AttModel` builds the head with it. Adding a head is adding a builder, its entry here and its
outputs in `HEAD_OUTPUTS` (a test checks that both registries name the same heads).

Each builder is an `apply_*(z, cfg, *, adjacency=None, node_features=None)` function that adds plain
Keras layers (named from the output names) to the functional graph and returns a dict of output
tensors keyed by the head's outputs. Output layers compute in float32 (safe under a mixed-precision
policy). Keras is imported inside the builders, so the registry (and with it the config) loads
without TensorFlow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from va2att.config import ModelConfig

GCN_NEGATIVE_SLOPE = 0.2  # LeakyReLU slope between the two graph convolutions (Emotion-GCN)


def _dense(units, name, activation=None, dtype=None):
    import keras

    return keras.layers.Dense(units, activation=activation, kernel_initializer="glorot_uniform", dtype=dtype, name=name)


def _regressor(x, name):
    """One linear unit + tanh, so the prediction lies in [-1, 1]."""
    return _dense(1, name, activation="tanh", dtype="float32")(x)


def apply_two_stage_head(z, cfg: ModelConfig, **_):
    """2Att-2Mt head. Stage 1: a dimensional and a categorical representation (the latter trained by
    the expression cross-entropy). Stage 2: both concatenated, valence and arousal regressed together
    from the shared concatenation (two tanh units on the same input, i.e. one Dense(2) split in two)."""
    import keras

    dimensional = _dense(cfg.dimensional_units, "dimensional", activation="relu")(z)
    categorical = _dense(cfg.categorical_units, "categorical", activation="relu")(z)
    expression = _dense(cfg.num_classes, "expression", activation="softmax", dtype="float32")(categorical)
    fused = keras.layers.Concatenate(name="fusion")([dimensional, categorical])
    return {"valence": _regressor(fused, "valence"), "arousal": _regressor(fused, "arousal"), "expression": expression}


def apply_multitask_head(z, cfg: ModelConfig, **_):
    """2Att-Mt head: valence and arousal from a shared dimensional representation only."""
    dimensional = _dense(cfg.dimensional_units, "dimensional", activation="relu")(z)
    return {"valence": _regressor(dimensional, "valence"), "arousal": _regressor(dimensional, "arousal")}


def apply_single_head(z, cfg: ModelConfig, **_):
    """Single-task head (2Att-CNN baseline): one of valence or arousal from a dimensional representation."""
    (target,) = cfg.outputs
    dimensional = _dense(cfg.dimensional_units, "dimensional", activation="relu")(z)
    return {target: _regressor(dimensional, target)}


def apply_gcn_head(z, cfg: ModelConfig, adjacency=None, node_features=None):
    """Emotion-GCN head (DESIGN.md §3). Without an adjacency the graph is the identity (no edges: every
    node only sees itself); pass `va2att.model.gcn.build_adjacency(...)` of the training labels for the real one."""
    import keras
    import numpy as np

    from va2att.model.layers import EmotionGCN

    nodes = cfg.num_classes + 2
    if adjacency is None:
        adjacency = np.eye(nodes, dtype="float32")
    expression, valence, arousal = EmotionGCN(
        cfg.num_classes,
        adjacency=adjacency,
        hidden_units=cfg.gcn_hidden,
        node_features=node_features,
        negative_slope=GCN_NEGATIVE_SLOPE,
        name="gcn",
    )(z)
    # Identity layers give the outputs their own names in summaries and logs.
    return {
        "valence": keras.layers.Identity(name="valence", dtype="float32")(valence),
        "arousal": keras.layers.Identity(name="arousal", dtype="float32")(arousal),
        "expression": keras.layers.Identity(name="expression", dtype="float32")(expression),
    }


def paper_loss_weights(cfg: ModelConfig) -> dict[str, float]:
    """The paper's objective `alpha·CE(expression) + beta·rho(valence) + (1 - beta)·rho(arousal)`."""
    return {"valence": cfg.beta, "arousal": 1.0 - cfg.beta, "expression": cfg.alpha}


def unit_loss_weights(cfg: ModelConfig) -> dict[str, float]:
    """Weight 1 for every output (single-task heads: the one loss, unscaled)."""
    return {"valence": 1.0, "arousal": 1.0, "expression": 1.0}


@dataclasses.dataclass(frozen=True)
class Head:
    """One head of the network.

    Args:
        build: callable `(z, cfg, *, adjacency=None, node_features=None) -> {output name: tensor}`.
        weights: callable `cfg -> {output name: float}`, the loss weights (entries for outputs the head
            lacks are ignored).
        label_graph: bool, the builder takes the adjacency of the training labels (`va2att.model.gcn`).
    """

    build: Callable
    weights: Callable[..., Mapping[str, float]] = paper_loss_weights
    label_graph: bool = False

    def loss_weights(self, cfg: ModelConfig) -> dict[str, float]:
        """`loss_weights=` of `model.compile`, keyed by the head's outputs (`cfg.outputs`)."""
        weights = self.weights(cfg)
        return {name: weights[name] for name in cfg.outputs}


HEADS: Mapping[str, Head] = {
    "2mt": Head(apply_two_stage_head),
    "mt": Head(apply_multitask_head),
    "gcn": Head(apply_gcn_head, label_graph=True),
    "single-valence": Head(apply_single_head, unit_loss_weights),
    "single-arousal": Head(apply_single_head, unit_loss_weights),
}


def apply_head(z, cfg: ModelConfig, adjacency=None, node_features=None) -> dict:
    """The outputs of `cfg.head` on the feature `z`: a dict keyed by `cfg.outputs`."""
    outputs = HEADS[cfg.head].build(z, cfg, adjacency=adjacency, node_features=node_features)
    return {name: outputs[name] for name in cfg.outputs}
