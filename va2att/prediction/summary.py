"""Per video and track: when a face was seen, how often, its typical valence and arousal and its expressions.

`VideoSummaries.add(result)` takes a video's results one by one (photos are left out) and keeps, per
video and track, counts and sums and a histogram of valence and arousal in steps of `MEDIAN_STEP`
(so the median is exact to half a step): the memory held grows with the number of tracks, never with
the number of frames. `to_dict()` gives the document predict writes with `--summary`:

    {"videos": [{"source": "clip.mp4", "frames_analysed": 180, "first_time": 0.0, "last_time": 59.7,
                 "tracks": [{"track": 1, "first_time": 0.0, "last_time": 59.7, "frames_seen": 176,
                             "frames_not_found": 4,
                             "valence": {"mean": 0.21, "median": 0.25}, "arousal": {...},
                             "expressions": {"Neutral": 0.41, "Happy": 0.55, ...}}, ...]}]}

`frames_seen` counts the analysed frames in which the track's face was found, `frames_not_found` those
in which it was followed but not found; the means, medians and expression shares are over the frames
seen (raw values, not smoothed). An expression's share is the fraction of those frames in which it
was the most probable class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from va2att.prediction.results import ImageResult

MEDIAN_STEP = 0.001  # resolution of the valence/arousal histograms the medians come from
_BINS = round(2 / MEDIAN_STEP) + 1  # values in [-1, 1]


def histogram_median(counts: np.ndarray) -> float | None:
    """The median of the values counted in `counts` (bins of MEDIAN_STEP from -1), None when empty."""
    total = int(counts.sum())
    if total == 0:
        return None
    cumulative = np.cumsum(counts)
    low = int(np.searchsorted(cumulative, (total + 1) // 2))  # the middle value(s), counted from 1
    high = int(np.searchsorted(cumulative, total // 2 + 1))
    return round(-1.0 + (low + high) / 2 * MEDIAN_STEP, 4)


@dataclass
class _Dimension:
    total: float = 0.0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, np.int64))

    def add(self, value: float) -> None:
        self.total += value
        self.counts[round((min(1.0, max(-1.0, value)) + 1.0) / MEDIAN_STEP)] += 1

    def to_dict(self, n: int) -> dict:
        return {"mean": round(self.total / n, 4) if n else None, "median": histogram_median(self.counts)}


@dataclass
class _Track:
    track: int
    first_time: float | None = None
    last_time: float | None = None
    seen: int = 0
    not_found: int = 0
    dimensions: dict[str, _Dimension] = field(default_factory=dict)
    expressions: dict[str, int] = field(default_factory=dict)

    def add(self, face, time) -> None:
        self.seen += 1
        self.first_time = time if self.first_time is None else self.first_time
        self.last_time = time
        for name in ("valence", "arousal"):
            if face.scores.get(name) is not None:
                self.dimensions.setdefault(name, _Dimension()).add(face.scores[name])
        if face.expression:
            self.expressions[face.expression] = self.expressions.get(face.expression, 0) + 1

    def to_dict(self, class_names) -> dict:
        out = {"track": self.track, "first_time": self.first_time, "last_time": self.last_time,
               "frames_seen": self.seen, "frames_not_found": self.not_found}
        out.update({name: d.to_dict(self.seen) for name, d in self.dimensions.items()})
        if class_names:
            out["expressions"] = {n: round(self.expressions.get(n, 0) / self.seen, 4) if self.seen else 0.0
                                  for n in class_names}
        return out


@dataclass
class _Video:
    source: str
    frames: int = 0
    first_time: float | None = None
    last_time: float | None = None
    tracks: dict[int, _Track] = field(default_factory=dict)


class VideoSummaries:
    """Per video and track summaries of predict's results, built as results come (see the module's docstring).

    Args:
        class_names: the model's expression class names (`Predictor.class_names`).
    """

    def __init__(self, class_names=()):
        self.class_names = tuple(class_names)
        self._videos: dict[str, _Video] = {}

    def add(self, result: ImageResult) -> None:
        """Count one result; photos and unreadable frames are left out."""
        if result.frame is None or result.error is not None:
            return
        video = self._videos.setdefault(result.source, _Video(result.source))
        video.frames += 1
        if result.time is not None:
            video.first_time = result.time if video.first_time is None else video.first_time
            video.last_time = result.time
        for face in result.faces:
            if face.track is not None:
                video.tracks.setdefault(face.track, _Track(face.track)).add(face, result.time)
        for track in result.lost_tracks:
            video.tracks.setdefault(track, _Track(track)).not_found += 1

    def to_dict(self) -> dict:
        return {"videos": [{"source": v.source, "frames_analysed": v.frames, "first_time": v.first_time,
                            "last_time": v.last_time,
                            "tracks": [t.to_dict(self.class_names) for _, t in sorted(v.tracks.items())]}
                           for v in self._videos.values()]}
