"""Where predict's results go, result by result: the CSV and JSON streams, the video summary, the timeline,
the circumplex, the annotated pictures and the counts.

`Outputs.add(result)` hands one result to every output asked for; `close()` completes them (also after
Ctrl-C: what was analysed is written as a whole, valid file). The CSV and JSON are streamed
(`StreamedText`: rows reach the file as frames are analysed); the summary (`VideoSummaries`), the
timeline (`Timeline`) and the circumplex keep what they draw or count in a size that does not grow
with the number of frames (the circumplex: two floats per face, its labels only while there are few
enough to draw). No result is kept once it has been handed on, so a video of any length is analysed
in the same memory.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path

from va2att.prediction.annotate import write_annotated
from va2att.prediction.csv_rows import CsvWriter
from va2att.prediction.json_results import JsonWriter
from va2att.prediction.result_files import StreamedText, write_or_rescue
from va2att.prediction.results import ImageResult
from va2att.prediction.summary import VideoSummaries
from va2att.prediction.timeline import Timeline

_MAX_LABELS = 60  # the circumplex writes a label beside each point up to this many points


@dataclass
class Counts:
    """How many pictures (photos and analysed video frames) were handed over, read, without a face, unreadable."""

    items: int = 0
    read: int = 0
    unreadable: int = 0
    without_face: int = 0
    faces: int = 0

    def add(self, result: ImageResult) -> None:
        self.items += 1
        self.read += result.error is None
        self.unreadable += result.error is not None
        self.without_face += result.error is None and not result.faces
        self.faces += len(result.faces)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OutputPaths:
    """The files and folders asked for (None: not asked for)."""

    json: Path | None = None
    csv: Path | None = None
    plot: Path | None = None
    annotate: Path | None = None
    summary: Path | None = None
    timeline: Path | None = None


@dataclass
class _Circumplex:
    valence: array = field(default_factory=lambda: array("f"))
    arousal: array = field(default_factory=lambda: array("f"))
    labels: list[str] | None = field(default_factory=list)

    def add(self, result: ImageResult) -> None:
        for number, face in enumerate(result.faces, 1):
            if face.valence is None or face.arousal is None:
                continue
            self.valence.append(face.valence)
            self.arousal.append(face.arousal)
            if self.labels is not None and len(self.labels) < _MAX_LABELS:
                where = "" if result.frame is None else f"@{result.frame}"
                self.labels.append(f"{Path(result.source).stem}{where}#{number if face.track is None else face.track}")
            else:
                self.labels = None  # too many points to label


class Outputs:
    """Every output of one predict run, fed result by result (see the module's docstring).

    Args:
        paths: OutputPaths.
        head: dict, the JSON document's keys before its results (model, expression names, ...).
        class_names: the model's expression class names.
        smoothed: bool, the CSV has smoothed columns.
        warn: callable taking one line, for an annotated picture that cannot be written.
    """

    def __init__(self, paths: OutputPaths, head: dict, class_names, smoothed: bool = False, warn=print):
        self.paths, self.warn, self.counts = paths, warn, Counts()
        self._csv_file = StreamedText(paths.csv, "--csv") if paths.csv else None
        self._json_file = StreamedText(paths.json, "--json") if paths.json else None
        self._csv = CsvWriter(self._csv_file, class_names, smoothed) if self._csv_file else None
        self._json = JsonWriter(self._json_file, head) if self._json_file else None
        self._summary = VideoSummaries(class_names) if paths.summary else None
        self._timeline = Timeline(class_names) if paths.timeline else None
        self._circumplex = _Circumplex() if paths.plot else None
        self._names = _AnnotatedNames(paths.annotate) if paths.annotate else None
        self._sinks = [sink for sink in (self._csv and self._csv.write, self._json and self._json.write,
                                         self._summary and self._summary.add, self._timeline and self._timeline.add,
                                         self._circumplex and self._circumplex.add) if sink]

    @property
    def wants_images(self) -> bool:
        return self._names is not None

    def add(self, result: ImageResult) -> None:
        """Hand one result to every output; its picture (if any) is dropped afterwards."""
        if self._names is not None and result.image is not None:
            try:
                write_annotated(self._names(result.source, result.frame), result.image.pixels, result.faces,
                                scale=result.image.scale)
            except (OSError, ValueError) as exc:
                self.warn(f"warning: cannot write the annotated picture of {result.source}: {exc}")
        result.image = None
        self.counts.add(result)
        for sink in self._sinks:
            sink(result)

    def close(self) -> list[str]:
        """Complete every file: one line for each that could not be written where asked (and where it went)."""
        failures = []
        if self._json is not None:
            self._json.close({"summary": self.counts.to_dict()})
        for file in (self._csv_file, self._json_file):
            if file is not None and not file.finish():
                failures.append(file.failure)
        if self._summary is not None:
            import json

            text = json.dumps(self._summary.to_dict(), indent=2) + "\n"
            failures.append(write_or_rescue("--summary", self.paths.summary, text))
        failures += [self._draw("--timeline", self.paths.timeline, self._draw_timeline),
                     self._draw("--plot", self.paths.plot, self._draw_circumplex)]
        return [line for line in failures if line]

    def _draw(self, flag: str, path, draw) -> str | None:
        if path is None:
            return None
        try:
            draw(path)
        except OSError as exc:
            return f"error: cannot write {flag} {path}: {exc}"
        return None

    def _draw_timeline(self, path) -> None:
        self._timeline.draw(path)

    def _draw_circumplex(self, path) -> None:
        from va2att.evaluation.plots import circumplex

        points = self._circumplex
        circumplex(path, points.valence, points.arousal, labels=points.labels,
                   title=f"{len(points.valence)} face(s) from {self.counts.read} picture(s)")


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
