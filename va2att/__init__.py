"""va2att: facial valence/arousal and expression estimation with the 2Att-2Mt network.

    from va2att import ModelConfig, build_model, Predictor, load_keras_model

The model and prediction classes are imported on first use, so `import va2att`
(and the command-line tools' `--help`) does not pay for importing TensorFlow.
"""

from va2att.config import DataConfig, ModelConfig, RunConfig, TrainConfig

__version__ = "0.1.0"

_LAZY = {
    "build_model": "va2att.model.network",
    "VA2AttModel": "va2att.model.network",
    "Predictor": "va2att.prediction.predictor",
    "FaceResult": "va2att.prediction.predictor",
    "load_inference_model": "va2att.serving.loading",
    "load_keras_model": "va2att.serving.loading",
}

__all__ = [
    "DataConfig",
    "FaceResult",
    "ModelConfig",
    "Predictor",
    "RunConfig",
    "TrainConfig",
    "VA2AttModel",
    "__version__",
    "build_model",
    "load_inference_model",
    "load_keras_model",
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'va2att' has no attribute {name!r}")
