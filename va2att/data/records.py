"""The record format of prepared shards: one tf.train.Example per aligned face.

Features:
    image       bytes   FACE_SIZE * FACE_SIZE raw uint8 gray pixels, row-major
    valence     float
    arousal     float
    expression  int64   AffectNet code 0-7
    path        bytes   subDirectory_filePath of the source image
    method      bytes   how it was aligned: landmarks | box | mtcnn
"""

from __future__ import annotations

from va2att.config import FACE_SIZE


def serialize(face: bytes, valence: float, arousal: float, expression: int, path: str, method: str = "") -> bytes:
    import tensorflow as tf

    if len(face) != FACE_SIZE * FACE_SIZE:
        raise ValueError(f"face must be {FACE_SIZE * FACE_SIZE} raw bytes. Received: {len(face)} bytes")
    f = tf.train.Feature
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": f(bytes_list=tf.train.BytesList(value=[face])),
                "valence": f(float_list=tf.train.FloatList(value=[valence])),
                "arousal": f(float_list=tf.train.FloatList(value=[arousal])),
                "expression": f(int64_list=tf.train.Int64List(value=[expression])),
                "path": f(bytes_list=tf.train.BytesList(value=[path.encode()])),
                "method": f(bytes_list=tf.train.BytesList(value=[method.encode()])),
            }
        )
    )
    return example.SerializeToString()


def feature_spec() -> dict:
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "valence": tf.io.FixedLenFeature([], tf.float32),
        "arousal": tf.io.FixedLenFeature([], tf.float32),
        "expression": tf.io.FixedLenFeature([], tf.int64),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "method": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }


def parse_batch(serialized):
    """A batch of serialized Examples -> dict of tensors; "image" is uint8 [B, FACE_SIZE, FACE_SIZE, 1]."""
    import tensorflow as tf

    p = tf.io.parse_example(serialized, feature_spec())
    image = tf.io.decode_raw(p["image"], tf.uint8)
    p["image"] = tf.reshape(image, [-1, FACE_SIZE, FACE_SIZE, 1])
    return p
