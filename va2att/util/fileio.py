"""Atomic file writes: everything a run or a preparation leaves behind is written
to a temporary name in the same folder and renamed, so a killed process never
leaves a half-written file that a reader could take for a whole one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

TEMPORARY_GLOB = ".*.tmp*"  # the names `atomic_path` gives its temporaries (hidden, `.tmp` inside)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, *, overwrite: bool = True):
    """Yield a temporary path beside `path`; rename it onto `path` if the block succeeds.

    `suffix` defaults to the target's full suffix (e.g. `.weights.h5`), for writers
    that insist on a file extension. Works for files and folders. With `overwrite=False`
    an existing `path` is never replaced: FileExistsError, and the temporary is removed.
    The temporary is hidden (`.name-XXXXXXXX.tmp<suffix>`, see `TEMPORARY_GLOB`), so readers
    that list the folder (TF Serving watching an export root) never take it for a result.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}-", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        yield Path(tmp)
        if not overwrite and path.exists():
            raise FileExistsError(f"{path} appeared while it was being written; not overwriting it.")
        if path.is_dir() and not Path(tmp).is_dir():
            raise IsADirectoryError(path)
        if path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.unlink(tmp)


def remove_temporaries(folder: str | os.PathLike) -> None:
    """Delete the temporaries that killed writers left in `folder` (call it only while none is writing there)."""
    for stale in Path(folder).glob(TEMPORARY_GLOB):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike):
    return json.loads(Path(path).read_text(encoding="utf-8"))
