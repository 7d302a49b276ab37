"""Valence, arousal and expression of the faces in photos, folders and videos.

    python -m va2att.predict photo.jpg album/ "shots/*.png" clip.mp4 --model runs/exp1 \\
        [--every 10] [--detect-every 5] [--smallest-face 32] [--json out.json] [--csv out.csv] [--annotate annotated/] [--plot va.png]

PATHs are image files, folders (searched recursively for image and video files), glob patterns
or video files (one frame in every `--every` is analysed; faces are searched in the whole frame once
every `--detect-every` analysed frames and followed in between). `--model` is a run folder, a `.keras`
file, a SavedModel or an export root. A table of faces is printed; `--json` / `--csv` keep every
result (one CSV row per face; a picture without a face or an unreadable file gets one row with a
note or an error), `--annotate` writes each picture or sampled frame with its faces drawn,
`--plot` places every face on the valence-arousal circumplex.

Exit status: 0 when at least one picture was read (pictures without faces included), 1 when no
input could be read at all, 2 when the model cannot be loaded or the arguments are wrong.
"""

from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from va2att.faces.detection import PREDICT_SMALLEST_FACE
from va2att.faces.tracking import DETECT_EVERY
from va2att.util.fileio import write_text

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
_GLOB_CHARS = frozenset("*?[")


def build_parser() -> argparse.ArgumentParser:
    from va2att.cli import program_name
    parser = argparse.ArgumentParser(
        prog=program_name("va2att.cli.predict"),
        description="Valence, arousal and expression of every face in images, folders and videos.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image or video files, folders, or glob patterns")
    parser.add_argument("--model", required=True, help="run folder, .keras file, SavedModel folder or export root")
    parser.add_argument("--every", type=int, default=10, metavar="N", help="analyse one video frame in N (default 10)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write one row per face (and per faceless picture)")
    parser.add_argument("--annotate", type=Path, metavar="DIR", help="write each picture / sampled frame with faces drawn")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="plot every face on the valence-arousal circumplex")
    parser.add_argument("--min-confidence", type=float, default=0.9, metavar="C",
                        help="drop face detections below this confidence (default 0.9)")
    parser.add_argument("--smallest-face", type=int, default=PREDICT_SMALLEST_FACE, metavar="PX",
                        help="smallest face searched for, in pixels of the picture; smaller is slower "
                             f"(default {PREDICT_SMALLEST_FACE}; 0 searches the picture reduced to 1024 pixels)")
    parser.add_argument("--detect-every", type=int, default=DETECT_EVERY, metavar="K",
                        help="video: search the whole frame once every K analysed frames and follow the faces "
                             f"in between (default {DETECT_EVERY}; 1 = search every frame)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B", help="faces per network call (default 64)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's own start-up and log lines (also: VA2ATT_VERBOSE=1)")
    return parser


# === Inputs ===


def _kind(path: Path) -> str:
    return "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image"


def expand_paths(paths) -> list[tuple[str, Path]]:
    """(kind, path) for every input: kind is "image", "video" or "missing".

    Folders are searched recursively for files with image or video extensions (sorted); a
    pattern containing * ? [ that is not an existing file is expanded with `glob` (** allowed).
    An explicitly named file is taken whatever its extension; one that does not exist is "missing".
    """
    found: list[tuple[str, Path]] = []
    for item in paths:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if child.suffix.lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS:
                    found.append((_kind(child), child))
        elif path.exists():
            found.append((_kind(path), path))
        elif _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text, recursive=True))
            if not matches:
                found.append(("missing", path))
            for match in matches:
                m = Path(match)
                if m.is_dir():
                    found.extend(expand_paths([match]))
                elif m.is_file():
                    found.append((_kind(m), m))
        else:
            found.append(("missing", path))
    return found


