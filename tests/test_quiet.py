"""The command-line tools' console shows va2att's lines, not TensorFlow's start-up logging."""

import os
import re
import subprocess
import sys

from conftest import REPO

# What TensorFlow prints while it loads on a machine like this one (any of these lines).
TF_STARTUP = re.compile(r"absl::InitializeLog|oneDNN custom operations|cuda drivers|cuInit|cpu_feature_guard|"
                        r"^[IWE]\d{4} \d\d:\d\d:\d\d", re.MULTILINE)

SCRIPT = "from va2att.util.quiet import quiet_tensorflow; quiet_tensorflow(); import tensorflow as tf; print(int(tf.constant(1) + 1))"


def _run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "VA2ATT_VERBOSE")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_tensorflow_loads_without_start_up_lines_and_verbose_restores_them():
    quiet = _run({})
    assert quiet.returncode == 0 and quiet.stdout.strip() == "2", quiet.stderr[-2000:]
    assert not TF_STARTUP.search(quiet.stderr), quiet.stderr
    verbose = _run({"VA2ATT_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert verbose.returncode == 0
    # This TensorFlow build logs on start-up here; the variable must let it through.
    assert TF_STARTUP.search(verbose.stderr) or not verbose.stderr, verbose.stderr
