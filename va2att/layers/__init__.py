"""Custom Keras layers of the 2Att-2Mt network (all registered under the "va2att" package)."""

from va2att.layers.graph_convolution import EmotionGCN, GraphConvolution
from va2att.layers.level_attention import LevelAttention
from va2att.layers.residual_attention import ResidualAttentionBlock
from va2att.layers.residual_unit import FusedBatchNormalization, ResidualUnit

__all__ = [
    "EmotionGCN",
    "FusedBatchNormalization",
    "GraphConvolution",
    "LevelAttention",
    "ResidualAttentionBlock",
    "ResidualUnit",
]
