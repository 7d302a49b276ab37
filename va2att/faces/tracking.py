"""Faces through the frames of a video: full detection once every k frames, tracking in between, one id per face.

`FaceTracker.track(image)` takes the frames of one video in order. On every `detect_every`-th
frame, and whenever it has nothing to follow, it runs the detector on the whole frame. On the
frames in between it finds each face of the previous frame again without a search: MTCNN's last
network (ONet, `FaceDetector.refine_pixels`) refines the face's box where its motion says it is now
and where it was, on a region around it (`margin` face sizes on every side) reduced so that the
face is about `track_face_width` pixels wide — one call of the smallest network instead of a
search of the frame. When a followed face is not confirmed there (it moved too far, turned away,
left the picture) the whole frame is searched again at once, so a lost face costs one full
detection, not a missed frame. Faces that newly enter the picture are found at the next full
detection.

Identity. Every face found gets a track id (1, 2, ... in the order faces first appear; `reset()`
starts again at 1). The faces of a frame are paired with the tracks of the frames before
(`associate`): each track's box moved on by its last motion (constant velocity), paired with the
detection nearest to it when the centres are less than `MATCH_DISTANCE` face sizes apart and the
sizes differ by less than a factor `MATCH_SIZE_RATIO`, nearest pairs first, one to one. A track
whose face is not found stays open for `lost_frames` frames: in those frames `track` reports it
with no detection (the face is missing, not renumbered), and a face found near where it was
predicted continues it. After that the track ends, and a face that comes back later (it left the
picture, was hidden for long) gets a new id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from va2att.faces.detection import Detection, FaceDetector, box_iou
from va2att.faces.images import RGBImage
from va2att.util.checks import check_positive_int

DETECT_EVERY = 5  # prediction's default: whole-frame detection once every this many analysed frames
DUPLICATE_IOU = 0.5  # two regions that find the same face: keep the more confident detection
LOST_FRAMES = 5  # a track whose face is not found for more frames than this ends
MATCH_DISTANCE = 1.0  # a detection continues a track when its centre is within this many face sizes of the prediction
MATCH_SIZE_RATIO = 2.0  # ... and its size is within this factor of the track's


@dataclass(frozen=True)
class TrackedFace:
    """One track in one frame: `detection` is the face found, None when the track's face was not found."""

    track: int
    detection: Detection | None


