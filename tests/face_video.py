"""Generated videos of real faces that move and cross, for the video tests and benchmarks/bench_video.py.

The faces are tests/face_photos.py's two portraits (scikit-image's astronaut and camera), each cut
with a little of the head around it and resized so that the face is `face_width` pixels wide. The
astronaut moves along the upper half of the frame and the camera man along the lower half, in
opposite directions, back and forth (a triangle wave of `period` frames): they change places from
left to right every half period, so numbering faces left to right would swap them, while a track
keeps each one. `write_video` returns each frame's true face boxes, from which the tests know which
face is which.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import face_photos
import numpy as np

MARGIN = 0.3  # the head cut around a face keeps this fraction of the face's size on every side


@dataclass(frozen=True)
class Head:
    """A head to paste: RGB pixels and the face box inside them (x, y, w, h)."""

    name: str
    pixels: np.ndarray
    face: tuple[float, float, float, float]


def heads(face_width: int) -> list[Head]:
    """The astronaut's and the camera man's heads with faces `face_width` pixels wide."""
    out = []
    for name, (image, (x, y, w, h)) in face_photos.portraits().items():
        x0, y0 = max(0, int(x - MARGIN * w)), max(0, int(y - MARGIN * h))
        x1, y1 = min(image.shape[1], int(x + w + MARGIN * w)), min(image.shape[0], int(y + h + MARGIN * h))
        k = face_width / w
        pixels = cv2.resize(image[y0:y1, x0:x1], None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        out.append(Head(name, pixels, ((x - x0) * k, (y - y0) * k, w * k, h * k)))
    return out


def _triangle(t: float, period: float) -> float:
    """0 -> 1 -> 0 over one period."""
    phase = (t / period) % 1.0
    return 2 * phase if phase < 0.5 else 2 - 2 * phase


def frame_at(index: int, size, people: list[Head], period: float) -> tuple[np.ndarray, list[tuple]]:
    """Frame `index` (RGB) and the face box of each head in `people` (astronaut on top, moving right first)."""
    height, width = size
    frame = np.full((height, width, 3), face_photos.BACKGROUND, np.uint8)
    boxes = []
    for row, head in enumerate(people):
        h, w = head.pixels.shape[:2]
        along = _triangle(index, period)
        left = round((along if row == 0 else 1 - along) * (width - w))
        top = 0 if row == 0 else height - h
        frame[top:top + h, left:left + w] = head.pixels
        x, y, fw, fh = head.face
        boxes.append((x + left, y + top, fw, fh))
    return frame, boxes


def write_video(path, frames: int, *, fps: float = 8.0, size=(300, 480), face_width: int = 56,
                period: float | None = None, fourcc: str = "MJPG", swap_from: int | None = None) -> list[list[tuple]]:
    """Write a video of the two heads moving and crossing; per frame, the face boxes (astronaut, camera man).

    Args:
        frames: int, how many frames; fps: the container's frame rate.
        size: (height, width) of the frames; face_width: pixels across each face.
        period: frames of one back-and-forth (default 2 × frames: one crossing, in the middle).
        fourcc: the codec (MJPG codes each frame alone, so two videos that agree up to a frame agree there
            byte for byte).
        swap_from: from this frame on, the upper head is the camera man's too (a different face in the same
            place: what the network says about the upper track changes from that frame on, and only then).
    """
    people = heads(face_width)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size[1], size[0]))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with {fourcc}")
    boxes = []
    try:
        for index in range(frames):
            shown = people if swap_from is None or index < swap_from else [_like(people[1], people[0]), people[1]]
            frame, where = frame_at(index, size, shown, period or 2 * frames)
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            boxes.append(where)
    finally:
        writer.release()
    return boxes


def _like(head: Head, place: Head) -> Head:
    """`head` resized to `place`'s pixel size (so it moves exactly as `place` would)."""
    h, w = place.pixels.shape[:2]
    ky, kx = h / head.pixels.shape[0], w / head.pixels.shape[1]
    x, y, fw, fh = head.face
    return Head(head.name, cv2.resize(head.pixels, (w, h), interpolation=cv2.INTER_AREA), (x * kx, y * ky, fw * kx, fh * ky))
