"""Valence, arousal and expression of the faces in photos, folders and videos.

    python -m va2att.predict photo.jpg album/ "shots/*.png" clip.mp4 --model runs/exp1 \\
        [--every 10 | --every-seconds 0.5] [--start 0] [--smooth 1.0] [--detect-every 5] [--smallest-face 32] \\
        [--json out.json] [--csv out.csv] [--summary tracks.json] [--timeline va.png] [--annotate annotated/] \\
        [--plot circumplex.png]

PATHs are image files, folders (searched recursively for image and video files), glob patterns
or video files. In a video one frame in every `--every` is analysed (or, with `--every-seconds S`, the
first frame at or after each multiple of S seconds), from `--start` seconds on; faces are searched in
the whole frame once every `--detect-every` analysed frames and followed in between, and every face
gets a track id that it keeps while it is followed (a face that leaves the picture, or is not found
for more than a few analysed frames, and comes back gets a new one). Every video row has its frame
index and its time in seconds (the container's presentation time); a frame in which a followed face
is not found has a row for that track with an empty face. `--smooth SECONDS` adds, beside the raw
values, each track's valence, arousal and expression probabilities averaged over its last SECONDS
(causal: past frames only). `--model` is a run folder, a `.keras` or `.tflite` file, a SavedModel or an
export root; without a GPU an export runs on its LiteRT model (`--runtime`).

A table of faces is printed as pictures are analysed; `--csv` / `--json` keep every result (one CSV
row per face; a picture without a face or an unreadable file gets one row with a note or an error),
both written as frames are analysed (`va2att.prediction.outputs`), so memory does not grow with the
length of a video. `--summary` writes, per video and track, when it was seen, how often, the mean and
median valence and arousal and the share of each expression; `--timeline` draws valence and arousal
over time per track; `--annotate` writes each picture or sampled frame with its faces drawn;
`--plot` places every face on the valence-arousal circumplex.

Every output path is checked before the model is loaded: a folder where a file is wanted (or the
reverse), a folder that cannot be written, two outputs on one path or an output that would overwrite
an input is refused at once. An output that cannot be written where asked (a full disk, a folder that
went away) is written into a new folder of the system's temporary folder instead, and one line says
where (`va2att.prediction.result_files`). Ctrl-C stops the analysis, completes every output with what
was finished (a valid CSV and JSON) and prints the commands that continue where it stopped (`--start`).
A video that ends before the frame count its container gives is reported as one more unreadable item
saying how many frames were read.

Exit status: 0 when at least one picture was read (pictures without faces included), 1 when no
input could be read at all or an output had to be written elsewhere, 2 when the model cannot be
loaded or the arguments (output paths included) are wrong, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import glob
import math
import shlex
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
EVERY = 10  # video frames: one analysed in this many, unless --every or --every-seconds says otherwise
# Table columns of fixed width while the table is printed as results come (the source's width follows the inputs).
_WIDTHS = {"frame": 6, "face": 4, "track": 5, "time": 8, "box x,y,w,h": 19, "conf": 4}
_SCORE_WIDTH = 6


def build_parser() -> argparse.ArgumentParser:
    from va2att.cli import program_name
    parser = argparse.ArgumentParser(
        prog=program_name("va2att.cli.predict"),
        description="Valence, arousal and expression of every face in images, folders and videos.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image or video files, folders, or glob patterns")
    parser.add_argument("--model", required=True,
                        help="run folder, .keras or .tflite file, SavedModel folder or export root")
    parser.add_argument("--runtime", default="auto", choices=("auto", "savedmodel", "litert"),
                        help="what runs an export: its SavedModel, its LiteRT model (model.tflite), or auto (default: "
                             "LiteRT without a GPU, the SavedModel with one)")
    parser.add_argument("--every", type=int, metavar="N", help=f"analyse one video frame in N (default {EVERY})")
    parser.add_argument("--every-seconds", type=float, metavar="S",
                        help="video: analyse the first frame at or after every S seconds instead of one in N")
    parser.add_argument("--start", type=float, default=0.0, metavar="SECONDS",
                        help="video: begin at this time (continues an interrupted run; default 0)")
    parser.add_argument("--smooth", type=float, metavar="SECONDS",
                        help="video: also give each track's valence, arousal and expression probabilities averaged "
                             "over its last SECONDS (causal)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write one row per face (and per faceless picture)")
    parser.add_argument("--summary", type=Path, metavar="FILE.json",
                        help="video: write per video and track the times seen, mean and median V/A, expression shares")
    parser.add_argument("--timeline", type=Path, metavar="FILE.png", help="video: draw V and A over time per track")
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


def _expected_count(inputs, args) -> int:
    from va2att.prediction.video import expected_frames

    return sum(expected_frames(path, _every(args), args.every_seconds, args.start) if kind == "video" else 1
               for kind, path in inputs)


def _every(args) -> int:
    return EVERY if args.every is None else args.every


def _counted(items, progress, interrupt) -> Iterator:
    """The items, each counted on the bar once handed on; a pending Ctrl-C is raised between two items."""
    for item in items:
        yield item
        progress.update(1)
        interrupt.check()


def _work(predictor, inputs, args, progress, interrupt, keep_images: bool) -> Iterator[tuple[int, object]]:
    """(input index, result) of every input in order: runs of photos in batches together, each video frame by frame."""
    from va2att.prediction.predictor import Frame
    from va2att.prediction.video import read_video

    photos: list[tuple[int, object]] = []
    for index, (kind, path) in enumerate(inputs):
        if kind != "video":
            photos.append((index, Frame(str(path), error=f"{path}: no such file or pattern") if kind == "missing"
                           else path))
            continue
        yield from _photos(predictor, photos, progress, interrupt, keep_images)
        photos = []
        frames = read_video(path, _every(args), every_seconds=args.every_seconds, start=args.start)
        for result in predictor.iter_frames(_counted(frames, progress, interrupt), smooth=args.smooth, keep_images=keep_images):
            yield index, result
    yield from _photos(predictor, photos, progress, interrupt, keep_images)


def _photos(predictor, photos, progress, interrupt, keep_images: bool) -> Iterator[tuple[int, object]]:
    items = _counted((item for _, item in photos), progress, interrupt)
    yield from zip((index for index, _ in photos), predictor.iter_predict(items, keep_images=keep_images))


# === Outputs ===


def _dash(value, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def _table_header() -> tuple[str, ...]:
    from va2att.serving.signature import SCORE, outputs_of_kind

    return ("source", *_WIDTHS, *(output.name for output in outputs_of_kind(SCORE)), "expression")


def _table_rows(result) -> list[tuple[str, ...]]:
    """The table's rows of one result (those of its CSV, `va2att.prediction.csv_rows.rows_of`): a full row per face,
    a shorter one that ends with the note or error for a picture without a face or a track not found."""
    from va2att.prediction.csv_rows import rows_of
    from va2att.serving.signature import SCORE, outputs_of_kind

    scores = [output.name for output in outputs_of_kind(SCORE)]
    rows = []
    for row in rows_of(result):
        where = (row.source, _dash(row.frame), _dash(row.number), _dash(row.track), _dash(row.time, ".3f"))
        face = row.face
        if face is None:
            rows.append((*where, f"ERROR: {row.error}" if row.error is not None else row.note or "no face found"))
            continue
        box = ",".join(str(round(v)) for v in face.box)
        expression = f"{face.expression} {face.probabilities.get(face.expression, 0.0):.2f}" if face.expression else "-"
        rows.append((*where, box, f"{face.confidence:.2f}", *(_dash(face.scores.get(name), "+.3f") for name in scores),
                     expression))
    return rows


def _line(row, widths) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()


def format_table(results) -> str:
    """A plain-text table: one line per face (and per track not found), one per picture without a face or
    unreadable; a column for each served score (`va2att.serving.signature`), then the expression."""
    header = _table_header()
    rows = [row for result in results for row in _table_rows(result)]
    full = [r for r in rows if len(r) == len(header)]
    widths = [max([len(h)] + [len(r[i]) for r in full]) for i, h in enumerate(header)]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])
    return "\n".join(_line(row, widths) for row in [header, *rows])


class _StreamedTable:
    """The table printed as results come: fixed column widths (the source's from the inputs' names)."""

    def __init__(self, inputs):
        header = _table_header()
        source = max([len(header[0])] + [len(str(path)) for _, path in inputs])
        self.widths = [source, *_WIDTHS.values()] + [_SCORE_WIDTH] * (len(header) - len(_WIDTHS) - 2) + [0]
        self.header = _line(header, self.widths)

    def lines(self, result) -> list[str]:
        return [_line(row, self.widths) for row in _table_rows(result)]


# === Entry point ===


def _check_numbers(parser: argparse.ArgumentParser, args) -> None:
    checks = [(args.every is not None and args.every < 1, f"--every must be >= 1 (received {args.every})"),
              (args.every is not None and args.every_seconds is not None, "give --every or --every-seconds, not both"),
              (args.every_seconds is not None and not args.every_seconds > 0,
               f"--every-seconds must be > 0 (received {args.every_seconds})"),
              (not (math.isfinite(args.start) and args.start >= 0), f"--start must be >= 0 (received {args.start})"),
              (args.smooth is not None and not (math.isfinite(args.smooth) and args.smooth > 0),
               f"--smooth must be > 0 seconds (received {args.smooth})"),
              (args.detect_every < 1, f"--detect-every must be >= 1 (received {args.detect_every})"),
              (args.smallest_face < 0, f"--smallest-face must be >= 0 (received {args.smallest_face})"),
              (args.batch_size < 1, f"--batch-size must be >= 1 (received {args.batch_size})"),
              (not 0.0 <= args.min_confidence <= 1.0, f"--min-confidence must be in [0, 1] (received {args.min_confidence})")]
    for failed, message in checks:
        if failed:
            parser.error(message)


def _output_paths(args):
    from va2att.prediction.outputs import OutputPaths

    return OutputPaths(csv=args.csv, json=args.json, summary=args.summary, timeline=args.timeline, plot=args.plot,
                       annotate=args.annotate)


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
    paths = _output_paths(args).__dict__
    outputs = {f"--{name}": (path, name == "annotate") for name, path in paths.items()}
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


def _analyse(predictor, inputs, args, outputs) -> tuple[tuple | None, bool]:
    """Hand every result to the outputs and print its table rows as it comes: ((input index, last result) or None,
    interrupted). Ctrl-C stops the analysis; what was handed over stays in the outputs."""
    from tqdm import tqdm

    from va2att.prediction.annotate import left_to_right
    from va2att.util.interrupt import deferred_interrupt

    table = _StreamedTable(inputs)
    print(table.header, flush=True)
    last = None
    # The bar counts pictures as they are read and searched for faces (the slow part); the
    # network then runs on batches of faces.
    try:
        with deferred_interrupt() as interrupt, tqdm(total=_expected_count(inputs, args), unit="picture",
                                                      file=sys.stderr, disable=None, dynamic_ncols=True) as progress:
            for index, result in _work(predictor, inputs, args, progress, interrupt, outputs.wants_images):
                result.faces = left_to_right(result.faces)  # numbered left to right, in the table and the picture
                outputs.add(result)
                for line in table.lines(result):
                    tqdm.write(line, file=sys.stdout)
                last = (index, result)
            interrupt.check()  # pressed during the last item
    except KeyboardInterrupt:
        print(f"\nInterrupted: the {outputs.counts.items} picture(s) analysed so far are reported and written.",
              file=sys.stderr)
        return last, True
    return last, False


def _options(args, tag: str) -> list[str]:
    """The command's options for a continued run, each output file renamed with `tag` (its folder kept)."""
    options = ["--model", str(args.model)] + (["--runtime", args.runtime] if args.runtime != "auto" else [])
    options += ["--every-seconds", f"{args.every_seconds:g}"] if args.every_seconds else ["--every", str(_every(args))]
    defaults = build_parser().parse_args(["x", "--model", "m"])
    for name in ("smooth", "detect_every", "smallest_face", "min_confidence", "batch_size"):
        if getattr(args, name) != getattr(defaults, name):  # the options given that are not the defaults
            options += [f"--{name.replace('_', '-')}", f"{getattr(args, name):g}"]
    for name, path in _output_paths(args).__dict__.items():
        if path is not None:
            options += [f"--{name}", str(path if name == "annotate" else path.with_name(f"{path.stem}-{tag}{path.suffix}"))]
    return options


