"""The 2Att-2Mt network as one Keras functional model: backbone with first-level attention, level
vectors with second-level attention (the "features"), then a swappable head (`va2att.model.heads`).

    image 48x48x1 (0-255) -> per-image standardisation (or /255) -> stem 3x3 conv (48x48, width)
      -> stage1 24x24 (width)   : down-sampling residual unit, then an attention block (stage < blocks)
      -> stage2 12x12 (2*width) : idem
      -> stage3  6x6  (4*width) : idem
         a stage without a block ends after its down-sampling unit (blocks add depth, the paper's
         Table 2 reading) or keeps the block's trunk (`blocks_add_depth=False`: blocks add only masks)
      -> [second_level] each stage: BN-ReLU, 1x1 conv to D + GAP -> 3 level vectors -> LevelAttention -> z
         [otherwise]    BN-ReLU + GAP of stage3 -> z
      -> head -> {"valence", "arousal", "expression"}

See docs/architecture.md for the readings taken where the paper is silent.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from va2att.config import INPUT_SIZE, ModelConfig, with_legacy_values
from va2att.model.heads import apply_head
from va2att.model.layers import (
    FusedBatchNormalization,
    LevelAttention,
    PerImageStandardization,
    ResidualAttentionBlock,
    ResidualUnit,
)
from va2att.model.layers.fused_batch_normalization import BN_MOMENTUM

STAGES = 3  # stages after the stem, at 24x24, 12x12, 6x6
MASK_DEPTHS = (2, 1, 1)  # max-poolings in the attention mask of each stage: 24->12->6, 12->6, 6->3 (as ResAttNet on 32x32)
BOTTLENECK_RATIO = 4  # residual units squeeze channels by this factor inside (ResAttNet bottleneck units)
FEATURES = "features"  # name of the layer whose output is z, the input of every head


def apply_stage(x, cfg: ModelConfig, index: int):
    """Stage `index` (0-based): a down-sampling unit, then an attention block when `index < cfg.blocks`.
    Otherwise nothing more (`cfg.blocks_add_depth`, default: each block adds its trunk and its mask), or
    the block's trunk alone, two residual units (so `blocks` changes only the mask)."""
    filters = cfg.width * 2**index
    prefix = f"stage{index + 1}"
    x = ResidualUnit(filters, strides=2, bottleneck_ratio=BOTTLENECK_RATIO, name=f"{prefix}_down")(x)
    if index < cfg.blocks:
        return ResidualAttentionBlock(
            filters, mask_depth=MASK_DEPTHS[index], bottleneck_ratio=BOTTLENECK_RATIO, name=f"{prefix}_attention"
        )(x)
    if cfg.blocks_add_depth:
        return x
    for unit in range(1, 3):
        x = ResidualUnit(filters, bottleneck_ratio=BOTTLENECK_RATIO, name=f"{prefix}_attention_trunk{unit}")(x)
    return x


def apply_backbone(image, cfg: ModelConfig):
    """Raw pixels -> the three stage outputs (pre-activation feature maps), low to high level."""
    if cfg.input_normalization == "per_image":
        x = PerImageStandardization(name="standardize")(image)
    else:
        x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    x = keras.layers.Conv2D(
        cfg.width, 3, padding="same", use_bias=False, kernel_initializer="he_normal", name="stem_conv"
    )(x)
    stages = []
    for index in range(STAGES):
        x = apply_stage(x, cfg, index)
        stages.append(x)
    return stages


