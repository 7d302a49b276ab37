"""One writer per folder: an exclusive OS file lock on a run folder or a preparation folder.

A process that writes a run (`va2att.training.trainer.train`, the chief worker only) or a preparation
(`va2att.data.preparation.prepare`) holds `folder_lock(folder)` for as long as it writes there. The lock
is `flock` on `FOLDER/.lock`, which also holds the owner's PID and what it does: a second process is refused at once
with `FolderInUseError` naming that PID. The operating system drops the lock when its process ends,
however it ends (kill -9 included), so a lock is never stale and there is nothing to clean up.
The file itself stays (removing it would let two processes lock two different files). A folder that
must hold nothing else (an export root, whose every entry TF Serving reads as a version) is locked on
the folder itself (`lock_file=False`): the same exclusion, without the holder's PID.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class FolderInUseError(RuntimeError):
    """Another live process holds the folder's lock; the message names it and is one line."""


def lock_holder(folder) -> tuple[int | None, str]:
    """(PID, what it does) written in `folder`'s lock file by its last holder; (None, "") when unknown."""
    try:
        lines = (Path(folder) / LOCK_FILE).read_text().splitlines()
    except OSError:
        return None, ""
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    return pid, (lines[1].strip() if len(lines) > 1 else "")


@contextlib.contextmanager
def folder_lock(folder, what: str = "process", *, lock_file: bool = True):
    """Hold the exclusive lock of `folder` (created if missing) for the block.

    Args:
        folder: the folder to write.
        what: what the holder does, for the message ("training run", "preparation", "export").
        lock_file: lock `FOLDER/.lock` and write the holder's PID in it; False locks the folder itself and
            leaves nothing in it.
    Raises:
        FolderInUseError: another process holds the lock.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE if lock_file else folder
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644) if lock_file else os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid, doing = lock_holder(folder) if lock_file else (None, "")
            who = f"process {pid}" if pid else "another process"
            raise FolderInUseError(
                f"{folder} is in use: {who} is writing a{'n' if (doing or what)[0] in 'aeiou' else ''} "
                f"{doing or what} there (lock {path}). Wait for it to finish or stop it; two processes writing "
                "one folder would corrupt it.") from None
        if lock_file:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n{what}\n".encode())
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
