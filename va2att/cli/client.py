"""Command-line client of a TF Serving instance that serves the exported va2att model.

    python -m va2att.serving.client photo.jpg group.png [--url http://127.0.0.1:8501] [--model va2att]
    python -m va2att.serving.client face_56x56.png --aligned          # faces already aligned: no detection
    python -m va2att.serving.client photo.jpg --grpc 127.0.0.1:8500   # needs the extra: pip install 'va2att[grpc]'

Faces are found and aligned with the same code as preparation and `predict` (MTCNN, five-point
similarity alignment to 56 x 56 grayscale, centre 48 x 48 crop), then ALL faces of all images go to
the server in ONE predict request (REST row format, see `va2att.serving.request`; the call itself is
`va2att.serving.remote`). One line is printed per face, with every served output
(`va2att.serving.signature`). A server error, a refused connection, a timeout or an answer that does
not fit the served outputs is reported in one line on stderr and the exit status is 1 (2 for bad
arguments). `--timeout` is one deadline for everything the client sends and reads (the predict call
and the follow-up question for the model's provenance), so a server that trickles an answer cannot
hold the client; answers are read up to a bound, redirects are not followed, and the URL (http or
https only, host, numeric port) and the timeout are checked before anything is read. The predictions
are printed once they have arrived, whatever the provenance question gives.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from va2att.cli import program_name
from va2att.config import FACE_SIZE, INPUT_SIZE
from va2att.faces.network_input import aligned_face, prepare_faces
from va2att.serving.remote import (
    Deadline,
    grpc_provenance,
    post_predict,
    predict_grpc,
    served_provenance,
)
from va2att.serving.request import ServingError, build_predict_body, predict_url
from va2att.serving.signature import PROBABILITIES, SCORE, TEXT, served_output

DEFAULT_URL = "http://127.0.0.1:8501"
DEFAULT_MODEL = "va2att"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Face:
    """Where a face came from: image path, index in that image (0 = most confident) and box (x, y, w, h)."""

    path: str
    index: int
    box: tuple[float, float, float, float] | None


def find_faces(paths, *, aligned: bool = False, detector=None, log=None) -> tuple[np.ndarray, list[Face]]:
    """Read images and return (float32 `[N, 48, 48, 1]` model inputs, one `Face` per input).

    With `aligned`, each file is one aligned face (any size; converted to 56 x 56 grayscale unless it is
    already 48 x 48). Otherwise every face MTCNN finds is aligned. Unreadable or unusable files and images
    without a face are reported through `log` and skipped.
    """
    import cv2

    from va2att.faces.align import align_detection
    from va2att.faces.images import ImageError, read_image
    from va2att.util.interrupt import deferred_interrupt

    log = log or (lambda message: print(message, file=sys.stderr))
    faces, where = [], []
    with deferred_interrupt() as interrupt:  # Ctrl-C between two images, never inside the detector's ops
        for path in paths:
            interrupt.check()
            try:
                image = read_image(path)
                if aligned:
                    found = [(aligned_face(image.pixels), Face(str(path), 0, None))]
                else:
                    detector = detector or _detector()
                    found = [(align_detection(image, d, FACE_SIZE),
                              Face(str(path), i, tuple(round(float(v), 1) for v in d.box)))
                             for i, d in enumerate(detector.detect(image))]
            except (ImageError, ValueError, cv2.error) as error:  # one unusable image costs that image
                log(f"{path}: skipped ({error})")
                continue
            if not found:
                log(f"{path}: no face found")
            faces.extend(face for face, _ in found)
            where.extend(place for _, place in found)
        interrupt.check()
    if not faces:
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 1), np.float32), []
    return np.concatenate([prepare_faces(f[None]) for f in faces]), where


def _label(output, probabilities: np.ndarray) -> tuple[str, int]:
    k = int(np.argmax(probabilities))
    return (output.classes[k] if k < len(output.classes) else str(k)), k


def format_face(face: Face, outputs: dict[str, np.ndarray], i: int) -> str:
    """One text line: where the face is, then each served output (a score signed, probabilities as the top class)."""
    parts = [f"{face.path}", f"face {face.index + 1}"]
    for name, value in outputs.items():
        output = served_output(name)
        if output.kind == SCORE:
            parts.append(f"{name} {float(value[i, 0]):+.3f}")
        elif output.kind == PROBABILITIES:
            label, k = _label(output, value[i])
            parts.append(f"{name} {label} ({value[i, k]:.2f})")
        elif output.kind == TEXT and value[i]:
            parts.append(f"{name} {value[i]}")
    return "  ".join(parts)


def _face_json(face: Face, outputs: dict[str, np.ndarray], i: int) -> dict:
    record = {"image": face.path, "face": face.index, "box": face.box}
    for name, value in outputs.items():
        output = served_output(name)
        if output.kind == SCORE:
            record[name] = float(value[i, 0])
        elif output.kind == PROBABILITIES:
            record[name] = value[i].astype(float).tolist()
            record[f"{name}_label"] = _label(output, value[i])[0]
        else:
            record[name] = str(value[i])
    return record


def _detector():
    from va2att.faces.detection import FaceDetector

    return FaceDetector()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("va2att.serving.client"),
        description="Valence, arousal and expression of the faces in images, from a TF Serving instance "
        "serving the exported va2att model (one predict request for all faces).",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files (photos, or aligned faces with --aligned)")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"TF Serving REST address (default {DEFAULT_URL})")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"served model name (default {DEFAULT_MODEL})")
    parser.add_argument("--version", type=int, help="model version to query (default: the newest served)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help=f"seconds for the whole exchange with the server (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC at this address (e.g. 127.0.0.1:8500) instead of REST")
    parser.add_argument("--aligned", action="store_true", help="each image is one aligned face (56x56 or 48x48); no detection")
    parser.add_argument("--json", action="store_true", help="print one JSON object per face instead of text")
    return parser


def main(argv=None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while reading images, finding faces or waiting for the server
        print("interrupted: nothing was printed for the faces", file=sys.stderr)
        return 130


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        print(f"error: --timeout must be a positive number of seconds. Received: {args.timeout}", file=sys.stderr)
        return 2
    try:
        url = None if args.grpc else predict_url(args.url, args.model, args.version)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if not args.aligned:  # face detection (MTCNN) loads TensorFlow
        from va2att.util.quiet import quiet_tensorflow

        quiet_tensorflow()
    images, faces = find_faces(args.images, aligned=args.aligned)
    if not faces:
        print("error: no face to send (no face found in the given images)", file=sys.stderr)
        return 1
    deadline = Deadline(args.timeout)  # for everything sent and read from here on
    try:
        if args.grpc:
            outputs = predict_grpc(args.grpc, args.model, images, deadline, version=args.version)
        else:
            outputs = post_predict(url, build_predict_body(images), deadline, count=len(faces))
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _warn_about_provenance(args, url, deadline)
    for i, face in enumerate(faces):
        print(json.dumps(_face_json(face, outputs, i)) if args.json else format_face(face, outputs, i))
    return 0


def _warn_about_provenance(args, url: str | None, deadline) -> None:
    """Warn when the served model learnt synthetic faces (`va2att.serving.provenance`), over REST or gRPC; the
    question is asked within what is left of the deadline, and a failed one is one line that leaves the
    predictions standing."""
    from va2att.serving.provenance import warn_if_synthetic

    try:
        if args.grpc:
            record = grpc_provenance(args.grpc, args.model, deadline, version=args.version)
        else:
            record = served_provenance(url, deadline)
    except ServingError as error:
        print(f"warning: the served model's provenance is unknown: {error}", file=sys.stderr)
        return
    warn_if_synthetic(f"the served model {args.model!r}", record or {})


if __name__ == "__main__":
    sys.exit(main())
