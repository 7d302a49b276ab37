"""What prediction gives back: a face (`FaceResult`), a picture or video frame (`ImageResult`), and the
decoded frames it takes (`Frame`).

A photo's result has no frame index, no time and no tracks. A video frame's result has its index, its
time in seconds (the container's presentation time), a track id on every face (the same face keeps
its id while it is followed, `va2att.faces.tracking`) and the tracks that were not found in it
(`lost_tracks`); with smoothing, every face also carries its smoothed values beside the raw ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from va2att.faces.images import RGBImage
from va2att.serving.signature import SCORE, outputs_of_kind


@dataclass
class FaceResult:
    """One face: where it is and what the network says about it.

    `box` is (x, y, width, height) and `landmarks` five (x, y) points (eyes, nose, mouth
    corners, in the detector's order), both in the coordinates of the picture as read (after
    EXIF rotation). `scores` holds every score output of the model (`va2att.serving.signature`:
    `valence` and `arousal`, in [-1, 1]), by name and in the served order; `valence` and `arousal`
    read it (None when the model has no such output). `expression` is the most probable class
    name, `probabilities` maps every class name to its probability; both are empty (None, -1, {})
    for a model without expression output. In a video, `track` is the face's track id (None in a
    photo), and with smoothing `smoothed_scores` / `smoothed_probabilities` hold the causal means of
    the scores and probabilities over the track's last seconds (`va2att.evaluation.smoothing`).
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    expression: str | None = None
    expression_index: int = -1
    probabilities: dict[str, float] = field(default_factory=dict)
    track: int | None = None
    smoothed_scores: dict[str, float] = field(default_factory=dict)
    smoothed_probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def valence(self) -> float | None:
        return self.scores.get("valence")

    @property
    def arousal(self) -> float | None:
        return self.scores.get("arousal")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: box, landmarks, confidence, each served score by name (None when the model
        lacks it), then expression, expression_index, probabilities and track; `smoothed` (the smoothed
        scores and probabilities) only when the face was smoothed."""
        scores = {output.name: self.scores.get(output.name) for output in outputs_of_kind(SCORE)}
        out = {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "confidence": self.confidence,
               **scores, **self.scores, "expression": self.expression, "expression_index": self.expression_index,
               "probabilities": dict(self.probabilities), "track": self.track}
        if self.smoothed_scores or self.smoothed_probabilities:
            out["smoothed"] = {**self.smoothed_scores, "probabilities": dict(self.smoothed_probabilities)}
        return out


@dataclass
class ImageResult:
    """All faces of one picture, or one sampled video frame.

    `source` names the picture (its path, or a caller-given name); for a video frame `frame` is its
    index and `time` its time in seconds, both None for a photo. A picture without a face has
    `faces == []` and a `note`; a picture that could not be read has an `error` and no faces.
    `lost_tracks` lists the video's tracks that are still followed but whose face was not found in
    this frame. `image` holds the decoded RGB picture only when asked for
    (`iter_predict(..., keep_images=True)`), e.g. to draw on it.
    """

    source: str
    frame: int | None = None
    faces: list[FaceResult] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
    image: RGBImage | None = field(default=None, repr=False, compare=False)
    time: float | None = None
    lost_tracks: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, without the picture itself."""
        return {
            "source": self.source,
            "frame": self.frame,
            "time": self.time,
            "faces": [face.to_dict() for face in self.faces],
            "lost_tracks": list(self.lost_tracks),
            "note": self.note,
            "error": self.error,
        }


@dataclass
class Frame:
    """A picture already decoded (e.g. a video frame), or the reason it could not be.

    `image` is an `RGBImage` or an RGB uint8 array; when it is None, `error` says why and the
    predictor reports it as an unreadable item. `frame` is a video frame's index (frames of one
    `source` with indexes are followed as one video) and `time` its time in seconds.
    """

    source: str
    frame: int | None = None
    image: RGBImage | np.ndarray | None = None
    error: str | None = None
    time: float | None = None
