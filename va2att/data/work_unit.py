"""One preparation work unit: a shard's rows in, its faces and its counts out, for every layout.

`run_unit(unit)` hands each row of `unit` to its layout's `process_row` (`va2att.data.layouts`),
which adds a `FaceRecord` or counts why the row was skipped. A row that raises anyway (a decoder
crash, a symbolic-link loop, a file removed while it was read) is counted as `row_failed` under its
path: one bad row costs that row, never the unit. `UnitResult` holds what a unit produced: the
records, the Counters `skipped`, `fallbacks`, `methods` and any layout-specific ones (`extra`), and
up to `MAX_EXAMPLES` paths per reason. `read_image` and `align` are the steps the layouts share:
read one listed image (refusing a path that leads out of its folder), align its face from its 68
landmarks, else its box, else MTCNN, each counting its reason when it fails.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path

from va2att.data.records import FaceRecord

MAX_EXAMPLES = 5  # paths kept per skip reason in report.json


@dataclasses.dataclass
class UnitResult:
    """What one work unit produced."""

    records: list[FaceRecord] = dataclasses.field(default_factory=list)
    skipped: Counter = dataclasses.field(default_factory=Counter)
    fallbacks: Counter = dataclasses.field(default_factory=Counter)
    methods: Counter = dataclasses.field(default_factory=Counter)
    extra: dict[str, Counter] = dataclasses.field(default_factory=dict)  # layout counts, e.g. Aff-Wild2's labels
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    def note(self, kind: str, reason: str, path: str) -> None:
        """Count `reason` under `kind` ("skipped" or "fallbacks") and keep `path` as one of its examples."""
        getattr(self, kind)[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(path)

    def count(self, name: str, key: str) -> None:
        """Count `key` in the layout-specific Counter `name` (written to report.json under `name`)."""
        self.extra.setdefault(name, Counter())[key] += 1

    def read_image(self, folder: Path, relative: str, path: str, *, allow_symlinks: bool = False, **read_kwargs):
        """The image `folder / relative` (`va2att.faces.images.read_image`), or None with the reason counted
        under `path`: `outside_root` for a path that leads out of `folder` (`..`, absolute, or a symbolic
        link out of it unless `allow_symlinks`), the image reason for an unreadable file."""
        from va2att.faces.images import ImageError, read_image

        reason = outside_root(folder, relative, allow_symlinks)
        if reason is not None:
            self.note("skipped", reason, path)
            return None
        try:
            return read_image(folder / relative, **read_kwargs)
        except ImageError as e:
            self.note("skipped", e.reason, path)
        except Exception:  # noqa: BLE001 - a decoder crash must not stop the run
            self.note("skipped", "unreadable", path)
        return None

    def align(self, image, landmark_text, box, use_mtcnn: bool, path: str):
        """(face, method) aligned from the landmarks when usable, else the box, else MTCNN; or None.

        Every fallback and skip is counted under `path`."""
        from va2att.data.affectnet import parse_landmarks
        from va2att.faces.align import align_any, five_points_from_68, usable_points
        from va2att.faces.detection import default_detector
        from va2att.faces.images import ImageError

        lm, lm_reason = parse_landmarks(landmark_text)
        if lm is not None and not usable_points(five_points_from_68(lm), image):
            lm, lm_reason = None, "landmarks_implausible"
        try:
            face, method = align_any(image, landmarks68=lm, box=box, detector=default_detector() if use_mtcnn else None)
        except ImageError as e:  # no usable face
            self.note("skipped", e.reason, path)
            return None
        except Exception:  # noqa: BLE001
            self.note("skipped", "align_failed", path)
            return None
        if lm_reason is not None:
            self.note("fallbacks", lm_reason, path)
        if method == "mtcnn":
            self.note("fallbacks", "box_unusable", path)
        self.methods[method] += 1
        return face, method


def outside_root(folder: Path, relative: str, allow_symlinks: bool = False) -> str | None:
    """Why reading `folder / relative` would leave `folder`, or None when it stays inside.

    "outside_root": an absolute path, a `..` component, or (unless `allow_symlinks`) a symbolic link
    that leads out; "symlink_loop": a link that never resolves (resolving it raises)."""
    listed = Path(relative)
    if listed.is_absolute() or ".." in listed.parts:
        return "outside_root"
    if allow_symlinks:
        return None
    try:
        inside = (folder / listed).resolve().is_relative_to(folder.resolve())
    except (RuntimeError, OSError):  # RuntimeError: "Symlink loop" (Python < 3.13), OSError: ELOOP
        return "symlink_loop"
    return None if inside else "outside_root"


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    """One shard's rows and what processes them."""

    split: str
    index: int
    root: str
    rows: list
    layout: object  # a va2att.data.layouts.Layout
    options: object  # a va2att.data.layouts.PrepareOptions


def run_unit(unit: WorkUnit) -> tuple[str, int, UnitResult]:
    """Process every row of `unit` with its layout; a row that raises is counted, never fatal.

    Ctrl-C is taken between two rows (`deferred_interrupt`): pressed inside a failing TensorFlow op it would
    reach us as a RuntimeError, and the row would be counted as failed and the interruption lost."""
    from va2att.util.interrupt import deferred_interrupt

    result = UnitResult(extra={name: Counter() for name in unit.layout.counts})
    root = Path(unit.root)
    with deferred_interrupt() as interrupt:
        for row in unit.rows:
            interrupt.check()
            try:
                unit.layout.process_row(root, row, unit.options, result)
            except Exception as error:  # noqa: BLE001 - one bad row costs that row
                result.note("skipped", "row_failed", f"{unit.layout.row_path(row)} ({type(error).__name__})")
        interrupt.check()
    return unit.split, unit.index, result


def init_worker() -> None:
    """Worker processes share the cores: OpenCV's own thread pool would oversubscribe them."""
    import cv2

    cv2.setNumThreads(1)


def cpu_count() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