@dataclass
class _Track:
    id: int
    detection: Detection  # where the face was last found
    velocity: tuple[float, float] = (0.0, 0.0)  # its centre's motion per frame, from the last two sightings
    missing: int = 0  # frames since it was last found

    def predicted_box(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.detection.box
        steps = self.missing + 1
        return (x + self.velocity[0] * steps, y + self.velocity[1] * steps, w, h)

    def found(self, detection: Detection) -> None:
        (x0, y0), (x1, y1) = _centre(self.detection.box), _centre(detection.box)
        steps = self.missing + 1
        self.velocity = ((x1 - x0) / steps, (y1 - y0) / steps)
        self.detection, self.missing = detection, 0


def _centre(box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def match_distance(predicted, found) -> float:
    """Distance between two boxes' centres in face sizes (the mean side of both); inf when their sizes differ by
    `MATCH_SIZE_RATIO` or more."""
    size_a, size_b = math.sqrt(max(predicted[2] * predicted[3], 1e-9)), math.sqrt(max(found[2] * found[3], 1e-9))
    if max(size_a, size_b) >= MATCH_SIZE_RATIO * min(size_a, size_b):
        return math.inf
    (xa, ya), (xb, yb) = _centre(predicted), _centre(found)
    return math.hypot(xa - xb, ya - yb) / ((size_a + size_b) / 2)


def associate(predicted_boxes, found_boxes, max_distance: float = MATCH_DISTANCE) -> list[tuple[int, int]]:
    """(track index, detection index) pairs, one to one, nearest first, each closer than `max_distance` face sizes."""
    pairs = sorted((match_distance(p, f), i, j) for i, p in enumerate(predicted_boxes) for j, f in enumerate(found_boxes))
    used_tracks, used_found, out = set(), set(), []
    for distance, i, j in pairs:
        if distance >= max_distance:
            break
        if i not in used_tracks and j not in used_found:
            used_tracks.add(i)
            used_found.add(j)
            out.append((i, j))
    return out


class FaceTracker:
    """Detections for consecutive frames of one video, mostly refined from the last faces, with track ids.

    Args:
        detector: FaceDetector, used for whole frames and for the regions (any object with `detect(RGBImage)`
            when `detect_every` is 1: regions need `refine_pixels`).
        detect_every: int, a whole-frame detection at least once every this many frames (1: every frame).
        margin: float, the region around a face reaches this many face widths (heights) beyond it on each side.
        track_face_width: int, the region is reduced so that the face in it is about this many pixels wide.
        lost_frames: int, a track whose face is not found stays open this many frames, then ends.

    `reset()` forgets the faces and the tracks (call it between videos); `full_detections` and
    `region_detections` count the frames that took each path.
    """

    def __init__(self, detector: FaceDetector, *, detect_every: int = DETECT_EVERY, margin: float = 0.5,
                 track_face_width: int = 48, lost_frames: int = LOST_FRAMES):
        check_positive_int("detect_every", detect_every)
        if margin <= 0 or track_face_width < getattr(detector, "min_face_size", 1) or lost_frames < 0:
            raise ValueError("margin must be > 0, track_face_width at least the detector's min_face_size and "
                             f"lost_frames >= 0. Received: margin={margin!r}, track_face_width={track_face_width!r}, "
                             f"lost_frames={lost_frames!r}")
        self.detector = detector
        self.detect_every = detect_every
        self.margin = margin
        self.track_face_width = track_face_width
        self.lost_frames = lost_frames
        self.full_detections = 0
        self.region_detections = 0
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._since_full = 0

    def detect(self, image: RGBImage) -> list[Detection]:
        """Faces of the next frame, most confident first, in original coordinates."""
        found = [face.detection for face in self.track(image) if face.detection is not None]
        return sorted(found, key=lambda d: -d.confidence)

    def track(self, image: RGBImage) -> list[TrackedFace]:
        """Every open track in the next frame, by id: its face, or None when it was not found in this frame."""
        seen = [t for t in self._tracks if t.missing == 0]
        faces = None
        if seen and self._since_full < self.detect_every - 1:
            faces = self._follow(image, seen)
        if faces is None:
            faces = self.detector.detect(image)
            self.full_detections += 1
            self._since_full = 0
        else:
            self.region_detections += 1
            self._since_full += 1
        return self._update(faces)

    def _update(self, faces: list[Detection]) -> list[TrackedFace]:
        """Continue, miss or end each track with this frame's faces; new tracks for the faces no track continues."""
        pairs = dict(associate([t.predicted_box() for t in self._tracks], [d.box for d in faces]))
        continued = set(pairs.values())
        for i, track in enumerate(self._tracks):
            if i in pairs:
                track.found(faces[pairs[i]])
            else:
                track.missing += 1
        self._tracks = [t for t in self._tracks if t.missing <= self.lost_frames]
        for j, detection in enumerate(faces):
            if j not in continued:
                self._tracks.append(_Track(self._next_id, detection))
                self._next_id += 1
        return [TrackedFace(t.id, t.detection if t.missing == 0 else None) for t in self._tracks]

    def _follow(self, image: RGBImage, tracks: list[_Track]) -> list[Detection] | None:
        """Each previous face found again in its region, or None as soon as one is not."""
        height, width = image.original_size
        found: list[Detection] = []
        for track in tracks:
            face, moved = track.detection, track.predicted_box()
            # The region holds the face where it was and where its motion says it is now.
            x, y = min(face.box[0], moved[0]), min(face.box[1], moved[1])
            w, h = max(face.box[0], moved[0]) + face.box[2] - x, max(face.box[1], moved[1]) + face.box[3] - y
            x0, y0 = max(0.0, x - self.margin * w), max(0.0, y - self.margin * h)
            x1, y1 = min(float(width), x + w + self.margin * w), min(float(height), y + h + self.margin * h)
            # Region in decoded pixels (the picture may have been decoded reduced: image.scale).
            px0, py0 = int(x0 * image.scale), int(y0 * image.scale)
            px1, py1 = round(x1 * image.scale), round(y1 * image.scale)
            if px1 - px0 < 2 or py1 - py0 < 2:
                return None
            region = image.pixels[py0:py1, px0:px1]
            zoom = min(1.0, self.track_face_width / max(1.0, face.box[2] * image.scale))
            candidates = self.detector.refine_pixels(region, [moved, face.box], zoom=zoom,
                                                     scale=image.scale, offset=(px0 / image.scale, py0 / image.scale))
            if not candidates:
                return None
            found.append(max(candidates, key=lambda d: (box_iou(d.box, face.box), d.confidence)))
        kept: list[Detection] = []
        for d in sorted(found, key=lambda d: -d.confidence):
            if all(box_iou(d.box, k.box) < DUPLICATE_IOU for k in kept):
                kept.append(d)
        return kept
