"""Drawing predictions onto pictures: face boxes, landmarks and a valence/arousal/expression label.

Pictures are RGB everywhere in va2att; OpenCV wants BGR. The one conversion happens in
`write_annotated`, just before `cv2.imencode`, so drawing functions take and return RGB arrays.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from va2att.serving.signature import SCORE, outputs_of_kind
from va2att.util.fileio import atomic_path

# RGB colours
BOX_COLOUR = (0, 220, 80)
LANDMARK_COLOUR = (255, 60, 60)
LABEL_TEXT_COLOUR = (255, 255, 255)
LABEL_BACKGROUND = (20, 90, 40)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_label(face) -> str:
    """The text drawn above a face: `V +0.42 A -0.13 Happy 87%`: each served score under its label
    (`va2att.serving.signature`), then the expression; parts the model lacks are omitted."""
    scores = getattr(face, "scores", None) or {}
    parts = [f"{output.label or output.name} {scores[output.name]:+.2f}" for output in outputs_of_kind(SCORE)
             if scores.get(output.name) is not None]
    expression = getattr(face, "expression", None)
    if expression:
        probability = (getattr(face, "probabilities", None) or {}).get(expression)
        parts.append(f"{expression} {probability:.0%}" if probability is not None else expression)
    return " ".join(parts)


def left_to_right(faces) -> list:
    """Faces ordered by the left edge of their box (then the top): the order they are numbered in,
    on the picture and in predict's table."""
    return sorted(faces, key=lambda face: (float(face.box[0]), float(face.box[1])))


def _scale(height: int, width: int) -> float:
    """Drawing scale relative to a 640-pixel picture, so labels stay legible on small and huge images."""
    return max(0.4, max(height, width) / 640.0)


def draw_faces(rgb: np.ndarray, faces: Iterable, *, scale: float = 1.0) -> np.ndarray:
    """Return a copy of `rgb` with each face's box, landmarks and label (its number, from 1, or `#track` for
    a video face with a track, then `face_label`) drawn on it; faces are numbered in the order given
    (predict gives `left_to_right`).

    Args:
        rgb: np.ndarray uint8 [H, W, 3], RGB order.
        faces: iterable of objects with `box` (x, y, w, h), `landmarks` (five (x, y) or None)
            and optionally `scores`, `expression`, `probabilities`
            (`va2att.prediction.predictor.FaceResult`).
        scale: float, pixel coordinates of `rgb` per unit of the face coordinates (the
            `RGBImage.scale` of a picture decoded reduced; faces are in original coordinates).

    Returns:
        A new uint8 [H, W, 3] RGB array.
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"draw_faces expects an RGB array of shape [H, W, 3]. Received: shape {array.shape}.")
    canvas = np.ascontiguousarray(array, dtype=np.uint8).copy()
    height, width = canvas.shape[:2]
    size = _scale(height, width)
    thickness = max(1, round(2 * size))
    font_scale = 0.5 * size
    font_thickness = max(1, round(size))
    for number, face in enumerate(faces, start=1):
        x, y, w, h = (float(v) * scale for v in face.box)
        top_left = (round(x), round(y))
        bottom_right = (round(x + w), round(y + h))
        cv2.rectangle(canvas, top_left, bottom_right, BOX_COLOUR, thickness, cv2.LINE_AA)
        for px, py in getattr(face, "landmarks", None) or ():
            cv2.circle(canvas, (round(px * scale), round(py * scale)), max(1, thickness), LANDMARK_COLOUR, -1,
                       cv2.LINE_AA)
        track = getattr(face, "track", None)  # a video face is labelled with its track, a photo's with its number
        text = f"{number if track is None else f'#{track}'} {face_label(face)}".rstrip()
        (tw, th), baseline = cv2.getTextSize(text, _FONT, font_scale, font_thickness)
        pad = max(2, round(3 * size))
        label_h = th + baseline + 2 * pad
        # above the box when there is room, otherwise just inside its top edge
        ly = top_left[1] - label_h if top_left[1] - label_h >= 0 else max(0, top_left[1])
        lx = min(max(0, top_left[0]), max(0, width - tw - 2 * pad))
        cv2.rectangle(canvas, (lx, ly), (lx + tw + 2 * pad, ly + label_h), LABEL_BACKGROUND, -1)
        cv2.putText(canvas, text, (lx + pad, ly + pad + th), _FONT, font_scale, LABEL_TEXT_COLOUR,
                    font_thickness, cv2.LINE_AA)
    return canvas


def write_annotated(path, rgb: np.ndarray, faces: Iterable, *, scale: float = 1.0) -> Path:
    """Draw `faces` on `rgb` (see `draw_faces`) and write the picture to `path` (.jpg or .png).

    This is the one place where va2att's RGB pictures become OpenCV's BGR. The file is encoded
    in memory and appears atomically (temporary name in the target folder, then a rename).

    Returns:
        The Path written.
    """
    path = Path(path)
    canvas = draw_faces(rgb, faces, scale=scale)
    suffix = path.suffix.lower() or ".png"
    params = [cv2.IMWRITE_JPEG_QUALITY, 92] if suffix in (".jpg", ".jpeg") else []
    ok, encoded = cv2.imencode(suffix, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"OpenCV cannot encode an image as {suffix!r}. Received: path={str(path)!r}.")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return path