def video_frame_count(path: Path) -> int:
    """Frame count reported by the container (0 when unknown)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    try:
        return max(0, int(capture.get(cv2.CAP_PROP_FRAME_COUNT))) if capture.isOpened() else 0
    finally:
        capture.release()


def video_frames(path: Path, every: int) -> Iterator:
    """`Frame`s 0, every, 2·every, ... of a video, decoded with OpenCV and converted from BGR.

    A video that cannot be opened or decoded yields a single `Frame` with an error.
    """
    import cv2

    from va2att.faces.images import from_array
    from va2att.prediction.predictor import Frame

    source = str(path)
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        yield Frame(source, error=f"{source}: cannot open as a video")
        return
    index = 0
    sampled = 0
    try:
        while capture.grab():
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    sampled += 1
                    yield Frame(source, frame=index, image=from_array(bgr, order="bgr"))
                else:
                    yield Frame(source, frame=index, error=f"{source}: frame {index} cannot be decoded")
            index += 1
    finally:
        capture.release()
    if index == 0:
        yield Frame(source, error=f"{source}: no frame could be decoded")


def _items(inputs, every: int) -> Iterator:
    from va2att.prediction.predictor import Frame

    for kind, path in inputs:
        if kind == "missing":
            yield Frame(str(path), error=f"{path}: no such file or pattern")
        elif kind == "video":
            yield from video_frames(path, every)
        else:
            yield path


def _expected_count(inputs, every: int) -> int:
    total = 0
    for kind, path in inputs:
        if kind == "video":
            total += max(1, math.ceil(video_frame_count(path) / every))
        else:
            total += 1
    return total


# === Outputs ===


def _fmt(value, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def format_table(results) -> str:
    """A plain-text table: one line per face, one per picture without a face or unreadable."""
    header = ("source", "frame", "face", "box x,y,w,h", "conf", "valence", "arousal", "expression")
    rows = []
    for r in results:
        frame = "-" if r.frame is None else str(r.frame)
        if r.error is not None:
            rows.append((r.source, frame, "-", f"ERROR: {r.error}"))
        elif not r.faces:
            rows.append((r.source, frame, "-", r.note or "no face found"))
        for i, f in enumerate(r.faces, start=1):
            box = ",".join(str(round(v)) for v in f.box)
            expression = f"{f.expression} {f.probabilities.get(f.expression, 0.0):.2f}" if f.expression else "-"
            rows.append((r.source, frame, str(i), box, f"{f.confidence:.2f}", _fmt(f.valence, "+.3f"),
                         _fmt(f.arousal, "+.3f"), expression))
    full = [r for r in rows if len(r) == len(header)]
    widths = [max([len(h)] + [len(r[i]) for r in full]) for i, h in enumerate(header)]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def _csv_text(results, class_names) -> str:
    names = list(class_names)
    header = (["source", "frame", "face", "x", "y", "width", "height", "confidence", "valence", "arousal",
               "expression", "expression_index"] + [f"p_{n}" for n in names]
              + [f"landmark{i}_{axis}" for i in range(1, 6) for axis in ("x", "y")] + ["note", "error"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    blank_face = [""] * (len(header) - 5)
    for r in results:
        frame = "" if r.frame is None else r.frame
        if not r.faces:
            writer.writerow([r.source, frame, ""] + blank_face + [r.note or "", r.error or ""])
        for i, f in enumerate(r.faces, start=1):
            landmarks = [f"{c:.2f}" for point in f.landmarks for c in point]
            landmarks += [""] * (10 - len(landmarks))
            writer.writerow(
                [r.source, frame, i] + [f"{v:.2f}" for v in f.box] + [f"{f.confidence:.4f}",
                 _fmt(f.valence, ".4f", ""), _fmt(f.arousal, ".4f", ""), f.expression or "",
                 f.expression_index if f.expression else ""]
                + [f"{f.probabilities[n]:.4f}" if n in f.probabilities else "" for n in names]
                + landmarks + [r.note or "", r.error or ""]
            )
    return out.getvalue()


def _summary(results) -> dict:
    return {
        "items": len(results),
        "read": sum(r.error is None for r in results),
        "unreadable": sum(r.error is not None for r in results),
        "without_face": sum(r.error is None and not r.faces for r in results),
        "faces": sum(len(r.faces) for r in results),
    }


class _AnnotatedNames:
    """`<stem>_va.jpg` (or `<stem>_f<frame>_va.jpg`) in DIR, with a counter when two inputs share a name."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()

    def __call__(self, source: str, frame: int | None) -> Path:
        stem = Path(source).stem or "image"
        base = f"{stem}_f{frame:06d}_va" if frame is not None else f"{stem}_va"
        name, n = f"{base}.jpg", 1
        while name in self.used:
            n += 1
            name = f"{base}_{n}.jpg"
        self.used.add(name)
        return self.folder / name


