import os
import sys
from pathlib import Path

# Quiet TensorFlow's C++ start-up chatter and keep tests on the CPU.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

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
    from va2att.data import prepare, synthetic

    base = tmp_path_factory.mktemp("prepared")
    root = synthetic.generate(base / "raw", train=40, val=12, seed=5, workers=1)
    prepare.prepare(root, base / "prepared", workers=1, shard_size=16, progress=False)
    return base / "prepared"
