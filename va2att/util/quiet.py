"""Keep TensorFlow's start-up logging off the console of va2att's command-line tools.

TensorFlow's libraries print their start-up lines (oneDNN, "Could not find cuda drivers", CPU
features, a `cuInit` error on a machine without a GPU, each block after "All log messages before
absl::InitializeLog() ...") while they load, before any log level applies. `quiet_tensorflow()`
imports TensorFlow and lists its devices with the process's stderr pointed at /dev/null, then
sets TensorFlow's C++ level (`TF_CPP_MIN_LOG_LEVEL=2`: errors only) and Python and absl loggers
to errors only; the tools call it before anything else imports TensorFlow.

`--verbose` on a tool, or `VA2ATT_VERBOSE=1` in the environment, leaves all of it as TensorFlow
prints it (for debugging).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

VERBOSE_ENV = "VA2ATT_VERBOSE"


def verbose_requested(flag: bool = False) -> bool:
    """True when `flag` is set or `VA2ATT_VERBOSE` holds anything but "", 0, false or no."""
    return bool(flag) or os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextlib.contextmanager
def stderr_silenced():
    """Point file descriptor 2 at /dev/null within the block (C++ libraries write there directly, whatever
    `sys.stderr` is: under a test runner's capture or a redirect it may be another descriptor or none)."""
    try:
        sys.stderr.flush()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        pass
    fd = 2
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Load TensorFlow without its start-up lines and keep its later logging to errors (see module doc).

    Does nothing when `verbose` is true or `VA2ATT_VERBOSE` is set. An import error is raised as usual,
    after stderr is restored.
    """
    if verbose_requested(verbose):
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules:
        with stderr_silenced():
            import tensorflow as tf

            tf.config.list_physical_devices()  # loads the device libraries (the cuInit error) here
    import logging

    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel(logging.ERROR)
