"""Valence, arousal and expression for every face in ordinary pictures.

`Predictor` runs the whole inference path on photos: read the picture (EXIF orientation,
grayscale and RGBA handled by `va2att.faces.images.read_image`), detect faces with MTCNN
(`va2att.faces.detection.FaceDetector`, on a copy reduced so that the smallest face searched for
is MTCNN's smallest; consecutive video frames through `va2att.faces.tracking.FaceTracker`), align each face to the 56×56 grayscale template used in
preparation, take the centre 48×48 crop, and average the network's predictions for the crop and
its mirror image (as `evaluate` does). Faces from many pictures are gathered into batches before
they go through the network.

Example:
    predictor = Predictor("runs/exp1")            # run folder, .keras file or SavedModel
    for face in predictor.predict("group.jpg"):
        print(face.box, face.valence, face.arousal, face.expression)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from va2att.config import FACE_SIZE
from va2att.faces.align import align_detection
from va2att.faces.detection import (
    PREDICT_SCALE_FACTOR,
    PREDICT_SMALLEST_FACE,
    FaceDetector,
)
from va2att.faces.images import ImageError, RGBImage, from_array, read_image
from va2att.faces.network_input import centre_crop, flip_average
from va2att.faces.tracking import DETECT_EVERY, FaceTracker
from va2att.serving.loading import load_inference_model
from va2att.serving.provenance import read_provenance, warn_if_synthetic
from va2att.serving.signature import PROBABILITIES, SCORE, outputs_of_kind
from va2att.util.checks import check_positive_int

_FLUSH_PENDING_BYTES = 512 * 2**20  # with keep_images, run the network once held pictures reach this size


@dataclass
class FaceResult:
    """One face: where it is and what the network says about it.

    `box` is (x, y, width, height) and `landmarks` five (x, y) points (eyes, nose, mouth
    corners, in the detector's order), both in the coordinates of the picture as read (after
    EXIF rotation). `scores` holds every score output of the model (`va2att.serving.signature`:
    `valence` and `arousal`, in [-1, 1]), by name and in the served order; `valence` and `arousal`
    read it (None when the model has no such output). `expression` is the most probable class
    name, `probabilities` maps every class name to its probability; both are empty (None, -1, {})
    for a model without expression output.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)
    expression: str | None = None
    expression_index: int = -1
    probabilities: dict[str, float] = field(default_factory=dict)

    @property
    def valence(self) -> float | None:
        return self.scores.get("valence")

    @property
    def arousal(self) -> float | None:
        return self.scores.get("arousal")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: box, landmarks, confidence, each served score by name (None when the model
        lacks it), then expression, expression_index and probabilities."""
        scores = {output.name: self.scores.get(output.name) for output in outputs_of_kind(SCORE)}
        return {"box": list(self.box), "landmarks": [list(p) for p in self.landmarks], "confidence": self.confidence,
                **scores, **self.scores, "expression": self.expression, "expression_index": self.expression_index,
                "probabilities": dict(self.probabilities)}


@dataclass
class ImageResult:
    """All faces of one picture, or one sampled video frame.

    `source` names the picture (its path, or a caller-given name), `frame` is the frame index for
    a video frame and None otherwise. A picture without a face has `faces == []` and a `note`;
    a picture that could not be read has an `error` and no faces. `image` holds the decoded RGB
    picture only when asked for (`iter_predict(..., keep_images=True)`), e.g. to draw on it.
    """

    source: str
    frame: int | None = None
    faces: list[FaceResult] = field(default_factory=list)
    note: str | None = None
    error: str | None = None
    image: RGBImage | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, without the picture itself."""
        return {
            "source": self.source,
            "frame": self.frame,
            "faces": [face.to_dict() for face in self.faces],
            "note": self.note,
            "error": self.error,
        }


@dataclass
class Frame:
    """A picture already decoded (e.g. a video frame), or the reason it could not be.

    `image` is an `RGBImage` or an RGB uint8 array; when it is None, `error` says why and the
    predictor reports it as an unreadable item.
    """

    source: str
    frame: int | None = None
    image: RGBImage | np.ndarray | None = None
    error: str | None = None


def _as_image(item) -> RGBImage:
    if isinstance(item, RGBImage):
        return item
    if isinstance(item, np.ndarray):
        return from_array(item, order="rgb")
    return read_image(item)


