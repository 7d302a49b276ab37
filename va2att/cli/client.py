"""Command-line client of a TF Serving instance that serves the exported va2att model.

    python -m va2att.serving.client photo.jpg group.png [--url http://127.0.0.1:8501] [--model va2att]
    python -m va2att.serving.client face_56x56.png --aligned          # faces already aligned: no detection
    python -m va2att.serving.client photo.jpg --grpc 127.0.0.1:8500   # needs the extra: pip install 'va2att[grpc]'

Faces are found and aligned with the same code as preparation and `predict` (MTCNN, five-point
similarity alignment to 56 x 56 grayscale, centre 48 x 48 crop), then ALL faces of all images go to
the server in ONE predict request (REST row format, see `va2att.serving.request`; the call itself is
`va2att.serving.remote`). One line is printed per face. A server error, a refused connection or a
timeout is reported in one line on stderr and the exit status is 1 (2 for bad arguments).
`--timeout` bounds the whole request (connecting, sending, reading), so a server that trickles its
answer cannot hold the client; the URL (http or https only, host, numeric port) and the timeout are
checked before anything is read.
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
from va2att.config import EXPRESSION_NAMES, FACE_SIZE, INPUT_SIZE
from va2att.faces.network_input import aligned_face, prepare_faces
from va2att.serving.remote import post_predict, predict_grpc
from va2att.serving.request import ServingError, build_predict_body, predict_url

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
    already 48 x 48). Otherwise every face MTCNN finds is aligned. Unreadable files and images without a
    face are reported through `log` and skipped.
    """
    from va2att.faces.images import ImageError, read_image

    log = log or (lambda message: print(message, file=sys.stderr))
    faces, where = [], []
    for path in paths:
        try:
            image = read_image(path)
        except ImageError as error:
            log(f"{path}: skipped ({error})")
            continue
        if aligned:
            faces.append(aligned_face(image.pixels))
            where.append(Face(str(path), 0, None))
            continue
        from va2att.faces.align import FaceDetector, align_detection

        detector = detector or FaceDetector()
        detections = detector.detect(image)
        if not detections:
            log(f"{path}: no face found")
        for index, detection in enumerate(detections):
            faces.append(align_detection(image, detection, FACE_SIZE))
            where.append(Face(str(path), index, tuple(round(float(v), 1) for v in detection.box)))
    if not faces:
        return np.zeros((0, INPUT_SIZE, INPUT_SIZE, 1), np.float32), []
    return np.concatenate([prepare_faces(f[None]) for f in faces]), where


def format_face(face: Face, outputs: dict[str, np.ndarray], i: int) -> str:
    parts = [f"{face.path}", f"face {face.index + 1}"]
    for name in ("valence", "arousal"):
        if name in outputs:
            parts.append(f"{name} {float(np.ravel(outputs[name][i])[0]):+.3f}")
    if "expression" in outputs:
        probs = np.ravel(outputs["expression"][i])
        k = int(np.argmax(probs))
        label = EXPRESSION_NAMES[k] if k < len(EXPRESSION_NAMES) else str(k)
        parts.append(f"expression {label} ({probs[k]:.2f})")
    return "  ".join(parts)


def _face_json(face: Face, outputs: dict[str, np.ndarray], i: int) -> dict:
    record = {"image": face.path, "face": face.index, "box": face.box}
    for name, value in outputs.items():
        flat = np.ravel(value[i]).astype(float)
        record[name] = float(flat[0]) if name in ("valence", "arousal") else flat.tolist()
    if "expression" in outputs:
        k = int(np.argmax(outputs["expression"][i]))
        record["expression_label"] = EXPRESSION_NAMES[k] if k < len(EXPRESSION_NAMES) else str(k)
    return record


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
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for the answer")
    parser.add_argument("--grpc", metavar="HOST:PORT", help="use gRPC at this address (e.g. 127.0.0.1:8500) instead of REST")
    parser.add_argument("--aligned", action="store_true", help="each image is one aligned face (56x56 or 48x48); no detection")
    parser.add_argument("--json", action="store_true", help="print one JSON object per face instead of text")
    return parser


def main(argv=None) -> int:
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
    try:
        if args.grpc:
            outputs = predict_grpc(args.grpc, args.model, images, args.timeout)
        else:
            outputs = post_predict(url, build_predict_body(images), args.timeout)
            from va2att.serving.provenance import served_provenance, warn_if_synthetic

            warn_if_synthetic(f"the served model {args.model!r}", served_provenance(url, args.timeout) or {})
        counts = {name: len(value) for name, value in outputs.items()}
        if any(count != len(faces) for count in counts.values()):
            raise ServingError(f"The server answered for {counts} faces; {len(faces)} were sent.")
    except ServingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for i, face in enumerate(faces):
        print(json.dumps(_face_json(face, outputs, i)) if args.json else format_face(face, outputs, i))
    return 0


if __name__ == "__main__":
    sys.exit(main())
