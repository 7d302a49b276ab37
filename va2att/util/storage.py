"""What a storage failure means for the user: `storage_problem(error)` names what to free or fix, and
`unwritable(path, folder)` says, before any work, why an output could not be written there."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path


def storage_problem(error: BaseException) -> str | None:
    """What to free or fix when `error` is a storage failure (full disk, read-only or unwritable folder), else
    None. Knows Python's OSErrors and TensorFlow's and h5py's wrappers of them (by name and message)."""
    code = getattr(error, "errno", None)
    name = type(error).__name__
    text = str(error).lower()
    if code in (errno.ENOSPC, errno.EDQUOT) or name == "ResourceExhaustedError" or "no space left" in text:
        return "the disk is full (free space there)"
    if code == errno.EROFS or "read-only file system" in text:
        return "the file system is read-only (choose a writable folder)"
    if code in (errno.EACCES, errno.EPERM) or name == "PermissionDeniedError" or "permission denied" in text:
        return "permission denied (make the folder writable or choose another)"
    return None


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def unwritable(path, folder: bool) -> str | None:
    """Why an output at `path` (a folder when `folder`, else a file) could not be written, or None: a folder
    where a file is wanted or the reverse, or a folder (the nearest one that exists) that cannot be written.
    Nothing is created."""
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        return "it is a file; give a folder"
    if not folder and path.is_dir():
        return "it is a folder; give a file name"
    ancestor = _existing_ancestor((path if folder else path.parent).absolute())
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        return f"{ancestor} cannot be written: {storage_problem(error) or error.strerror or error}"
    return None
