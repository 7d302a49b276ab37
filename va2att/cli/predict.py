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

Every output path (`--json`, `--csv`, `--plot`, `--annotate`) is checked before the model is loaded:
a folder where a file is wanted (or the reverse), a folder that cannot be written, two outputs on one
path or an output that would overwrite an input is refused at once. CSV rows are written as pictures
are analysed (`va2att.prediction.csv_rows`, through a temporary renamed into place at the end). An
output that still cannot be written at the end is written into a new folder of the system's temporary
folder instead, and one line says where (`va2att.prediction.result_files`); Ctrl-C stops the analysis
and writes what was finished. A video that ends before the frame count its container gives is
reported as one more unreadable item saying how many frames were read.

Exit status: 0 when at least one picture was read (pictures without faces included), 1 when no
input could be read at all or an output had to be written elsewhere, 2 when the model cannot be
loaded or the arguments (output paths included) are wrong, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

from va2att.faces.detection import PREDICT_SMALLEST_FACE
from va2att.faces.tracking import DETECT_EVERY

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm", ".pnm"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
_GLOB_CHARS = frozenset("*?[")
# Containers whose frame count is an estimate (from duration x rate) may give a frame or 1% more than
# a whole file decodes; a video that ends further short than that is reported as truncated.
_FRAME_COUNT_SLACK = 0.01


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

    A video that cannot be opened or decoded, or whose frames hold more than `MAX_DECODE_PIXELS` pixels
    (the cap on decoded photos), yields a single `Frame` with an error, before any frame is decoded. A video that ends
    (cannot be decoded further) more than `_FRAME_COUNT_SLACK` short of the frame count its container
    gives yields, after its frames, one more `Frame` whose error says how many frames were read: a
    truncated or damaged file is reported, never taken for a whole one.
    """
    import cv2

    from va2att.faces import images
    from va2att.prediction.predictor import Frame

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
    index = 0
    try:
        while capture.grab():
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if ok and bgr is not None:
                    yield Frame(source, frame=index, image=images.from_array(bgr, order="bgr"))
                else:
                    yield Frame(source, frame=index, error=f"{source}: frame {index} cannot be decoded")
            index += 1
    finally:
        capture.release()
    if index == 0:
        yield Frame(source, error=f"{source}: no frame could be decoded")
    elif declared - index > max(1, declared * _FRAME_COUNT_SLACK):
        yield Frame(source, frame=index, error=f"{source}: the video ends after {index} of the {declared} frames its "
                                               "header gives (truncated or damaged); the frames before were analysed")


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
    """A plain-text table: one line per face, one per picture without a face or unreadable; a column
    for each served score (`va2att.serving.signature`), then the expression."""
    from va2att.serving.signature import SCORE, outputs_of_kind

    scores = [output.name for output in outputs_of_kind(SCORE)]
    header = ("source", "frame", "face", "box x,y,w,h", "conf", *scores, "expression")
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
            rows.append((r.source, frame, str(i), box, f"{f.confidence:.2f}",
                         *(_fmt(f.scores.get(name), "+.3f") for name in scores), expression))
    full = [r for r in rows if len(r) == len(header)]
    widths = [max([len(h)] + [len(r[i]) for r in full]) for i, h in enumerate(header)]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return "\n".join(lines)


def csv_text(results, class_names) -> str:
    """The whole CSV of `results` as text (`va2att.prediction.csv_rows`: one row per face or faceless picture)."""
    from va2att.prediction.csv_rows import CsvWriter

    out = io.StringIO()
    writer = CsvWriter(out, class_names)
    for result in results:
        writer.write(result)
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


def _check_numbers(parser: argparse.ArgumentParser, args) -> None:
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


def _check_before_work(args, inputs) -> int | None:
    """Inputs, output paths and model, checked before TensorFlow and the model are loaded (seconds):
    the exit status of a failed check, or None."""
    from va2att.prediction.result_files import output_problems
    from va2att.serving.loading import resolve_model_path

    if not inputs:
        print("error: no image or video files found in the given paths", file=sys.stderr)
        return 1
    missing = [str(path) for kind, path in inputs if kind == "missing"]
    if len(missing) == len(inputs):
        print(f"error: no such file or pattern: {', '.join(missing)}", file=sys.stderr)
        return 1
    outputs = {"--json": (args.json, False), "--csv": (args.csv, False), "--plot": (args.plot, False),
               "--annotate": (args.annotate, True)}
    problems = output_problems(outputs, [path for kind, path in inputs if kind != "missing"])
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    try:
        resolve_model_path(args.model)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: cannot load the model from {args.model}: {exc}", file=sys.stderr)
        return 2
    return None


def _analyse(predictor, inputs, args, csv_file) -> tuple[list, bool]:
    """Every picture's result, its annotated picture and CSV rows written as it comes: (results, interrupted).

    Ctrl-C stops the analysis; the results finished by then are kept and written like complete ones."""
    from tqdm import tqdm

    from va2att.prediction.annotate import left_to_right, write_annotated
    from va2att.prediction.csv_rows import CsvWriter

    names = _AnnotatedNames(args.annotate) if args.annotate else None
    rows = CsvWriter(csv_file, predictor.class_names) if csv_file else None  # the header now, rows as they come
    results = []
    # The bar counts pictures as they are read and searched for faces (the slow part); the
    # network then runs on batches of faces.
    try:
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
                if rows:
                    rows.write(result)
    except KeyboardInterrupt:
        print(f"\nInterrupted: the {len(results)} picture(s) analysed so far are reported and written.",
              file=sys.stderr)
        return results, True
    return results, False


def _save(args, predictor, results, summary, csv_file) -> list[str]:
    """Write --json, --csv and --plot; one line for each that failed (its results are rescued elsewhere)."""
    from va2att.prediction.result_files import rescue, write_or_rescue

    failures = []
    class_names = predictor.class_names
    if csv_file and not csv_file.finish():
        failures.append(rescue("--csv", args.csv, csv_text(results, class_names), csv_file.failure))
    if args.json:
        document = {"model": str(args.model), "summary": summary, "expression_names": list(class_names),
                    "results": [r.to_dict() for r in results]}
        failures.append(write_or_rescue("--json", args.json, json.dumps(document, indent=2) + "\n"))
    if args.plot:
        from va2att.evaluation.plots import circumplex

        faces = [(r, i, f) for r in results for i, f in enumerate(r.faces, 1)
                 if f.valence is not None and f.arousal is not None]
        labels = [f"{Path(r.source).stem}{'' if r.frame is None else f'@{r.frame}'}#{i}" for r, i, _ in faces]
        try:
            circumplex(args.plot, [f.valence for _, _, f in faces], [f.arousal for _, _, f in faces], labels=labels,
                       title=f"{len(faces)} face(s) from {summary['read']} picture(s)")
        except OSError as exc:
            failures.append(f"error: cannot write --plot {args.plot}: {exc}")
    return [line for line in failures if line]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_numbers(parser, args)
    inputs = expand_paths(args.paths)
    status = _check_before_work(args, inputs)
    if status is not None:
        return status

    from va2att.util.quiet import quiet_tensorflow

    quiet_tensorflow(args.verbose)
    from va2att.prediction.predictor import Predictor
    from va2att.prediction.result_files import StreamedText

    try:
        predictor = Predictor(args.model, min_confidence=args.min_confidence, batch_size=args.batch_size,
                              smallest_face=args.smallest_face, detect_every=args.detect_every)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"error: cannot load the model from {args.model}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        csv_file = StreamedText(args.csv) if args.csv else None
    except OSError as exc:
        print(f"error: cannot write --csv {args.csv}: {exc}", file=sys.stderr)
        return 2
    results, interrupted = _analyse(predictor, inputs, args, csv_file)
    print(format_table(results))
    summary = _summary(results)
    print(f"{summary['read']} of {summary['items']} picture(s) read, {summary['faces']} face(s), "
          f"{summary['without_face']} without a face, {summary['unreadable']} unreadable", file=sys.stderr)
    failures = _save(args, predictor, results, summary, csv_file)
    for line in failures:
        print(line, file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failures or summary["read"] == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
