"""Custom Keras layers of the 2Att-2Mt network (all registered under the "va2att" package).

One layer per module, named after it; `utils` holds the helpers they share (argument checks,
sublayer factories)."""

from va2att.model.layers.fused_batch_normalization import FusedBatchNormalization
from va2att.model.layers.graph_convolution import EmotionGCN, GraphConvolution
from va2att.model.layers.level_attention import LevelAttention
from va2att.model.layers.per_image_standardization import PerImageStandardization
from va2att.model.layers.residual_attention import ResidualAttentionBlock
from va2att.model.layers.residual_unit import ResidualUnit

__all__ = [
    "EmotionGCN",
    "FusedBatchNormalization",
    "GraphConvolution",
    "LevelAttention",
    "PerImageStandardization",
    "ResidualAttentionBlock",
    "ResidualUnit",
]
