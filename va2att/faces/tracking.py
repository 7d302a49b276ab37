"""Faces through the frames of a video: full detection once every k frames, tracking in between.

`FaceTracker.detect(image)` takes the frames of one video in order. On every `detect_every`-th
frame, and whenever it has nothing to follow, it runs the detector on the whole frame. On the
frames in between it searches each face of the previous frame again, in a region around where it
was (`margin` face sizes on every side), on a copy of that region reduced so that the face is about
`track_face_width` pixels wide: a few small MTCNN calls instead of one over the whole frame. When
a followed face is not found in its region (it moved too far, turned away, left the picture) the
whole frame is searched again at once, so a lost face costs one full detection, not a missed
frame. Faces that newly enter the picture are found at the next full detection.
"""

from __future__ import annotations

from va2att.faces.detection import Detection, FaceDetector, box_iou
from va2att.faces.images import RGBImage
from va2att.util.checks import check_positive_int

DETECT_EVERY = 5  # prediction's default: whole-frame detection once every this many analysed frames
DUPLICATE_IOU = 0.5  # two regions that find the same face: keep the more confident detection


class FaceTracker:
    """Detections for consecutive frames of one video, mostly from small regions around the last faces.

    Args:
        detector: FaceDetector, used for whole frames and for the regions.
        detect_every: int, a whole-frame detection at least once every this many frames (1: every frame).
        margin: float, the region around a face reaches this many face widths (heights) beyond it on each side.
        track_face_width: int, the region is reduced so that the face in it is about this many pixels wide.

    `reset()` forgets the faces (call it between videos); `full_detections` and `region_detections`
    count the frames that took each path.
    """

    def __init__(self, detector: FaceDetector, *, detect_every: int = DETECT_EVERY, margin: float = 0.5,
                 track_face_width: int = 48):
        check_positive_int("detect_every", detect_every)
        if margin <= 0 or track_face_width < detector.min_face_size:
            raise ValueError("margin must be > 0 and track_face_width at least the detector's min_face_size. "
                             f"Received: margin={margin!r}, track_face_width={track_face_width!r}")
        self.detector = detector
        self.detect_every = detect_every
        self.margin = margin
        self.track_face_width = track_face_width
        self.full_detections = 0
        self.region_detections = 0
        self.reset()

    def reset(self) -> None:
        self._faces: list[Detection] = []
        self._since_full = 0

    def detect(self, image: RGBImage) -> list[Detection]:
        """Faces of the next frame, most confident first, in original coordinates."""
        faces = None
        if self._faces and self._since_full < self.detect_every - 1:
            faces = self._follow(image)
        if faces is None:
            faces = self.detector.detect(image)
            self.full_detections += 1
            self._since_full = 0
        else:
            self.region_detections += 1
            self._since_full += 1
        self._faces = faces
        return faces

    def _follow(self, image: RGBImage) -> list[Detection] | None:
        """Each previous face found again in its region, or None as soon as one is not."""
        height, width = image.original_size
        found: list[Detection] = []
        for face in self._faces:
            x, y, w, h = face.box
            x0, y0 = max(0.0, x - self.margin * w), max(0.0, y - self.margin * h)
            x1, y1 = min(float(width), x + w + self.margin * w), min(float(height), y + h + self.margin * h)
            # Region in decoded pixels (the picture may have been decoded reduced: image.scale).
            px0, py0 = int(x0 * image.scale), int(y0 * image.scale)
            px1, py1 = round(x1 * image.scale), round(y1 * image.scale)
            if px1 - px0 < 2 or py1 - py0 < 2:
                return None
            region = image.pixels[py0:py1, px0:px1]
            zoom = min(1.0, self.track_face_width / max(1.0, w * image.scale))
            candidates = self.detector.detect_pixels(region, zoom=zoom, scale=image.scale,
                                                     offset=(px0 / image.scale, py0 / image.scale))
            if not candidates:
                return None
            found.append(max(candidates, key=lambda d: (box_iou(d.box, face.box), d.confidence)))
        kept: list[Detection] = []
        for d in sorted(found, key=lambda d: -d.confidence):
            if all(box_iou(d.box, k.box) < DUPLICATE_IOU for k in kept):
                kept.append(d)
        return kept
