"""What a storage failure means for the user: `storage_problem(error)` names what to free or fix."""

from __future__ import annotations

import errno


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
