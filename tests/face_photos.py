"""Real photos with known face boxes, for detection recall and prediction speed.

Every photo is built from the two portraits that ship with scikit-image (`astronaut`: colour,
`camera`: grayscale), whose face boxes were marked by hand:

  - `astronaut`, `camera`: the portraits as they are (512×512, one face each);
  - `frame 640x480`: the astronaut reduced to 480×480 and centred on a 640×480 grey frame, the
    one-face video frame of the speed figures;
  - `group 1280x800`: eight heads cut from both portraits (some mirrored) pasted at face widths
    from 48 to 150 pixels onto one canvas, the many-face photo;
  - `scale N`: the astronaut resized so that its face is N pixels wide, seen through a 640×480
    window centred on the face (grey where the window leaves the picture), for N in `SCALES`.

`match` pairs detections with expected boxes (IoU above `MATCH_IOU`, greedy, one to one), which
gives the detected / expected counts of the recall tests in tests/test_face_detection.py and of
the recall table in benchmarks/bench_predict.py (which imports this fixture from tests/).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from va2att.faces.detection import box_iou

ASTRONAUT_FACE = (180.0, 60.0, 85.0, 115.0)  # x, y, w, h: hairline to chin, ear to ear
CAMERA_FACE = (195.0, 115.0, 60.0, 85.0)
SCALES = (16, 20, 24, 32, 48, 64, 96, 128, 192)  # face widths of the `scale N` photos, in pixels
MATCH_IOU = 0.3  # a detection finds an expected face when their boxes overlap at least this much
BACKGROUND = 120  # grey level of canvases and of the parts of a window outside the picture
HEAD_MARGIN = 0.6  # a pasted head keeps this fraction of the face's size around it on every side


@dataclass(frozen=True)
class Photo:
    """One test photo: RGB uint8 pixels and the boxes (x, y, w, h) of every face in it."""

    name: str
    pixels: np.ndarray
    faces: tuple[tuple[float, float, float, float], ...]


def portraits() -> dict[str, tuple[np.ndarray, tuple[float, float, float, float]]]:
    """The two scikit-image portraits as RGB arrays, with their face boxes."""
    from skimage import data

    return {
        "astronaut": (data.astronaut(), ASTRONAUT_FACE),
        "camera": (cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2RGB), CAMERA_FACE),
    }


def _scaled(box, k, dx=0.0, dy=0.0):
    x, y, w, h = box
    return (x * k + dx, y * k + dy, w * k, h * k)


def frame_640x480() -> Photo:
    """The astronaut reduced to 480×480 and centred on a 640×480 frame: one face about 80 pixels wide."""
    image, face = portraits()["astronaut"]
    frame = np.full((480, 640, 3), BACKGROUND, np.uint8)
    frame[:, 80:560] = cv2.resize(image, (480, 480), interpolation=cv2.INTER_AREA)
    return Photo("frame 640x480", frame, (_scaled(face, 480 / 512, dx=80),))


def window(image, face, face_width: int, size=(480, 640)) -> Photo:
    """`image` resized so that `face` is `face_width` pixels wide, in a window of `size` centred on the face."""
    k = face_width / face[2]
    resized = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    x, y, w, h = _scaled(face, k)
    height, width = size
    left, top = round(x + w / 2 - width / 2), round(y + h / 2 - height / 2)
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(resized.shape[1], left + width), min(resized.shape[0], top + height)
    out[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = resized[sy0:sy1, sx0:sx1]
    return Photo(f"scale {face_width}", out, ((x - left, y - top, w, h),))


def _head(image, face):
    """The face with HEAD_MARGIN of context on each side, and the face box inside that crop."""
    x, y, w, h = face
    x0, y0 = max(0, int(x - HEAD_MARGIN * w)), max(0, int(y - HEAD_MARGIN * h))
    x1 = min(image.shape[1], int(x + w + HEAD_MARGIN * w))
    y1 = min(image.shape[0], int(y + h + HEAD_MARGIN * h))
    return image[y0:y1, x0:x1], (x - x0, y - y0, w, h)


# (portrait, face width in pixels, mirrored, top-left corner on the group canvas)
GROUP_LAYOUT = (
    ("astronaut", 150, False, (40, 40)),
    ("camera", 130, False, (420, 40)),
    ("astronaut", 120, True, (760, 60)),
    ("camera", 96, True, (1040, 80)),
    ("astronaut", 80, False, (80, 520)),
    ("camera", 64, False, (380, 530)),
    ("astronaut", 56, True, (650, 540)),
    ("astronaut", 48, False, (960, 560)),
)


def group_photo(size=(800, 1280)) -> Photo:
    """Eight heads from both portraits (GROUP_LAYOUT) pasted onto one canvas."""
    source = portraits()
    canvas = np.full((*size, 3), BACKGROUND, np.uint8)
    faces = []
    for name, face_width, mirrored, (left, top) in GROUP_LAYOUT:
        head, face = _head(*source[name])
        k = face_width / face[2]
        head = cv2.resize(head, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
        x, y, w, h = _scaled(face, k)
        if mirrored:
            head = np.ascontiguousarray(head[:, ::-1])
            x = head.shape[1] - x - w
        canvas[top:top + head.shape[0], left:left + head.shape[1]] = head
        faces.append((x + left, y + top, w, h))
    return Photo(f"group {size[1]}x{size[0]}", canvas, tuple(faces))


def shifted(photo: Photo, dx: int, dy: int = 0) -> Photo:
    """`photo` moved right by dx and down by dy pixels (BACKGROUND where it leaves), faces moved along."""
    pixels = np.full_like(photo.pixels, BACKGROUND)
    h, w = pixels.shape[:2]
    pixels[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
        photo.pixels[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    return Photo(f"{photo.name} +{dx},{dy}", pixels, tuple((x + dx, y + dy, bw, bh) for x, y, bw, bh in photo.faces))


def moving_clip(frames: int, step: tuple[int, int] = (4, 2)) -> list[Photo]:
    """`frames` frames of the 640×480 frame drifting by `step` pixels per frame: a one-face video."""
    first = frame_640x480()
    return [shifted(first, step[0] * i, step[1] * i) for i in range(frames)]


def recall_photos() -> list[Photo]:
    """The photos of the recall table: both portraits, the frame, the group photo and every scale."""
    source = portraits()
    as_they_are = [Photo(name, image, (face,)) for name, (image, face) in source.items()]
    return [*as_they_are, frame_640x480(), group_photo(),
            *(window(*source["astronaut"], width) for width in SCALES)]


def match(expected, found, min_iou: float = MATCH_IOU) -> tuple[int, int]:
    """(expected faces found, detections matching no expected face): greedy one-to-one pairs by IoU."""
    pairs = sorted(((box_iou(e, f), i, j) for i, e in enumerate(expected) for j, f in enumerate(found)), reverse=True)
    used_e, used_f = set(), set()
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i not in used_e and j not in used_f:
            used_e.add(i)
            used_f.add(j)
    return len(used_e), len(found) - len(used_f)
