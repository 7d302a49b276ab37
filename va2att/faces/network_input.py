"""From an aligned face to the network's input, flip averaging, and the network's named outputs.

Every path to the network shares these steps, so they live here once: the training and evaluation
pipeline (`va2att.data.pipeline`), evaluation (`va2att.evaluation.evaluate`), prediction on photos
(`va2att.prediction.predictor`), the exported SavedModel's signatures (`va2att.serving.export`, `va2att.serving.loading`) and
the TF Serving client (`va2att.serving`).

- The network sees the centre INPUT_SIZE x INPUT_SIZE (48 x 48) crop of the FACE_SIZE x FACE_SIZE
  (56 x 56) aligned grayscale face: `centre_crop` (NumPy arrays and TF tensors alike),
  `prepare_faces` (NumPy batches, to float32 network input).
- An aligned face of any other size is resized to FACE_SIZE first, a 48 x 48 one is taken as the
  crop itself: `aligned_face` (NumPy, OpenCV) and `decode_aligned_faces` (TF graph, encoded images).
- Evaluation and prediction average the network's answer for the crop and for its mirror image:
  `flip_pair` makes the pairs in tf.data, `flip_average` runs a model on crops and mirrors (NumPy).
- The network's outputs are a dict of float32 tensors keyed by output name: `named_outputs`.

TensorFlow and OpenCV are imported by the functions that need them, so the NumPy half serves
processes without either.
"""

from __future__ import annotations

import numpy as np

from va2att.config import FACE_SIZE, INPUT_SIZE

OFFSET = (FACE_SIZE - INPUT_SIZE) // 2  # rows and columns cut on each side by the centre crop


def centre_crop(faces):
    """`[..., FACE_SIZE, FACE_SIZE, C] -> [..., INPUT_SIZE, INPUT_SIZE, C]`, the central crop.

    Plain slicing, so it takes a NumPy array or a TF tensor (eagerly or in a graph) and returns the same kind.
    """
    return faces[..., OFFSET : OFFSET + INPUT_SIZE, OFFSET : OFFSET + INPUT_SIZE, :]


def prepare_faces(faces) -> np.ndarray:
    """Aligned grayscale faces -> float32 `[N, 48, 48, 1]` pixels 0-255 (the model's input).

    Accepts `[N, 56, 56]` faces from alignment (centre-cropped to 48 x 48, as in evaluation),
    `[N, 48, 48]` crops, or either with a trailing channel axis of 1.
    """
    a = np.asarray(faces)
    if a.ndim == 3:
        a = a[..., None]
    if a.ndim != 4 or a.shape[-1] != 1 or a.shape[1] != a.shape[2] or a.shape[1] not in (FACE_SIZE, INPUT_SIZE):
        raise ValueError(
            f"Expected aligned faces of shape [N, {FACE_SIZE}, {FACE_SIZE}] or [N, {INPUT_SIZE}, {INPUT_SIZE}] "
            f"(optionally with a channel axis of 1). Received: shape={np.shape(faces)}"
        )
    if a.shape[1] == FACE_SIZE:
        a = centre_crop(a)
    return a.astype(np.float32)


def aligned_face(pixels: np.ndarray) -> np.ndarray:
    """One aligned face of any size, RGB `[H, W, 3]` or grayscale `[H, W]` uint8 -> grayscale for `prepare_faces`.

    A 48 x 48 image is taken as an already cropped network input and returned as it is; any other
    size is resized to 56 x 56 (area interpolation when shrinking, bilinear when enlarging).
    The graph-side twin for encoded images is `decode_aligned_faces`.
    """
    import cv2

    gray = np.ascontiguousarray(pixels)
    if gray.ndim == 3:
        gray = cv2.cvtColor(gray, cv2.COLOR_RGB2GRAY)
    if gray.shape == (INPUT_SIZE, INPUT_SIZE) or gray.shape == (FACE_SIZE, FACE_SIZE):
        return gray
    shrinking = gray.shape[0] > FACE_SIZE or gray.shape[1] > FACE_SIZE
    return cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def decode_aligned_faces(image_bytes):
    """Encoded aligned faces, string `[N]` -> float32 `[N, 48, 48, 1]` pixels 0-255 (graph-only ops).

    Each image is decoded to grayscale; a 48 x 48 image is used as it is, any other size is resized
    to 56 x 56 (bilinear, antialiased) and centre-cropped. The NumPy twin is `aligned_face`.
    """
    import tensorflow as tf

    def decode_one(data):
        image = tf.io.decode_image(data, channels=1, expand_animations=False, dtype=tf.uint8)
        return aligned_input(tf.cast(image, tf.float32))

    return tf.map_fn(
        decode_one,
        image_bytes,
        fn_output_signature=tf.TensorSpec([INPUT_SIZE, INPUT_SIZE, 1], tf.float32),
    )