def continuation(args, inputs, last) -> list[str]:
    """The lines that say how to continue an interrupted run: the video it stopped in from just after its last
    result (`--start`), then the inputs it had not started."""
    from va2att.cli import program_name

    program = program_name("va2att.cli.predict")
    index, result = last if last is not None else (-1, None)
    lines = []
    if result is not None and result.frame is not None and result.time is not None and result.error is None:
        start = math.floor(result.time * 1000) / 1000 + 0.001  # just after the last frame written
        words = [inputs[index][1], *_options(args, f"from-{start:.3f}s"), "--start", f"{start:.3f}"]
        lines.append(f"To continue {inputs[index][1]} after {result.time:.3f} s: {program} {shlex.join(map(str, words))}")
    rest = [str(path) for _, path in inputs[index + 1:]]
    if rest:
        lines.append(f"To analyse the inputs not started: {program} {shlex.join(rest + _options(args, 'rest'))}")
    return lines


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
    from va2att.prediction.outputs import Outputs
    from va2att.prediction.predictor import Predictor

    try:
        predictor = Predictor(args.model, min_confidence=args.min_confidence, batch_size=args.batch_size,
                              smallest_face=args.smallest_face, detect_every=args.detect_every, runtime=args.runtime)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported the same way
        print(f"error: cannot load the model from {args.model}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    head = {"model": str(args.model), "expression_names": list(predictor.class_names), "smooth_seconds": args.smooth}
    try:
        outputs = Outputs(_output_paths(args), head, predictor.class_names, smoothed=args.smooth is not None,
                          warn=lambda line: print(line, file=sys.stderr))
    except OSError as exc:
        print(f"error: cannot write the outputs: {exc}", file=sys.stderr)
        return 2
    last, interrupted = _analyse(predictor, inputs, args, outputs)
    failures = outputs.close()
    counts = outputs.counts
    print(f"{counts.read} of {counts.items} picture(s) read, {counts.faces} face(s), "
          f"{counts.without_face} without a face, {counts.unreadable} unreadable", file=sys.stderr)
    for line in failures + (continuation(args, inputs, last) if interrupted else []):
        print(line, file=sys.stderr)
    if interrupted:
        return 130
    return 1 if failures or counts.read == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
