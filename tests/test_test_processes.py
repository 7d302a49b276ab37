"""Processes that tests start die with the test, even when the test process itself is killed."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has already died
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="the guard asks Linux (prctl PR_SET_PDEATHSIG) to kill the worker; no other system has it")
def test_a_started_process_dies_when_the_process_that_started_it_is_killed():
    # A stand-in for pytest: it starts a long "worker" the way the tests do, then is killed (a timeout).
    starter = textwrap.dedent(f"""
        import subprocess, sys, time
        sys.path.insert(0, {str(REPO / "tests")!r})
        from conftest import guarded
        worker = subprocess.Popen(guarded([sys.executable, "-c", "import time; time.sleep(120)"]), process_group=0)
        print(worker.pid, flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(proc.stdout.readline())
        time.sleep(0.5)  # the worker has exec'd its program
        assert _alive(worker)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 20
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the process that started it"
    finally:
        proc.kill()
        try:
            os.kill(worker, signal.SIGKILL)
        except (ProcessLookupError, NameError, UnboundLocalError):
            pass