# === Entry point ===


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every must be >= 1 (received {args.every})")
    if args.detect_every < 1:
        parser.error(f"--detect-every must be >= 1 (received {args.detect_every})")
    if args.smallest_face < 0:
        parser.error(f"--smallest-face must be >= 0 (received {args.smallest_face})")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1 (received {args.batch_size})")
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error(f"--min-confidence must be in [0, 1] (received {args.min_confidence})")

    inputs = expand_paths(args.paths)
    if not inputs:
        print("error: no image or video files found in the given paths", file=sys.stderr)
        return 1
    # Inputs and model are checked before TensorFlow and the model are loaded (seconds).
    missing = [str(path) for kind, path in inputs if kind == "missing"]
    if len(missing) == len(inputs):
        print(f"error: no such file or pattern: {', '.join(missing)}", file=sys.stderr)
        return 1
    from va2att.serving.loading import resolve_model_path

    try:
        resolve_model_path(args.model)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: cannot load the model from {args.model}: {exc}", file=sys.stderr)
        return 2

    from va2att.util.quiet import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    from tqdm import tqdm

    from va2att.prediction.annotate import left_to_right, write_annotated
    from va2att.prediction.predictor import Predictor

    try:
        predictor = Predictor(args.model, min_confidence=args.min_confidence, batch_size=args.batch_size,
                              smallest_face=args.smallest_face, detect_every=args.detect_every)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"error: cannot load the model from {args.model}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2

    names = _AnnotatedNames(args.annotate) if args.annotate else None
    results = []
    # The bar counts pictures as they are read and searched for faces (the slow part); the
    # network then runs on batches of faces.
    with tqdm(_items(inputs, args.every), total=_expected_count(inputs, args.every), unit="picture",
              file=sys.stderr, disable=None, dynamic_ncols=True) as progress:
        for result in predictor.iter_predict(progress, keep_images=names is not None):
            result.faces = left_to_right(result.faces)  # numbered left to right, in the table and the picture
            if names is not None and result.image is not None:
                try:
                    write_annotated(names(result.source, result.frame), result.image.pixels, result.faces,
                                    scale=result.image.scale)
                except (OSError, ValueError) as exc:
                    tqdm.write(f"warning: cannot write the annotated picture of {result.source}: {exc}",
                               file=sys.stderr)
            result.image = None
            results.append(result)

    print(format_table(results))
    summary = _summary(results)
    print(f"{summary['read']} of {summary['items']} picture(s) read, {summary['faces']} face(s), "
          f"{summary['without_face']} without a face, {summary['unreadable']} unreadable", file=sys.stderr)

    class_names = predictor.class_names
    if args.json:
        document = {"model": str(args.model), "summary": summary, "expression_names": list(class_names),
                    "results": [r.to_dict() for r in results]}
        write_text(args.json, json.dumps(document, indent=2) + "\n")
    if args.csv:
        write_text(args.csv, _csv_text(results, class_names))
    if args.plot:
        from va2att.evaluation.plots import circumplex

        faces = [(r, i, f) for r in results for i, f in enumerate(r.faces, 1)
                 if f.valence is not None and f.arousal is not None]
        labels = [f"{Path(r.source).stem}{'' if r.frame is None else f'@{r.frame}'}#{i}" for r, i, _ in faces]
        circumplex(args.plot, [f.valence for _, _, f in faces], [f.arousal for _, _, f in faces], labels=labels,
                   title=f"{len(faces)} face(s) from {summary['read']} picture(s)")
    return 0 if summary["read"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
