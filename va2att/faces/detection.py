"""Face detection: MTCNN (package `mtcnn`, weights in its wheel) with results in original-image coordinates.

`FaceDetector` runs MTCNN on a reduced copy of the picture and maps boxes and five points back.
How far the copy is reduced follows from two limits: its longer side is at most `max_side`,
and, when `smallest_face` is given, a face of `smallest_face` picture pixels becomes MTCNN's
smallest face (`min_face_size` detection pixels), so no detection time goes to faces smaller
than that. MTCNN's three networks run as `tf.function`s with shape-free signatures
(`va2att.faces.mtcnn_stages`): one trace serves every picture size, where the package's own eager
calls spend most of their time on per-layer Python. Outputs are those of the package's networks.
`refine_pixels` runs MTCNN's last network alone on given boxes (a tracked face's next frame).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from va2att.faces.images import RGBImage

MTCNN_SCALE_FACTOR = 0.709  # MTCNN's own pyramid step: each level is this fraction of the one before
# Prediction's detector (va2att.prediction.predictor.Predictor, va2att.cli.predict): of the settings measured in
# BENCHMARKS.md ("Prediction path"), the fastest whose recall on the test photos
# (tests/face_photos.py, faces 16 to 192 pixels wide) equals that of MTCNN on the whole picture.
PREDICT_SMALLEST_FACE = 32  # pixels of the picture; MTCNN also finds faces down to about half this
PREDICT_SCALE_FACTOR = 0.5


@dataclass(frozen=True)
class Detection:
    """One detected face in ORIGINAL image coordinates.

    Args:
        box: tuple (x, y, w, h) floats.
        points5: np.ndarray (5, 2): image-left eye, image-right eye, nose, left and right mouth corners.
        confidence: float in [0, 1].
    """

    box: tuple[float, float, float, float]
    points5: np.ndarray
    confidence: float


def box_iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes (0 when both are empty)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    union = aw * ah + bw * bh - iw * ih
    return iw * ih / union if union > 0 else 0.0


def detection_scale(height: int, width: int, *, max_side: int, min_face_size: int, smallest_face: float = 0) -> float:
    """Size of the copy MTCNN searches, relative to a `height` x `width` picture (never above 1).

    The copy's longer side is at most `max_side`; with `smallest_face` > 0 a face of that many
    picture pixels also comes out `min_face_size` pixels wide in the copy.
    """
    scale = min(1.0, max_side / max(height, width))
    if smallest_face > 0:
        scale = min(scale, min_face_size / smallest_face)
    return scale


class FaceDetector:
    """MTCNN with results in original-image coordinates, most confident first.

    Args:
        min_face_size: int, smallest face searched for, in detection pixels (MTCNN's own option).
        max_side: int, the copy MTCNN searches has at most this longer side.
        min_confidence: float, detections below are dropped.
        smallest_face: int, smallest face searched for in the picture's own pixels; the copy is
            reduced so that such a face is `min_face_size` pixels wide (0: only `max_side` reduces).
        scale_factor: float, MTCNN's pyramid step (fewer, coarser levels below 0.709).
        compiled: bool, run the networks as tf.functions (`mtcnn_stages.compiled_stages`); False runs the
            package's own eager calls (same outputs, slower; kept for comparison).

    The networks are built on the first `detect` call and reused.
    """

    def __init__(self, min_face_size: int = 20, max_side: int = 1024, min_confidence: float = 0.9, *,
                 smallest_face: int = 0, scale_factor: float = MTCNN_SCALE_FACTOR, compiled: bool = True):
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1). Received: scale_factor={scale_factor!r}")
        if smallest_face < 0 or min_face_size < 1 or max_side < 1:
            raise ValueError("min_face_size and max_side must be >= 1 and smallest_face >= 0. Received: "
                             f"min_face_size={min_face_size!r}, max_side={max_side!r}, smallest_face={smallest_face!r}")
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.min_confidence = min_confidence
        self.smallest_face = smallest_face
        self.scale_factor = scale_factor
        self.compiled = compiled
        self._mtcnn = None
        self._refiner = None

    @property
    def mtcnn(self):
        """The package's MTCNN: its three stages, compiled (`mtcnn_stages.compiled_stages`) or its own."""
        if self._mtcnn is None:
            from mtcnn import MTCNN

            if self.compiled:
                from va2att.faces.mtcnn_stages import compiled_stages

                self._mtcnn = MTCNN(stages=compiled_stages(), device="CPU:0")
            else:
                self._mtcnn = MTCNN(device="CPU:0")
        return self._mtcnn

    @property
    def refiner(self):
        """The package's MTCNN with given proposals in place of PNet and RNet, and the same ONet."""
        if self._refiner is None:
            from mtcnn import MTCNN

            from va2att.faces.mtcnn_stages import GivenProposals

            self._refiner = MTCNN(stages=[GivenProposals(), self.mtcnn.stages[-1]], device="CPU:0")
        return self._refiner

    def detect(self, image: RGBImage) -> list[Detection]:
        """Faces, most confident first."""
        if not isinstance(image, RGBImage):
            raise TypeError("Detection takes an RGBImage (from read_image or from_array(..., order=...)). "
                            f"Received: {type(image).__name__}")
        zoom = detection_scale(image.height, image.width, max_side=self.max_side, min_face_size=self.min_face_size,
                               smallest_face=self.smallest_face * image.scale)
        return self.detect_pixels(image.pixels, zoom=zoom, scale=image.scale)

    def detect_pixels(self, pixels: np.ndarray, *, zoom: float = 1.0, scale: float = 1.0,
                      offset: tuple[float, float] = (0.0, 0.0)) -> list[Detection]:
        """Faces in RGB uint8 `pixels`, searched on a copy resized by `zoom` (area interpolation when reducing).

        `pixels` are a picture `scale` times its original size, or a region of it whose top-left
        corner is at `offset` (x, y) in original coordinates; results are in original coordinates.
        """
        pixels, scale = _zoomed(pixels, zoom, scale)
        found = self.mtcnn.detect_faces(pixels, min_face_size=self.min_face_size, scale_factor=self.scale_factor)
        return self._detections(found, scale, offset)

    def refine_pixels(self, pixels: np.ndarray, boxes, *, zoom: float = 1.0, scale: float = 1.0,
                      offset: tuple[float, float] = (0.0, 0.0)) -> list[Detection]:
        """Faces near `boxes` (x, y, w, h in original coordinates), found by MTCNN's last network alone.

        ONet refines each box, made square about its centre, into a face box, five points and a
        confidence, as it refines RNet's proposals in a search; a box it does not confirm gives no
        face. For a face known to be about there (a tracked face in the next frame) this replaces
        the search of the picture by one call of the smallest network. `pixels`, `zoom`, `scale`
        and `offset` are as in `detect_pixels`.
        """
        pixels, scale = _zoomed(pixels, zoom, scale)
        proposals = [((x - offset[0]) * scale, (y - offset[1]) * scale, (x + w - offset[0]) * scale,
                      (y + h - offset[1]) * scale) for x, y, w, h in boxes]
        if not proposals:
            return []
        found = self.refiner.detect_faces(pixels, proposals=np.asarray(proposals))
        return self._detections(found, scale, offset)

    def _detections(self, found, scale: float, offset) -> list[Detection]:
        """The package's faces as Detections in original coordinates, the confident ones, most confident first."""
        out = []
        for f in found or []:
            conf = float(f.get("confidence", 0.0))
            if conf < self.min_confidence:
                continue
            kp = f["keypoints"]
            # MTCNN names by image side; keep image-left first even if a face is upside down or mirrored.
            pts = np.array([kp["left_eye"], kp["right_eye"], kp["nose"], kp["mouth_left"], kp["mouth_right"]],
                           np.float64) / scale + np.asarray(offset, np.float64)
            x, y, bw, bh = (float(v) / scale for v in f["box"])
            out.append(Detection((x + offset[0], y + offset[1], bw, bh), pts, conf))
        out.sort(key=lambda d: -d.confidence)
        return out


def _zoomed(pixels: np.ndarray, zoom: float, scale: float) -> tuple[np.ndarray, float]:
    """`pixels` resized by `zoom` (area interpolation when reducing), contiguous, and their detection pixels per
    original pixel (`scale` the pixels' own)."""
    import cv2

    h, w = pixels.shape[:2]
    size = (max(1, round(w * zoom)), max(1, round(h * zoom)))
    if size != (w, h):
        pixels = cv2.resize(np.asarray(pixels), size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR)
    return np.ascontiguousarray(pixels), scale * size[0] / w


@functools.lru_cache(maxsize=1)
def default_detector() -> FaceDetector:
    """One FaceDetector per process, built on first use."""
    return FaceDetector()
