"""Video frames in, per-frame results out: which frames are analysed, their times, and causal smoothing per track.

`read_video(path, every=..., every_seconds=..., start=...)` decodes a video with OpenCV and yields
the sampled `Frame`s with their index and time. The time of a frame is its presentation time as the
container gives it (`CAP_PROP_POS_MSEC` after each grab); where the container gives none (or a time
that does not come after the last frame's), one frame interval (1 ÷ the container's frame rate) after
the last frame's time, which for a video without times is the frame's index ÷ the frame rate. One frame in `every` is
analysed (indexes 0, every, 2·every, ... counted from the start of the video, so a run resumed with
`start` samples the same frames), or, with `every_seconds`, the first frame at or after each multiple
of that many seconds. `start` skips to the first frame at or after that time (a seek, checked against
the times of the frames it lands on).

`smooth_results(results, seconds)` adds, to every face of a video's results, the causal mean of its
valence, arousal and expression probabilities over its track's last `seconds`
(`va2att.evaluation.smoothing.TrackSmoothers`): a result is smoothed from itself and earlier
results only, so results can be written as they come, and a live stream can be smoothed the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from va2att.evaluation.smoothing import TrackSmoothers
from va2att.prediction.results import Frame, ImageResult

# Containers whose frame count is an estimate (from duration x rate) may give a frame or 1% more than
# a whole file decodes; a video that ends further short than that is reported as truncated.
FRAME_COUNT_SLACK = 0.01
_TIME_TOLERANCE = 1e-6  # seconds: a frame this close to a sampling time counts as at it


def video_info(path) -> tuple[int, float]:
    """(frame count, frames per second) as the container gives them (0 for either when unknown)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0, 0.0
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))), fps if math.isfinite(fps) and fps > 0 else 0.0
    finally:
        capture.release()


class _Clock:
    """Each grabbed frame's time: the container's presentation time when it has one after the last frame's, else
    one frame interval (1 / fps) after the last frame's time (index / fps for the first): never going back."""

    def __init__(self, capture, fps: float):
        self.capture, self.fps, self.last = capture, fps, None

    def time(self, index: int) -> float | None:
        import cv2

        milliseconds = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        time = milliseconds / 1000.0 if milliseconds is not None and math.isfinite(milliseconds) else -1.0
        if time < 0 or (self.last is not None and time <= self.last):
            if not self.fps:
                return None
            time = index / self.fps if self.last is None else self.last + 1.0 / self.fps
        self.last = time
        return time


class _Sampler:
    """Which frames are analysed: index % every == 0, or the first frame at or after each multiple of
    `every_seconds` (and never one before `start`)."""

    def __init__(self, every: int, every_seconds: float | None, start: float):
        self.every, self.every_seconds, self.start = every, every_seconds, start
        self.due = math.ceil(start / every_seconds - _TIME_TOLERANCE) * every_seconds if every_seconds else 0.0

    def wanted(self, index: int, time: float | None) -> bool:
        if time is not None and time < self.start - _TIME_TOLERANCE:
            return False
        if not self.every_seconds or time is None:
            return index % self.every == 0
        if time < self.due - _TIME_TOLERANCE:
            return False
        self.due = (math.floor(time / self.every_seconds + _TIME_TOLERANCE) + 1) * self.every_seconds
        return True


def _open_at(source: str, start: float, fps: float):
    """(capture, index of the next frame it grabs): moved to the first frame at or after `start` seconds by a
    seek, or left at the beginning when there is no start, no frame rate, or the seek lands past the start."""
    import cv2

    capture = cv2.VideoCapture(source)
    if start <= 0 or not fps:
        return capture, 0
    capture.set(cv2.CAP_PROP_POS_MSEC, start * 1000.0)
    index = int(capture.get(cv2.CAP_PROP_POS_FRAMES) or 0)
    if 0 <= index and index / fps <= start + 1.0 / fps:  # at or before the start: the sampler skips the rest
        return capture, index
    capture.release()
    return cv2.VideoCapture(source), 0


def read_video(path, every: int = 1, *, every_seconds: float | None = None, start: float = 0.0) -> Iterator[Frame]:
    """The sampled `Frame`s of a video (index, time, RGB picture), decoded with OpenCV and converted from BGR.

    A video that cannot be opened or decoded, or whose frames hold more than `MAX_DECODE_PIXELS` pixels
    (the cap on decoded photos), yields a single `Frame` with an error, before any frame is decoded. A
    video that ends (cannot be decoded further) more than `FRAME_COUNT_SLACK` short of the frame count
    its container gives yields, after its frames, one more `Frame` whose error says how many frames were
    read: a truncated or damaged file is reported, never taken for a whole one.
    """
    import cv2

    from va2att.faces import images

    source = str(path)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        yield Frame(source, error=f"{source}: cannot open as a video")
        return
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > images.MAX_DECODE_PIXELS:  # the cap on decoded pixels holds for frames as for photos
        capture.release()
        yield Frame(source, error=f"{source}: frames of {width}x{height} pixels exceed the decode limit")
        return
    declared = max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    fps = fps if math.isfinite(fps) and fps > 0 else 0.0
    capture.release()
    capture, index = _open_at(source, start, fps)
    clock, sampler, first = _Clock(capture, fps), _Sampler(every, every_seconds, start), index
    try:
        while capture.grab():
            time = clock.time(index)
            if sampler.wanted(index, time):
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    yield Frame(source, frame=index, image=images.from_array(bgr, order="bgr"), time=time)
                else:
                    yield Frame(source, frame=index, error=f"{source}: frame {index} cannot be decoded", time=time)
            index += 1
    finally:
        capture.release()
    if index == first:
        yield Frame(source, error=f"{source}: no frame could be decoded" + (f" at or after {start:g} s" if start else ""))
    elif declared - index > max(1, declared * FRAME_COUNT_SLACK):
        yield Frame(source, frame=index, error=f"{source}: the video ends after {index} of the {declared} frames its "
                                               "header gives (truncated or damaged); the frames before were analysed")


def expected_frames(path, every: int, every_seconds: float | None = None, start: float = 0.0) -> int:
    """About how many frames `read_video` yields (for a progress bar); at least 1."""
    count, fps = video_info(path)
    if every_seconds and fps:
        return max(1, math.ceil((count / fps - start) / max(every_seconds, 1.0 / fps)))
    skipped = round(start * fps) if fps else 0
    return max(1, math.ceil((count - skipped) / every))


def _values(face, class_names) -> np.ndarray:
    return np.array([*face.scores.values(), *(face.probabilities.get(n, 0.0) for n in class_names)], np.float64)


def smooth_results(results: Iterable[ImageResult], seconds: float) -> Iterator[ImageResult]:
    """`results` with each video face's `smoothed_scores` and `smoothed_probabilities` set (causal mean over
    its track's last `seconds`); photos and faces without a track or a time pass unchanged."""
    smoothers, video = TrackSmoothers(seconds), None
    for result in results:
        if result.frame is None or result.time is None:
            yield result
            continue
        if result.source != video:
            smoothers, video = TrackSmoothers(seconds), result.source
        for face in result.faces:
            if face.track is None:
                continue
            names = list(face.probabilities)
            smoothed = smoothers.update(face.track, result.time, _values(face, names))
            face.smoothed_scores = {name: float(v) for name, v in zip(face.scores, smoothed)}
            face.smoothed_probabilities = {name: float(v) for name, v in zip(names, smoothed[len(face.scores):])}
        smoothers.keep([face.track for face in result.faces] + list(result.lost_tracks))
        yield result
