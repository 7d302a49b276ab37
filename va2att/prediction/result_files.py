"""Files that hold prediction results: checked before any work, written so that finished results are never lost.

- `output_problems` says, before a picture is read, why an output flag's path cannot be written: a
  folder where a file is wanted (or the reverse), a folder that cannot be created or written (read-only,
  no permission), two flags naming one path, or an output that would overwrite an input.
- `StreamedText` is a result file that grows as results come (predict's CSV): a hidden temporary beside
  the file, renamed onto it when complete. A write that fails later (the disk fills up) stops the
  stream and is remembered, not raised: the results are still in memory.
- `write_or_rescue` writes a whole result file the same way; when that fails, and for a stream that
  failed, `rescue` writes the text into a new folder of the system's temporary folder and the one line
  it returns says where, so an analysis that took hours is never thrown away by its last step.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from va2att.util.fileio import atomic_path
from va2att.util.storage import storage_problem, unwritable

RESCUE_PREFIX = "va2att-predict-"  # folders under the system's temporary folder that hold rescued results


def output_problems(outputs: dict[str, tuple[Path | None, bool]], inputs=()) -> list[str]:
    """One line per output that cannot be written, checked before any work (nothing is created).

    Args:
        outputs: flag -> (path or None when the flag is not given, True when the path is a folder).
        inputs: the input files, which no output may overwrite.
    """
    problems, seen = [], {}
    sources = {Path(p).resolve() for p in inputs}
    for flag, (path, folder) in outputs.items():
        if path is None:
            continue
        path = Path(path)
        problem = unwritable(path, folder)
        resolved = path.resolve()
        if problem is None and resolved in seen:
            problem = f"{seen[resolved]} writes there too; give each output its own path"
        if problem is None and resolved in sources:
            problem = "it is one of the inputs; writing there would overwrite it"
        seen.setdefault(resolved, flag)
        if problem:
            problems.append(f"{flag} {path}: {problem}")
    return problems


class StreamedText:
    """A text file written as results come, through a hidden temporary beside `path` renamed onto it by `finish`.

    `write(text)` appends and flushes (so it serves as the stream of a `csv.writer`). After a failed write
    or `finish`, `failure` holds the one-line reason and nothing more is written; the temporary is removed.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.failure: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}-", suffix=".tmp", dir=self.path.parent)
        self._temporary = Path(temporary)
        self.stream = os.fdopen(fd, "w", newline="", encoding="utf-8")

    def write(self, text: str) -> None:
        if self.failure is not None:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError as error:
            self._fail(error)

    def flush(self) -> None:
        """Nothing to do: every `write` is flushed."""

    def finish(self) -> bool:
        """Rename the complete file into place; False (and `failure` set) when that or an earlier write failed."""
        if self.failure is not None:
            return False
        try:
            self.stream.close()
            os.replace(self._temporary, self.path)
        except OSError as error:
            self._fail(error)
            return False
        return True

    def discard(self) -> None:
        """Remove the temporary (an analysis that stopped before its results were complete)."""
        with contextlib.suppress(OSError):  # a folder that went away takes its temporary with it
            self.stream.close()
        with contextlib.suppress(OSError):
            self._temporary.unlink(missing_ok=True)

    def _fail(self, error: OSError) -> None:
        self.failure = storage_problem(error) or f"{type(error).__name__}: {error}"
        self.discard()


def rescue(flag: str, path, text: str, failure: str) -> str:
    """Write `text` (the results `path` should have held) under the system's temporary folder; the line to print."""
    try:
        folder = Path(tempfile.mkdtemp(prefix=RESCUE_PREFIX))
        kept = folder / Path(path).name
        kept.write_text(text, encoding="utf-8")
    except OSError as error:
        return f"error: cannot write {flag} {path} ({failure}), nor a copy in the temporary folder ({error})"
    return f"error: cannot write {flag} {path} ({failure}); the results are kept in {kept}"


def write_or_rescue(flag: str, path, text: str) -> str | None:
    """Write `text` to `path` atomically; None when done, else `rescue`'s line (the text is kept elsewhere)."""
    try:
        with atomic_path(path) as temporary:
            temporary.write_text(text, encoding="utf-8")
    except OSError as error:
        return rescue(flag, path, text, storage_problem(error) or f"{type(error).__name__}: {error}")
    return None
