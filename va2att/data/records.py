"""The record format of prepared shards: one tf.train.Example per aligned face.

Features:
    image       bytes   FACE_SIZE * FACE_SIZE raw uint8 gray pixels, row-major
    valence     float
    arousal     float
    expression  int64   AffectNet code 0-7 (8: "None", an expression outside the eight; -1: none annotated)
    path        bytes   the source image, relative to its data set's root (AffectNet: subDirectory_filePath)
    method      bytes   how it was aligned: landmarks | box | mtcnn | aligned (already aligned, resized only)
    has_va      int64   1 when valence and arousal are labels, 0 when the frame has none (they are then NaN)
    has_expression int64 1 when `expression` is a label, 0 when the frame has none (it is then -1)
    video       bytes   the video a frame comes from (Aff-Wild2), "" for still images
    frame       int64   the frame's 1-based index in its video, -1 for still images
The last four have defaults (1, 1, "", -1), so shards written before they existed still parse.
A missing label is stored as NaN / -1 and masked by `has_*`; it is never replaced by a made-up value.
"""

from __future__ import annotations

import dataclasses

from va2att.config import FACE_SIZE


@dataclasses.dataclass(frozen=True)
class FaceRecord:
    """One prepared face and its labels, as a layout's work unit produces it (the fields of the record)."""

    face: bytes  # FACE_SIZE * FACE_SIZE raw uint8 gray pixels, row-major
    valence: float  # NaN when has_va is 0
    arousal: float
    expression: int  # -1 when has_expression is 0
    path: str  # the source image, relative to its data set's root
    method: str = ""  # landmarks | box | mtcnn | aligned
    has_va: int = 1
    has_expression: int = 1
    video: str = ""
    frame: int = -1

    def __post_init__(self):
        if len(self.face) != FACE_SIZE * FACE_SIZE:
            raise ValueError(f"face must be {FACE_SIZE * FACE_SIZE} raw bytes. Received: {len(self.face)} bytes")


def serialize(record: FaceRecord) -> bytes:
    """The record as a serialized tf.train.Example; the same record gives the same bytes in every process
    (map fields in a fixed order)."""
    import tensorflow as tf

    f = tf.train.Feature
    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": f(bytes_list=tf.train.BytesList(value=[record.face])),
                "valence": f(float_list=tf.train.FloatList(value=[record.valence])),
                "arousal": f(float_list=tf.train.FloatList(value=[record.arousal])),
                "expression": f(int64_list=tf.train.Int64List(value=[record.expression])),
                "path": f(bytes_list=tf.train.BytesList(value=[record.path.encode()])),
                "method": f(bytes_list=tf.train.BytesList(value=[record.method.encode()])),
                "has_va": f(int64_list=tf.train.Int64List(value=[int(record.has_va)])),
                "has_expression": f(int64_list=tf.train.Int64List(value=[int(record.has_expression)])),
                "video": f(bytes_list=tf.train.BytesList(value=[record.video.encode()])),
                "frame": f(int64_list=tf.train.Int64List(value=[int(record.frame)])),
            }
        )
    )
    return example.SerializeToString(deterministic=True)


def feature_spec() -> dict:
    import tensorflow as tf

    return {
        "image": tf.io.FixedLenFeature([], tf.string),
        "valence": tf.io.FixedLenFeature([], tf.float32),
        "arousal": tf.io.FixedLenFeature([], tf.float32),
        "expression": tf.io.FixedLenFeature([], tf.int64),
        "path": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "method": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "has_va": tf.io.FixedLenFeature([], tf.int64, default_value=1),
        "has_expression": tf.io.FixedLenFeature([], tf.int64, default_value=1),
        "video": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "frame": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
    }


def parse_batch(serialized):
    """A batch of serialized Examples -> dict of tensors; "image" is uint8 [B, FACE_SIZE, FACE_SIZE, 1]."""
    import tensorflow as tf

    p = tf.io.parse_example(serialized, feature_spec())
    image = tf.io.decode_raw(p["image"], tf.uint8)
    p["image"] = tf.reshape(image, [-1, FACE_SIZE, FACE_SIZE, 1])
    return p


def shard_damage(path) -> str | None:
    """Why the shard at `path` cannot be read to its end (a truncated file, a record whose checksum fails, a
    record that is no face record), or None when every record reads."""
    import tensorflow as tf

    try:
        for batch in tf.data.TFRecordDataset([str(path)]).batch(4096):
            tf.io.parse_example(batch, feature_spec())
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as error:
        import re

        text = re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*", "", error.message or "").strip()  # TF's op decorations
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    return None
