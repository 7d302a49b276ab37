"""Causal smoothing over time: each value replaced by the mean of the values of the last S seconds.

One filter serves a live stream, predict's videos and the evaluation of a video data set:
`CausalMean(seconds).update(time, values)` takes one frame at a time and answers at once, from that
frame and the frames before it only (never a later one), so a change at time t leaves every earlier
answer as it was. The window is a span of time, not a count of frames: the frames in
(time - seconds, time] are averaged, each with the same weight, so frames without a face, frames not
analysed (`--every`) and a varying frame rate only mean fewer frames in the window, and after a gap
longer than the window the filter starts afresh.

`TrackSmoothers` keeps one filter per track of a video (predict's `--smooth`); `smooth_videos` runs
the same filter over the frames of each video of an evaluation split, in frame order.
"""

from __future__ import annotations

from collections import deque

import numpy as np

_TOLERANCE = 1e-9  # seconds: a frame exactly `seconds` old is out of the window, whatever the rounding of its time


class CausalMean:
    """The mean of the values of the last `seconds` seconds, the current frame included, fed frame by frame.

    Args:
        seconds: float >= 0, the length of the window (0: every frame is its own mean).

    `update(time, values)` takes the frame's time in seconds (never earlier than the frame before)
    and its values (a number or an array; the same shape every frame), and returns their mean over
    the frames with times in (time - seconds, time]. It holds the frames of one window, no more.

    Example:
        mean = CausalMean(1.0)
        [mean.update(t, v) for t, v in ((0.0, 1.0), (0.5, 3.0), (1.2, 5.0))]   # [1.0, 2.0, 4.0]
    """

    def __init__(self, seconds: float):
        if not np.isfinite(seconds) or seconds < 0:
            raise ValueError(f"seconds must be a finite number >= 0. Received: seconds={seconds!r}")
        self.seconds = float(seconds)
        self._window: deque[tuple[float, np.ndarray]] = deque()

    def update(self, time: float, values) -> np.ndarray:
        time = float(time)
        if self._window and time < self._window[-1][0]:
            raise ValueError(f"times must not go back. Received: time={time!r} after {self._window[-1][0]!r}")
        self._window.append((time, np.asarray(values, np.float64)))
        while self._window[0][0] <= time - self.seconds + _TOLERANCE and len(self._window) > 1:
            self._window.popleft()
        return np.mean([values for _, values in self._window], axis=0)


class TrackSmoothers:
    """One `CausalMean` per track of a video; tracks that end take their filter with them.

    `update(track, time, values)` smooths one track's values; `keep(tracks)` forgets every track not
    in `tracks` (the tracks still open), so the filters held never outnumber the faces in view.
    """

    def __init__(self, seconds: float):
        CausalMean(seconds)  # checks seconds
        self.seconds = seconds
        self._filters: dict[object, CausalMean] = {}

    def update(self, track, time: float, values) -> np.ndarray:
        if track not in self._filters:
            self._filters[track] = CausalMean(self.seconds)
        return self._filters[track].update(time, values)

    def keep(self, tracks) -> None:
        tracks = set(tracks)
        self._filters = {k: f for k, f in self._filters.items() if k in tracks}


def smooth_videos(videos, frames, values: np.ndarray, seconds: float, fps: float) -> np.ndarray:
    """`values` (N, ...) smoothed with `CausalMean(seconds)` within each video, frames in order of their number.

    Args:
        videos: (N,) video names; "" marks a still image, left as it is.
        frames: (N,) frame numbers in their video; time = frame / fps.
        values: (N,) or (N, K) per-frame values (predictions), in any order.
        seconds: float, the window; fps: float > 0, the videos' frame rate.
    Returns:
        An array like `values`, row i smoothed over the rows of its video whose frame number is at most
        its own and whose time lies within `seconds` of it. Frames missing from the rows (no face, no
        label, a frame step) are gaps in time, not neighbours.
    """
    if not fps > 0:
        raise ValueError(f"fps must be > 0. Received: fps={fps!r}")
    videos, frames = np.asarray(videos).astype(str), np.asarray(frames, np.int64)
    values = np.asarray(values, np.float64)
    out = values.copy()
    for video in sorted(set(videos.tolist()) - {""}):
        rows = np.flatnonzero(videos == video)
        rows = rows[np.argsort(frames[rows], kind="stable")]
        mean = CausalMean(seconds)
        for row in rows:
            out[row] = mean.update(frames[row] / fps, values[row])
    return out
