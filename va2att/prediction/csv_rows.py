"""Prediction results as CSV rows: one row per face, and one per picture without a face or unreadable.

A row is a `CsvRow` (where it comes from, the face or None, the picture's note and error). The columns
are one list, `csv_columns(class_names, smoothed)`: each a header and the function that gives its cell,
so a row never depends on the position of another column. The score columns (`valence`, `arousal`) and
the probability columns follow the served outputs (`va2att.serving.signature`); with `smoothed`, each
has a `_smoothed` column beside the raw ones. A video frame's rows carry its `frame` index and `time`
(seconds) and each face's `track`; a track that is followed but not found in the frame has a row of
its own with its track id and an empty face (`note`: "face not found"). A video frame's rows are in
track order; a photo's rows have no frame, time or track. `CsvWriter` writes the header, then the
rows of each result as it is handed over, so rows reach the file as pictures (or video frames) are
analysed.

    writer = CsvWriter(stream, predictor.class_names)
    for result in predictor.iter_predict(paths):
        writer.write(result)
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from va2att.prediction.results import FaceResult, ImageResult
from va2att.serving.signature import SCORE, outputs_of_kind

LANDMARKS = 5  # points per face: eyes, nose, mouth corners
NOT_FOUND = "face not found"  # the note of a followed track's row in a frame where its face was not found
SMOOTHED = "_smoothed"  # suffix of the smoothed columns


@dataclass(frozen=True)
class CsvRow:
    """One CSV row: a face of a picture, or the picture itself when it has no face (`face` None).

    Args:
        source: str, the picture's path or name.
        frame: int or None, the frame index of a video frame.
        number: int or None, the face's number in its picture (from 1, left to right as predict numbers them).
        face: FaceResult or None.
        note: str or None, e.g. "no face found".
        error: str or None, why the picture could not be read.
        time: float or None, a video frame's time in seconds.
        track: int or None, the track of a video face (also of a row whose face was not found).
    """

    source: str
    frame: int | None
    number: int | None
    face: FaceResult | None
    note: str | None
    error: str | None
    time: float | None = None
    track: int | None = None


@dataclass(frozen=True)
class Column:
    """A CSV column: its header and the cell it gives for a row ("" where the row has no value)."""

    header: str
    cell: Callable[[CsvRow], str]


def rows_of(result: ImageResult) -> Iterator[CsvRow]:
    """The rows of one picture: one per face (and per track not found), or one for the picture when it has none."""
    where = (result.source, result.frame)
    if not result.faces and not result.lost_tracks:
        yield CsvRow(*where, None, None, result.note, result.error, result.time)
    rows = [CsvRow(*where, number, face, result.note, result.error, result.time, face.track)
            for number, face in enumerate(result.faces, start=1)]
    rows += [CsvRow(*where, None, None, NOT_FOUND, result.error, result.time, track) for track in result.lost_tracks]
    yield from sorted(rows, key=lambda row: -1 if row.track is None else row.track)  # stable: photos keep their order


def _text(value) -> str:
    return "" if value is None else str(value)


def _of_face(value: Callable[[FaceResult], str | None]) -> Callable[[CsvRow], str]:
    """A cell read from the row's face; "" for a row without a face, or without that value."""
    return lambda row: "" if row.face is None else _text(value(row.face))


def _number(value, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def _score_columns(name: str, smoothed: bool) -> list[Column]:
    raw = Column(name, _of_face(lambda f: _number(f.scores.get(name), ".4f")))
    return [raw, Column(name + SMOOTHED, _of_face(lambda f: _number(f.smoothed_scores.get(name), ".4f")))][:1 + smoothed]


def _probability_columns(name: str, smoothed: bool) -> list[Column]:
    raw = Column(f"p_{name}", _of_face(lambda f: _number(f.probabilities.get(name), ".4f")))
    smooth = Column(f"p_{name}{SMOOTHED}", _of_face(lambda f: _number(f.smoothed_probabilities.get(name), ".4f")))
    return [raw, smooth][:1 + smoothed]


def _landmark_column(point: int, axis: int) -> Column:
    def cell(face: FaceResult) -> str | None:
        return f"{face.landmarks[point][axis]:.2f}" if point < len(face.landmarks) else None

    return Column(f"landmark{point + 1}_{'xy'[axis]}", _of_face(cell))


def csv_columns(class_names, smoothed: bool = False) -> list[Column]:
    """The columns of predict's CSV, in order, for a model with these expression class names; with `smoothed`,
    a `_smoothed` column after each score and probability column."""
    box = [Column(header, _of_face(lambda f, i=i: f"{f.box[i]:.2f}"))
           for i, header in enumerate(("x", "y", "width", "height"))]
    return [
        Column("source", lambda row: row.source),
        Column("frame", lambda row: _text(row.frame)),
        Column("time", lambda row: _text(_number(row.time, ".3f"))),
        Column("track", lambda row: _text(row.track)),
        Column("face", lambda row: _text(row.number)),
        *box,
        Column("confidence", _of_face(lambda f: f"{f.confidence:.4f}")),
        *(column for output in outputs_of_kind(SCORE) for column in _score_columns(output.name, smoothed)),
        Column("expression", _of_face(lambda f: f.expression)),
        Column("expression_index", _of_face(lambda f: f.expression_index if f.expression else None)),
        *(column for name in class_names for column in _probability_columns(name, smoothed)),
        *(_landmark_column(point, axis) for point in range(LANDMARKS) for axis in (0, 1)),
        Column("note", lambda row: _text(row.note)),
        Column("error", lambda row: _text(row.error)),
    ]


class CsvWriter:
    """Writes predict's CSV to a text stream: the header at once, then the rows of each result as it comes.

    Args:
        stream: a text stream opened with `newline=""`.
        class_names: the model's expression class names (`Predictor.class_names`; () for none).
        smoothed: bool, add the smoothed columns (predict's `--smooth`).
    """

    def __init__(self, stream, class_names, smoothed: bool = False):
        self.columns = csv_columns(class_names, smoothed)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._stream = stream
        self._writer.writerow([column.header for column in self.columns])

    def write(self, result: ImageResult) -> None:
        """Write the rows of one picture and flush them to the stream's file."""
        for row in rows_of(result):
            self._writer.writerow([column.cell(row) for column in self.columns])
        self._stream.flush()
