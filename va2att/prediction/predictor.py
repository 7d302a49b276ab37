"""Valence, arousal and expression for every face in ordinary pictures.

`Predictor` runs the whole inference path on photos: read the picture (EXIF orientation,
grayscale and RGBA handled by `va2att.faces.images.read_image`), detect faces with MTCNN
(`va2att.faces.detection.FaceDetector`, on a copy reduced so that the smallest face searched for
is MTCNN's smallest; consecutive video frames through `va2att.faces.tracking.FaceTracker`), align each face to the 56×56 grayscale template used in
preparation, take the centre 48×48 crop, and average the network's predictions for the crop and
its mirror image (as `evaluate` does). Faces from many pictures are gathered into batches before
they go through the network. `iter_video` reads a video's frames with their times
(`va2att.prediction.video`), gives every face a track id and, on request, smoothed values, and
yields the results as their batch completes, so a video of any length takes the same memory.

Example:
    predictor = Predictor("runs/exp1")            # run folder, .keras file or SavedModel
    for face in predictor.predict("group.jpg"):
        print(face.box, face.valence, face.arousal, face.expression)
    for frame in predictor.iter_video("clip.mp4", every_seconds=0.5, smooth=1.0):
        print(frame.time, [(face.track, face.smoothed_scores["valence"]) for face in frame.faces])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

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
from va2att.faces.tracking import DETECT_EVERY, FaceTracker, TrackedFace
from va2att.prediction import video
from va2att.prediction.results import FaceResult, Frame, ImageResult
from va2att.serving.loading import load_inference_model
from va2att.serving.provenance import read_provenance, warn_if_synthetic
from va2att.serving.signature import PROBABILITIES, SCORE, outputs_of_kind
from va2att.util.checks import check_positive_int

__all__ = ["FaceResult", "Frame", "ImageResult", "Predictor"]  # the results live in va2att.prediction.results

_FLUSH_PENDING_BYTES = 512 * 2**20  # with keep_images, run the network once held pictures reach this size


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
            previous frame are refined where they were (`FaceTracker`). 1 searches
            every frame whole (the only choice for a detector without `refine_pixels`). Either way
            every face of a video gets a track id (`FaceResult.track`) that it keeps while it is followed.
        runtime: str, what runs an export: "auto" (without a GPU its LiteRT model, else its SavedModel),
            "savedmodel" or "litert" (`va2att.serving.loading`).

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
        runtime: str = "auto",
    ):
        check_positive_int("batch_size", batch_size)
        check_positive_int("detect_every", detect_every)  # also for a detector without a tracker
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1]. Received: min_confidence={min_confidence!r}.")
        if detector is not None and smallest_face is not None:
            raise ValueError("smallest_face sets the default detector; give it to your detector instead. "
                             f"Received: detector={detector!r}, smallest_face={smallest_face!r}")
        self.model_path = model_path
        self.model = load_inference_model(model_path, runtime=runtime)
        self.provenance = read_provenance(model_path)  # where the model comes from (va2att.serving.provenance)
        warn_if_synthetic(model_path, self.provenance or {})  # photos are never the synthetic set
        self.min_confidence = float(min_confidence)
        if detector is None:
            detector = FaceDetector(min_confidence=self.min_confidence, scale_factor=PREDICT_SCALE_FACTOR,
                                    smallest_face=PREDICT_SMALLEST_FACE if smallest_face is None else smallest_face)
        self.detector = detector
        self.detect_every = detect_every
        self.tracker = FaceTracker(detector, detect_every=detect_every if hasattr(detector, "refine_pixels") else 1)
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
        pending: list[tuple[ImageResult, list, int]] = []  # result, (detection, track)s, index of its first crop
        crops: list[np.ndarray] = []
        held_bytes = 0
        for item in items:
            result, image, detections, faces = self._prepare_item(item)
            if result.error is None and not detections and not result.lost_tracks:
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
        return [face.detection for face in self.track_frame(image, source, frame) if face.detection is not None]

    def track_frame(self, image: RGBImage, source: str, frame: int) -> list[TrackedFace]:
        """The tracks of video `source` in frame `frame` (`FaceTracker.track`): each open track with its face, or
        None where its face was not found or is below `min_confidence`. A frame that is not a later frame
        of the same video as the last one starts a new video (tracks from 1)."""
        if self._video is None or self._video[0] != source or frame <= self._video[1]:
            self.tracker.reset()
        self._video = (source, frame)
        return [face if face.detection is None or float(face.detection.confidence) >= self.min_confidence
                else TrackedFace(face.track, None) for face in self.tracker.track(image)]

    def iter_video(self, path, *, every: int = 1, every_seconds: float | None = None, start: float = 0.0,
                   smooth: float | None = None, keep_images: bool = False) -> Iterator[ImageResult]:
        """Results of a video's sampled frames, in order, as their batch completes (memory does not grow with length).

        Args:
            path: a video file OpenCV can read.
            every: int, analyse frames 0, every, 2·every, ...; every_seconds: float, instead the first frame at
                or after each multiple of this many seconds.
            start: float, begin at the first frame at or after this time (seconds).
            smooth: float, add to each face the causal mean of its valence, arousal and expression
                probabilities over its track's last `smooth` seconds (`smoothed_scores`, `smoothed_probabilities`).
            keep_images: bool, each result carries its decoded frame in `.image`.
        Each `ImageResult` has `frame` (index), `time` (seconds, the container's presentation time),
        faces with their `track` ids and `lost_tracks`; a video that cannot be read gives one result with
        `error`, a truncated one a last result saying how many frames were read.
        """
        check_positive_int("every", every)
        if every_seconds is not None and not every_seconds > 0:
            raise ValueError(f"every_seconds must be > 0. Received: every_seconds={every_seconds!r}")
        frames = video.read_video(path, every, every_seconds=every_seconds, start=start)
        return self.iter_frames(frames, smooth=smooth, keep_images=keep_images)

    def iter_frames(self, frames: Iterable[Frame], *, smooth: float | None = None,
                    keep_images: bool = False) -> Iterator[ImageResult]:
        """`iter_predict` over a video's `Frame`s (e.g. a live stream's, with `frame` and `time` set), smoothed
        per track with `smooth` seconds (see `iter_video`)."""
        results = self.iter_predict(frames, keep_images=keep_images)
        return video.smooth_results(results, smooth) if smooth is not None else results

    def align(self, image: RGBImage, detection) -> np.ndarray:
        """The network input for one detection: the aligned 56×56 face, centre-cropped to 48×48, uint8."""
        face = np.asarray(align_detection(image, detection, size=FACE_SIZE))
        face = face[..., :1] if face.ndim == 3 else face[..., None]  # one channel, channels last
        return centre_crop(face)[..., 0]

    # === Internals ===

    def _prepare_item(self, item):
        """Read (if needed), detect and align one item: (result, image or None, (detection, track id or None)s,
        crops); a video frame's result also gets its time and the tracks not found in it."""
        source, frame = _describe(item)
        result = ImageResult(source=source, frame=frame, time=item.time if isinstance(item, Frame) else None)
        try:
            if isinstance(item, Frame):
                if item.image is None:
                    result.error = item.error or "no picture"
                    return result, None, [], []
                image = _as_image(item.image)
            else:
                image = _as_image(item)
            if isinstance(item, Frame) and item.frame is not None:
                tracked = self.track_frame(image, item.source, item.frame)
                detections = [(t.detection, t.track) for t in tracked if t.detection is not None]
                result.lost_tracks = [t.track for t in tracked if t.detection is None]
            else:
                detections = [(d, None) for d in self.detect(image)]
            return result, image, detections, [self.align(image, d) for d, _ in detections]
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
                self._face_result(d, predictions[first + k], track) for k, (d, track) in enumerate(detections)
            ]
            yield result

    def _face_result(self, detection, prediction: dict[str, np.ndarray], track: int | None = None) -> FaceResult:
        face = FaceResult(
            box=tuple(float(v) for v in detection.box),
            landmarks=tuple((float(x), float(y)) for x, y in np.asarray(detection.points5).reshape(-1, 2)),
            confidence=float(detection.confidence),
            scores={name: float(np.clip(prediction[name].reshape(-1)[0], -1.0, 1.0)) for name in self.scores},
            track=track,
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
