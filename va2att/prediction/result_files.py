"""Files that hold prediction results: checked before any work, written so that finished results are never lost.

- `output_problems` says, before a picture is read, why an output flag's path cannot be written: a
  folder where a file is wanted (or the reverse), a folder that cannot be created or written (read-only,
  no permission), two flags naming one path, or an output that would overwrite an input.
- `StreamedText` is a result file that grows as results come (predict's CSV and JSON): a hidden temporary
  beside the file, renamed onto it when complete. A write that fails (the disk fills up), or a rename
  that fails at the end, moves the stream into a new folder of the system's temporary folder, with
  what was written so far, and one line says where: results are never held in memory, and never lost.
- `write_or_rescue` writes a whole result file (the summary) the same way; when that fails, `rescue`
  writes the text into a new folder of the system's temporary folder and the one line it returns says
  where, so an analysis that took hours is never thrown away by its last step.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from va2att.util.fileio import atomic_path
from va2att.util.storage import storage_problem, unwritable

RESCUE_PREFIX = "va2att-predict-"  # folders under the system's temporary folder that hold rescued results
_COPY_CHUNK = 2**20  # bytes copied at a time when a stream moves to the temporary folder


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

    Args:
        path: the file to write.
        flag: the option that names it (`--csv`), for the line that says where the results went.

    `write(text)` appends and flushes (so it serves as the stream of a `csv.writer`). A write that fails
    (a full disk), or a `finish` that cannot rename the file into place (its folder is gone), moves the
    stream into a new folder of the system's temporary folder (`RESCUE_PREFIX`): what was written so far
    is copied there from the temporary (read back through its open descriptor, even when its folder was
    removed), and later writes go there. `failure` then holds the one line that says so, and `finish`
    returns False. Nothing of the results is held in memory.
    """

    def __init__(self, path, flag: str = "output"):
        self.path = Path(path)
        self.flag = flag
        self.failure: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{self.path.name}-", suffix=".tmp", dir=self.path.parent)
        os.close(fd)  # opened again below with the permissions of any new file (mkstemp's are owner-only), and readable
        os.unlink(temporary)
        self._temporary = Path(temporary)
        self.stream = os.fdopen(os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), "wb")
        self._written = 0  # bytes in the temporary
        self._rescued = None  # the file in the temporary folder, once the stream moved there

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._rescued is not None:
            self._write_rescued(data)
            return
        if self.failure is not None:
            return
        try:
            self.stream.write(data)
            self.stream.flush()
        except OSError as error:
            self._rescue(error, data)
            return
        self._written += len(data)

    def flush(self) -> None:
        """Nothing to do: every `write` is flushed."""

    def finish(self) -> bool:
        """Rename the complete file into place; False (and `failure` set) when the results went elsewhere."""
        if self._rescued is not None:
            with contextlib.suppress(OSError):
                self._rescued.close()
            return False
        if self.failure is not None:
            return False
        try:
            os.replace(self._temporary, self.path)
        except OSError as error:
            self._rescue(error, b"")
            return self.finish()
        try:
            self.stream.close()
        except OSError as error:  # the data was flushed with each write; a failing close is still reported
            self.failure = f"error: cannot write {self.flag} {self.path} ({_reason(error)})"
            return False
        return True

    def discard(self) -> None:
        """Remove the temporary (an analysis that stopped before its results were complete)."""
        with contextlib.suppress(OSError):  # a folder that went away takes its temporary with it
            self.stream.close()
        with contextlib.suppress(OSError):
            self._temporary.unlink(missing_ok=True)

    def _rescue(self, error: OSError, pending: bytes) -> None:
        """Move the stream into the temporary folder: the bytes written so far, then `pending`."""
        reason = _reason(error)
        try:
            folder = Path(tempfile.mkdtemp(prefix=RESCUE_PREFIX))
            kept = folder / self.path.name
            self._rescued = open(kept, "wb")  # noqa: SIM115 - closed by finish
            fd, offset = self.stream.fileno(), 0
            while offset < self._written:
                chunk = os.pread(fd, min(_COPY_CHUNK, self._written - offset), offset)
                if not chunk:
                    break
                self._rescued.write(chunk)
                offset += len(chunk)
            self._rescued.write(pending)
            self._rescued.flush()
        except OSError as second:
            self._rescued = None
            self.failure = f"error: cannot write {self.flag} {self.path} ({reason}), nor a copy in the temporary folder ({second})"
        else:
            self.failure = f"error: cannot write {self.flag} {self.path} ({reason}); the results are kept in {kept}"
        self.discard()

    def _write_rescued(self, data: bytes) -> None:
        try:
            self._rescued.write(data)
            self._rescued.flush()
        except OSError as error:
            self.failure += f"; writing there failed too ({_reason(error)}), it holds the results up to then"
            with contextlib.suppress(OSError):
                self._rescued.close()
            self._rescued = None


def _reason(error: OSError) -> str:
    return storage_problem(error) or f"{type(error).__name__}: {error}"


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
        return rescue(flag, path, text, _reason(error))
    return None
