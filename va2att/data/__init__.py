"""Data path: images, AffectNet lists, alignment, preparation to TFRecords, tf.data pipeline.

Submodules are imported on use (`from va2att.data import pipeline`); importing this package
loads neither TensorFlow nor MTCNN.
"""

__all__ = ["affectnet", "align", "images", "pipeline", "prepare", "synthetic", "synthetic_face"]
