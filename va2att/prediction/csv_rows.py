"""Prediction results as CSV rows: one row per face, and one per picture without a face or unreadable.

A row is a `CsvRow` (where it comes from, the face or None, the picture's note and error). The columns
are one list, `csv_columns(class_names)`: each a header and the function that gives its cell, so a
row never depends on the position of another column. The score columns (`valence`, `arousal`) and
the probability columns follow the served outputs (`va2att.serving.signature`). `CsvWriter` writes
the header, then the rows of each result as it is handed over, so rows reach the file as pictures
(or video frames) are analysed.

    writer = CsvWriter(stream, predictor.class_names)
    for result in predictor.iter_predict(paths):
        writer.write(result)
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from va2att.prediction.predictor import FaceResult, ImageResult
from va2att.serving.signature import SCORE, outputs_of_kind

LANDMARKS = 5  # points per face: eyes, nose, mouth corners


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
    """

    source: str
    frame: int | None
    number: int | None
    face: FaceResult | None
    note: str | None
    error: str | None


@dataclass(frozen=True)
class Column:
    """A CSV column: its header and the cell it gives for a row ("" where the row has no value)."""

    header: str
    cell: Callable[[CsvRow], str]


def rows_of(result: ImageResult) -> Iterator[CsvRow]:
    """The rows of one picture: one per face, or one for the picture when it has none."""
    if not result.faces:
        yield CsvRow(result.source, result.frame, None, None, result.note, result.error)
    for number, face in enumerate(result.faces, start=1):
        yield CsvRow(result.source, result.frame, number, face, result.note, result.error)


def _text(value) -> str:
    return "" if value is None else str(value)


def _of_face(value: Callable[[FaceResult], str | None]) -> Callable[[CsvRow], str]:
    """A cell read from the row's face; "" for a row without a face, or without that value."""
    return lambda row: "" if row.face is None else _text(value(row.face))


def _number(value, spec: str) -> str | None:
    return None if value is None else format(value, spec)


def _score_column(name: str) -> Column:
    return Column(name, _of_face(lambda f: _number(f.scores.get(name), ".4f")))


def _probability_column(name: str) -> Column:
    return Column(f"p_{name}", _of_face(lambda f: _number(f.probabilities.get(name), ".4f")))


def _landmark_column(point: int, axis: int) -> Column:
    def cell(face: FaceResult) -> str | None:
        return f"{face.landmarks[point][axis]:.2f}" if point < len(face.landmarks) else None

    return Column(f"landmark{point + 1}_{'xy'[axis]}", _of_face(cell))


def csv_columns(class_names) -> list[Column]:
    """The columns of predict's CSV, in order, for a model with these expression class names."""
    box = [Column(header, _of_face(lambda f, i=i: f"{f.box[i]:.2f}"))
           for i, header in enumerate(("x", "y", "width", "height"))]
    return [
        Column("source", lambda row: row.source),
        Column("frame", lambda row: _text(row.frame)),
        Column("face", lambda row: _text(row.number)),
        *box,
        Column("confidence", _of_face(lambda f: f"{f.confidence:.4f}")),
        *(_score_column(output.name) for output in outputs_of_kind(SCORE)),
        Column("expression", _of_face(lambda f: f.expression)),
        Column("expression_index", _of_face(lambda f: f.expression_index if f.expression else None)),
        *(_probability_column(name) for name in class_names),
        *(_landmark_column(point, axis) for point in range(LANDMARKS) for axis in (0, 1)),
        Column("note", lambda row: _text(row.note)),
        Column("error", lambda row: _text(row.error)),
    ]


class CsvWriter:
    """Writes predict's CSV to a text stream: the header at once, then the rows of each result as it comes.

    Args:
        stream: a text stream opened with `newline=""`.
        class_names: the model's expression class names (`Predictor.class_names`; () for none).
    """

    def __init__(self, stream, class_names):
        self.columns = csv_columns(class_names)
        self._writer = csv.writer(stream, lineterminator="\n")
        self._stream = stream
        self._writer.writerow([column.header for column in self.columns])

    def write(self, result: ImageResult) -> None:
        """Write the rows of one picture and flush them to the stream's file."""
        for row in rows_of(result):
            self._writer.writerow([column.cell(row) for column in self.columns])
        self._stream.flush()
