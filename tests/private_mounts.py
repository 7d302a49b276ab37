"""Whether a test may give a child process its own mounts (`unshare -rm`): a tmpfs that is full or read-only
is then a real storage fault, gone with the process. Where the machine refuses it, such tests skip."""

import shutil
import subprocess

import pytest


def _available() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                          check=False).returncode == 0


needs_private_mounts = pytest.mark.skipif(not _available(),
                                          reason="needs a private mount namespace (unshare -rm) for tmpfs mounts")
