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