class Predictor:
    """Face detection, alignment and the valence/arousal/expression network in one object.

    Args:
        model_path: str or Path: a run folder, a `.keras` file, a SavedModel folder or an export
            root (anything `va2att.serving.loading.load_inference_model` accepts).
        detector: a `FaceDetector` (or any object with `detect(RGBImage) -> list[Detection]`
            in original-image coordinates); default: `FaceDetector(min_confidence=min_confidence,
            smallest_face=smallest_face, scale_factor=PREDICT_SCALE_FACTOR)`, which detects on a copy
            reduced to at most 1024 pixels on the longer side and so that a face `smallest_face`
            pixels wide is MTCNN's smallest. `FaceDetector()` searches the whole 1024-pixel copy.
        min_confidence: float, detections below this confidence are dropped.
        batch_size: int, faces per network call (each face goes in with its mirror image, so a
            call holds twice as many inputs).
        smallest_face: int, smallest face searched for, in pixels of the picture (default
            `PREDICT_SMALLEST_FACE`); only for the default detector.
        detect_every: int, video frames (`Frame`s with a frame index, in order) are searched
            whole once every this many frames and at every lost face; in between the faces of the
            previous frame are searched again around where they were (`FaceTracker`). 1 searches
            every frame whole. Needs a detector with `detect_pixels` (as `FaceDetector`).

    Faces are aligned from the picture as decoded, not the detector's reduced copy
    (`align_detection`: five points, or the box when the points are unusable), and listed most
    confident first. Boxes and landmarks are in the coordinates of the picture
    as read, after EXIF rotation, even when `read_image` decoded it reduced (`RGBImage.scale`).

    Numpy arrays given to `predict` / `predict_many` are taken as RGB uint8 [H, W, 3] (or
    [H, W] grayscale, [H, W, 4] RGBA); convert OpenCV's BGR frames with
    `from_array(frame, order="bgr")` first.
    """

    def __init__(
        self,
        model_path,
        *,
        detector=None,
        min_confidence: float = 0.9,
        batch_size: int = 64,
        smallest_face: int | None = None,
        detect_every: int = DETECT_EVERY,
    ):
        check_positive_int("batch_size", batch_size)
        check_positive_int("detect_every", detect_every)  # also for a detector without a tracker
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1]. Received: min_confidence={min_confidence!r}.")
        if detector is not None and smallest_face is not None:
            raise ValueError("smallest_face sets the default detector; give it to your detector instead. "
                             f"Received: detector={detector!r}, smallest_face={smallest_face!r}")
        self.model_path = model_path
        self.model = load_inference_model(model_path)
        self.provenance = read_provenance(model_path)  # where the model comes from (va2att.serving.provenance)
        warn_if_synthetic(model_path, self.provenance or {})  # photos are never the synthetic set
        self.min_confidence = float(min_confidence)
        if detector is None:
            detector = FaceDetector(min_confidence=self.min_confidence, scale_factor=PREDICT_SCALE_FACTOR,
                                    smallest_face=PREDICT_SMALLEST_FACE if smallest_face is None else smallest_face)
        self.detector = detector
        self.detect_every = detect_every
        self.tracker = FaceTracker(detector, detect_every=detect_every) if hasattr(detector, "detect_pixels") else None
        self._video: tuple[str, int] | None = None  # (source, frame) of the last video frame the tracker saw
        self.batch_size = batch_size
        self.outputs = tuple(self.model.outputs)
        self.scores = tuple(output.name for output in outputs_of_kind(SCORE, self.outputs))
        probabilities = outputs_of_kind(PROBABILITIES, self.outputs)
        self.class_output = probabilities[0].name if probabilities else None  # FaceResult holds one: expression
        num_classes = getattr(self.model, "num_classes", None) or 0
        self.class_names = tuple(probabilities[0].classes[:num_classes]) if probabilities else ()

    # === Public API ===

    def predict(self, image_or_path) -> list[FaceResult]:
        """Faces of one picture: a path, an `RGBImage` or an RGB numpy array.

        Raises `ImageError` if a path cannot be read. A picture without faces gives [].
        """
        image = _as_image(image_or_path)
        detections = self.detect(image)
        predictions = self._network(np.stack([self.align(image, d) for d in detections])) if detections else []
        return [self._face_result(d, p) for d, p in zip(detections, predictions)]

    def predict_many(self, items: Iterable) -> list[ImageResult]:
        """`ImageResult`s for many pictures, in order; all their faces go through the network in batches.

        Items are paths, `RGBImage`s, RGB numpy arrays or `Frame`s. An unreadable item gives a
        result with `error` set and does not stop the others.
        """
        return list(self.iter_predict(items))

    def iter_predict(self, items: Iterable, *, keep_images: bool = False) -> Iterator[ImageResult]:
        """Like `predict_many`, but yields results as their batch completes (for long or streamed inputs).

        The network runs when `batch_size` faces or `batch_size` pictures are waiting (or, with
        `keep_images`, 512 MB of pictures), so memory stays bounded for any number of items.
        With `keep_images=True` each result carries its decoded picture in `.image`.
        """
        pending: list[tuple[ImageResult, list, int]] = []  # result, detections, index of its first crop
        crops: list[np.ndarray] = []
        held_bytes = 0
        for item in items:
            result, image, detections, faces = self._prepare_item(item)
            if result.error is None and not detections:
                result.note = "no face found"
            if keep_images:
                result.image = image
                held_bytes += image.pixels.nbytes if image is not None else 0
            pending.append((result, detections, len(crops)))
            crops.extend(faces)
            if len(crops) >= self.batch_size or len(pending) >= self.batch_size or held_bytes >= _FLUSH_PENDING_BYTES:
                yield from self._finish(pending, crops)
                pending, crops, held_bytes = [], [], 0
        yield from self._finish(pending, crops)

    def detect(self, image: RGBImage) -> list:
        """Detections at or above `min_confidence`, in the original coordinates of `image`."""
        return self._confident(self.detector.detect(image))

    def detect_frame(self, image: RGBImage, source: str, frame: int) -> list:
        """Like `detect`, for frame `frame` of video `source`: tracked from the previous frame when it
        is an earlier frame of the same video (see `detect_every`), else searched whole."""
        if self.tracker is None or self.detect_every == 1:
            return self.detect(image)
        if self._video is None or self._video[0] != source or frame <= self._video[1]:
            self.tracker.reset()
        self._video = (source, frame)
        return self._confident(self.tracker.detect(image))

    def align(self, image: RGBImage, detection) -> np.ndarray:
        """The network input for one detection: the aligned 56×56 face, centre-cropped to 48×48, uint8."""
        face = np.asarray(align_detection(image, detection, size=FACE_SIZE))
        face = face[..., :1] if face.ndim == 3 else face[..., None]  # one channel, channels last
        return centre_crop(face)[..., 0]

    # === Internals ===

    def _prepare_item(self, item):
        """Read (if needed), detect and align one item: (result, image or None, detections, crops)."""
        source, frame = _describe(item)
        result = ImageResult(source=source, frame=frame)
        try:
            if isinstance(item, Frame):
                if item.image is None:
                    result.error = item.error or "no picture"
                    return result, None, [], []
                image = _as_image(item.image)
            else:
                image = _as_image(item)
            if isinstance(item, Frame) and item.frame is not None:
                detections = self.detect_frame(image, item.source, item.frame)
            else:
                detections = self.detect(image)
            return result, image, detections, [self.align(image, d) for d in detections]
        except ImageError as exc:
            result.error = str(exc)
        except (OSError, ValueError, cv2.error) as exc:
            result.error = f"{type(exc).__name__}: {exc}"
        return result, None, [], []

    def _confident(self, detections) -> list:
        return [d for d in detections if float(d.confidence) >= self.min_confidence]

    def _network(self, crops: np.ndarray) -> list[dict[str, np.ndarray]]:
        """Per-face predictions for uint8 crops [N, 48, 48], averaged over each crop and its mirror."""
        outputs: dict[str, list[np.ndarray]] = {name: [] for name in self.outputs}
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start : start + self.batch_size].astype(np.float32)[..., None]
            averaged = flip_average(self.model, chunk)
            for name in self.outputs:
                outputs[name].append(averaged[name].reshape(len(chunk), -1))
        merged = {name: np.concatenate(parts, axis=0) for name, parts in outputs.items()}
        return [{name: values[i] for name, values in merged.items()} for i in range(len(crops))]

    def _finish(self, pending, crops) -> Iterator[ImageResult]:
        if not pending:
            return
        predictions = self._network(np.stack(crops)) if crops else []
        for result, detections, first in pending:
            result.faces = [
                self._face_result(d, predictions[first + k]) for k, d in enumerate(detections)
            ]
            yield result

    def _face_result(self, detection, prediction: dict[str, np.ndarray]) -> FaceResult:
        face = FaceResult(
            box=tuple(float(v) for v in detection.box),
            landmarks=tuple((float(x), float(y)) for x, y in np.asarray(detection.points5).reshape(-1, 2)),
            confidence=float(detection.confidence),
            scores={name: float(np.clip(prediction[name].reshape(-1)[0], -1.0, 1.0)) for name in self.scores},
        )
        if self.class_output and self.class_names:
            probabilities = prediction[self.class_output].reshape(-1)[: len(self.class_names)]
            face.expression_index = int(np.argmax(probabilities))
            face.expression = self.class_names[face.expression_index]
            face.probabilities = {name: float(p) for name, p in zip(self.class_names, probabilities)}
        return face


def _describe(item) -> tuple[str, int | None]:
    if isinstance(item, Frame):
        return item.source, item.frame
    if isinstance(item, (str, os.PathLike)):
        return str(Path(item)), None
    if isinstance(item, RGBImage):
        return getattr(item, "source", None) or "<image>", None
    return "<array>", None