def aligned_input(image):
    """One decoded grayscale aligned face, float32 `[H, W, 1]` -> the network input `[48, 48, 1]` (TF graph).

    A 48 x 48 image is used as it is; any other size is resized to 56 x 56 (bilinear, antialiased)
    and centre-cropped. Shared by `decode_aligned_faces` and `va2att.serving.encoded_images.checked_faces`.
    """
    import tensorflow as tf

    shape = tf.shape(image)
    is_crop = tf.logical_and(tf.equal(shape[0], INPUT_SIZE), tf.equal(shape[1], INPUT_SIZE))

    def as_crop():
        return tf.reshape(image, [INPUT_SIZE, INPUT_SIZE, 1])

    def from_face():
        face = tf.image.resize(image, [FACE_SIZE, FACE_SIZE], method="bilinear", antialias=True)
        return tf.clip_by_value(centre_crop(face), 0.0, 255.0)

    return tf.cond(is_crop, as_crop, from_face)


def flip_pair(faces):
    """`[B, 56, 56, C] -> [B, 2, 48, 48, C]` (TF): the centre crop (index 0) and its horizontal mirror (1)."""
    import tensorflow as tf

    c = centre_crop(faces)
    return tf.stack([c, tf.reverse(c, axis=[2])], axis=1)


def flip_average(model, crops, mirrors=None) -> dict[str, np.ndarray]:
    """`model`'s outputs for each crop and for its mirror image, averaged: `{name: float64 [N, ...]}`.

    Args:
        model: callable, float32 `[M, 48, 48, 1]` -> dict of arrays `[M, ...]` (e.g. an `InferenceModel`).
        crops: float32 `[N, 48, 48, 1]` network inputs.
        mirrors: their horizontal mirrors, as `flip_pair` made them; None = computed here.

    Crops and mirrors go through the model in one call (crops first), probabilities are averaged too.
    """
    crops = np.asarray(crops)
    mirrors = crops[:, :, ::-1] if mirrors is None else np.asarray(mirrors)
    n = len(crops)
    outputs = model(np.concatenate([crops, mirrors], axis=0))
    averaged = {}
    for name, value in outputs.items():
        value = np.asarray(value, dtype=np.float64)
        averaged[name] = (value[:n] + value[n:]) / 2.0
    return averaged


def inference_forward(model):
    """`images -> model(images, training=False)` as `named_outputs`: the function every inference path
    (export, folding, loading a `.keras` file) traces."""

    def forward(images):
        return named_outputs(model, model(images, training=False))

    return forward


def named_outputs(model, outputs) -> dict:
    """A Keras model's outputs as a dict of float32 tensors keyed by output name (TF).

    A model that returns a list or a single tensor is named by its `output_names`. Mixed-precision
    models compute in float16; what is served or returned is always float32.
    """
    import tensorflow as tf

    if not isinstance(outputs, dict):
        names = list(getattr(model, "output_names", None) or [])
        flat = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if len(names) != len(flat):
            raise ValueError(
                "The model must return a dict of named outputs (valence, arousal, expression). "
                f"Received: {type(outputs).__name__} with {len(flat)} tensor(s)."
            )
        outputs = dict(zip(names, flat))
    return {name: tf.cast(value, tf.float32) for name, value in outputs.items()}