def _post_activation(x, name):
    """BN-ReLU closing a pre-activation stage before it is pooled."""
    x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def apply_features(stages, cfg: ModelConfig):
    """Stage outputs -> z. With second-level attention: one level vector per stage (BN-ReLU, then the
    paper's 1x1 conv to `level_dim` and global average pooling), then `LevelAttention`. Without: GAP of
    the last stage.

    The 1x1 conv is linear (the paper names no activation), so `GAP(conv(x)) = conv(GAP(x))` exactly;
    the conv is applied to the pooled 1x1 map, which saves a full-resolution D-channel tensor per level."""
    if cfg.second_level:
        levels = []
        for index, stage in enumerate(stages):
            name = f"level{index + 1}"
            x = _post_activation(stage, name)
            x = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_gap")(x)
            x = keras.layers.Conv2D(cfg.level_dim, 1, kernel_initializer="he_normal", name=f"{name}_conv")(x)
            levels.append(keras.layers.Flatten(name=f"{name}_vector")(x))
        z = LevelAttention(cfg.gru_units, pooling=cfg.attention_pooling, name="level_attention")(levels)
    else:
        x = _post_activation(stages[-1], "last_stage")
        z = keras.layers.GlobalAveragePooling2D(name="last_stage_gap")(x)
    if cfg.dropout > 0:
        z = keras.layers.Dropout(cfg.dropout, name="dropout")(z)
    return keras.layers.Identity(name=FEATURES)(z)


def _matrix_or_none(value):
    return None if value is None else np.array(value, dtype="float32")


def _list_or_none(value):
    return None if value is None else value.tolist()


@keras.saving.register_keras_serializable(package="va2att")
class VA2AttModel(keras.Model):
    """The 2Att-2Mt network (and its ablations) for valence, arousal and expression from a 48x48 face.

    Args:
        adjacency: optional `(K + 2, K + 2)` normalised label graph for the "gcn" head
            (`va2att.model.gcn.build_adjacency`); None = identity. Kept in the config, so saved with the model.
        node_features: optional `(K + 2, F)` node features for the "gcn" head; None = one-hot.
        name: str. Model name.
        **config: the fields of `ModelConfig` (validated by it; unknown or invalid values raise ValueError).

    Input `image`: float32 `(batch, 48, 48, 1)`, raw pixels 0-255. Output: dict keyed by
    `model_config.outputs`; `valence`/`arousal` `(batch, 1)` in [-1, 1], `expression` `(batch, K)`
    probabilities.

    Example:
    >>> model = VA2AttModel(blocks=2, head="2mt")
    >>> sorted(model(np.zeros((1, 48, 48, 1), "float32")))
    ['arousal', 'expression', 'valence']
    """

    def __init__(self, adjacency=None, node_features=None, name="va2att", trainable=True, **config):
        cfg = ModelConfig(**config)
        if cfg.head != "gcn" and (adjacency is not None or node_features is not None):
            raise ValueError(f"adjacency and node_features apply to head='gcn' only. Received: head={cfg.head!r}")

        # === Functional Model ===
        image = keras.Input(shape=(INPUT_SIZE, INPUT_SIZE, 1), dtype="float32", name="image")
        stages = apply_backbone(image, cfg)
        z = apply_features(stages, cfg)
        outputs = apply_head(z, cfg, adjacency=adjacency, node_features=node_features)
        super().__init__(inputs=image, outputs=outputs, name=name, trainable=trainable)

        # === Config ===
        self.model_config = cfg
        self._adjacency = _matrix_or_none(adjacency)
        self._node_features = _matrix_or_none(node_features)

    def features_model(self) -> keras.Model:
        """A model sharing these weights that maps `image` to z (for freezing or probing the features)."""
        return keras.Model(self.inputs, self.get_layer(FEATURES).output, name=f"{self.name}_features")

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            **dataclasses.asdict(self.model_config),
            "adjacency": _list_or_none(self._adjacency),
            "node_features": _list_or_none(self._node_features),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        return cls(**with_legacy_values("model", config))


def build_model(cfg: ModelConfig, adjacency=None, node_features=None) -> VA2AttModel:
    """The network described by `cfg`. `adjacency`/`node_features` are for the "gcn" head only
    (see `VA2AttModel`); without an adjacency the gcn head uses the identity graph."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"cfg must be a ModelConfig. Received: {type(cfg).__name__}")
    return VA2AttModel(adjacency=adjacency, node_features=node_features, **dataclasses.asdict(cfg))
