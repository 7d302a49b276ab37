"""va2att: facial valence/arousal and expression estimation with the 2Att-2Mt network."""

from va2att.config import DataConfig, ModelConfig, RunConfig, TrainConfig

__version__ = "0.1.0"

__all__ = ["DataConfig", "ModelConfig", "RunConfig", "TrainConfig", "__version__"]
