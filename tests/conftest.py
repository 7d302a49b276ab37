import os
import signal
import subprocess
import sys
from pathlib import Path

# Quiet TensorFlow's C++ start-up chatter and keep tests on the CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
# The repository (va2att from the checkout) and benchmarks/ (its scripts, which tests/test_benchmarks.py runs).
for folder in (REPO, REPO / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# A tiny network that trains in seconds on a CPU.
TINY_MODEL = {"width": 8, "level_dim": 16, "gru_units": 8, "dimensional_units": 16, "categorical_units": 16}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A private data cache for the whole test session (never the user's ~/.cache)."""
    path = tmp_path_factory.mktemp("va2att-cache")
    os.environ["VA2ATT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """A small prepared synthetic set (40 training, 12 validation faces), made in seconds."""
    from va2att.data import preparation
    from va2att.data.synthetic import affectnet as synthetic

    base = tmp_path_factory.mktemp("prepared")
    root = synthetic.generate(base / "raw", train=40, val=12, seed=5, workers=1)
    preparation.prepare(root, base / "prepared", workers=1, shard_size=16, progress=False)
    return base / "prepared"


# Run as `python -c _GUARD program args...`: asks Linux to SIGKILL the process when its parent (pytest) dies,
# then becomes the program (the request survives exec). No preexec_fn: pytest has TensorFlow's threads running.
# It also restores Ctrl-C (SIGINT), which a shell ignores in jobs it starts in the background (`pytest &`).
_GUARD = ("import ctypes, os, signal, sys\n"
          "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
          "try:\n"
          "    ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL\n"
          "except (OSError, AttributeError):\n"
          "    pass\n"
          "os.execv(sys.argv[1], sys.argv[1:])\n")


def guarded(args) -> list[str]:
    """`args` (a command line) wrapped so that the process dies with the test process, even when pytest
    itself is killed (a timeout) and no teardown runs. Start it with `process_group=0` (its own group,
    so `kill_group` ends it with all its children)."""
    args = [str(a) for a in args]
    return [sys.executable, "-c", _GUARD, *args] if sys.platform.startswith("linux") else args


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (started with `process_group=0`) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture()
def spawn():
    """`spawn(args, **popen_kwargs) -> Popen`: processes that end with the test, whatever happens in it."""
    started = []

    def start(args, **kwargs):
        proc = subprocess.Popen(guarded(args), process_group=0, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        kill_group(proc)


def write_faces(folder, faces) -> list[str]:
    """Each face as `folder/face<i>.png`; the paths, as strings."""
    import cv2

    paths = []
    for i, face in enumerate(faces):
        path = folder / f"face{i}.png"
        cv2.imwrite(str(path), face)
        paths.append(str(path))
    return paths


class Probe:
    """A stand-in for an InferenceModel whose answers differ between a crop and its mirror (a fixed
    function of the pixels: valence from the left half, arousal from the top half)."""

    outputs = ("valence", "arousal", "expression")
    num_classes = 8

    def __call__(self, images):
        left = images[:, :, :24].mean(axis=(1, 2, 3)) / 127.5 - 1.0
        top = images[:, :24].mean(axis=(1, 2, 3)) / 127.5 - 1.0
        logits = np.stack([images[:, 6 * k, 5 * k, 0] for k in range(8)], axis=1) / 64.0
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        return {"valence": left[:, None], "arousal": top[:, None], "expression": probabilities}
