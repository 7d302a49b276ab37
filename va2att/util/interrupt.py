"""Ctrl-C taken where a loop can stop cleanly.

Python raises KeyboardInterrupt wherever the interpreter is when SIGINT arrives. When that is inside a
TensorFlow call that is building an exception of its own (the MTCNN detector's eager ops can be), pybind11
replaces both with a RuntimeError ("MISMATCH of original and normalized active exception types"), which no
`except KeyboardInterrupt` catches: the command ends with a traceback instead of its report and its exit
status 130. `deferred_interrupt()` records the first Ctrl-C and raises KeyboardInterrupt at the loop's next
`check()`, between items; a second Ctrl-C raises at once, so a step that hangs can still be stopped.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Interrupt:
    """Whether Ctrl-C was pressed since the last `check()`."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        """Raise the pending Ctrl-C as KeyboardInterrupt here."""
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    def _handle(self, signum, frame) -> None:
        if self.requested:  # the second press: stop now
            raise KeyboardInterrupt
        self.requested = True


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Interrupt]:
    """Within the block Ctrl-C is raised at `check()` (or at once on a second press); the previous handler is
    restored after it. Off the main thread, or where SIGINT has a handler other than Python's own (an
    embedding application's), nothing is changed and `check()` never raises."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield interrupt
        return
    previous = signal.signal(signal.SIGINT, interrupt._handle)
    try:
        yield interrupt
    finally:
        signal.signal(signal.SIGINT, previous)
