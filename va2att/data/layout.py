"""What a data set layout is: the interface every layout of `va2att.data.layouts` implements.

A layout says how its raw folder is recognised (`is_root`), how a split is listed (`read_split`
-> a `SplitTable`), how one listed row becomes a face (`process_row`, run in worker processes),
and what it adds to manifest.json and report.json (`manifest`, `report`). Preparation
(`va2att.data.preparation`), `--data ROOT` (`va2att.data.source`) and evaluation only talk to
this interface. Adding a layout is its own module with a `Layout` subclass and one line in the
registry (`va2att.data.layouts`).
"""

from __future__ import annotations

import abc
import dataclasses
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

SPLITS = ("training", "validation")


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    """The settings of one preparation that the layouts read (see `va2att.data.preparation.prepare`)."""

    classes: int = 8  # 8 keeps codes 0-7, 7 keeps 0-6 (code 8, "None", is kept in both)
    use_mtcnn: bool = True  # detect faces with MTCNN when neither landmarks nor box are usable
    allow_symlinks: bool = False  # follow symbolic links that lead out of the images folder
    other: str = "unlabelled"  # Aff-Wild2's "Other" expression (`va2att.data.affwild2.OTHER_CHOICES`)


class SplitTable(Protocol):
    """The rows of one split that a layout lists, before any image is read."""

    total: int  # rows considered (file lines, annotation sets, frames)
    dropped: Counter  # rows dropped on their labels alone, by reason
    report: dict  # extra per-split facts for report.json
    fingerprint: str  # a digest of the annotation files: a preparation is redone when it changes

    def __len__(self) -> int: ...

    def rows(self, lo: int, hi: int) -> Sequence: ...


@dataclasses.dataclass
class ListedRows:
    """A `SplitTable` over a plain list of rows (whatever tuples the layout's `process_row` reads)."""

    items: list
    dropped: Counter = dataclasses.field(default_factory=Counter)
    total: int = 0
    report: dict = dataclasses.field(default_factory=dict)
    fingerprint: str = ""

    def __len__(self) -> int:
        return len(self.items)

    def rows(self, lo: int, hi: int) -> list:
        return self.items[lo:hi]


class Layout(abc.ABC):
    """One data set layout. Instances are stateless and picklable: work units carry them to worker processes.

    Attributes:
        name: str, the registry key (also the prefix of its cache folders).
        title: str, for messages ("the AffectNet copy").
        root_hint: str, what marks a root of this layout, for the message of an unrecognised `--data`.
        videos: bool, records carry video names and frame numbers (per-video scores, `data.frame_step`).
        counts: tuple of str, the layout's own Counters in a unit's result (`UnitResult.count`), written to
            each split of report.json.
    """

    name: str = ""
    title: str = ""
    root_hint: str = ""
    videos: bool = False
    counts: tuple[str, ...] = ()

    @abc.abstractmethod
    def is_root(self, path: Path) -> bool:
        """True when `path` holds this layout."""

    @abc.abstractmethod
    def read_split(self, root: Path, split: str, options: PrepareOptions) -> SplitTable:
        """List one split's rows (no image is read here); raise a ValueError subclass naming a file that
        cannot be read at all."""

    @abc.abstractmethod
    def process_row(self, root: Path, row, options: PrepareOptions, result) -> None:
        """Turn one listed row into a `FaceRecord` added to `result` (a `va2att.data.work_unit.UnitResult`),
        or count under `result` why it was skipped."""

    def row_path(self, row) -> str:
        """The file a row names, for the report's examples (the first field by default)."""
        return str(row[0])

    def manifest(self, options: PrepareOptions) -> dict:
        """Settings besides the common ones that make a preparation of this layout different (manifest.json)."""
        return {"layout": self.name}

    def report(self, root: Path, options: PrepareOptions) -> dict:
        """Entries this layout adds to report.json."""
        return {"layout": self.name}
