"""One writer per run or preparation folder: a second process is refused, naming the holder; kill -9 frees it."""

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_MODEL

from va2att.util import locking

HOLD = "import sys, time; from va2att.util.locking import folder_lock\n" \
       "with folder_lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True); time.sleep(120)\n"


@pytest.fixture
def holder():
    """Start processes that hold a folder's lock; each is killed (-9) at the end of the test."""
    procs = []

    def start(folder, what="training run"):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what], stdout=subprocess.PIPE, text=True,
                                cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=30)


def test_a_second_writer_is_refused_with_the_holders_pid_and_kill_9_frees_the_folder(tmp_path, holder):
    proc = holder(tmp_path / "run")
    with pytest.raises(locking.FolderInUseError, match=f"process {proc.pid} is writing a training run"), \
            locking.folder_lock(tmp_path / "run"):
        pass
    assert locking.lock_holder(tmp_path / "run") == (proc.pid, "training run")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with locking.folder_lock(tmp_path / "run", "training run"):  # no stale lock after kill -9
        assert locking.lock_holder(tmp_path / "run") == (os.getpid(), "training run")
    with locking.folder_lock(tmp_path / "run"):  # released on leaving the block
        pass


def test_prepare_refuses_a_folder_another_process_prepares(tmp_path, holder):
    from va2att.cli import prepare as prepare_cli
    from va2att.data import preparation
    from va2att.data.synthetic import affectnet as synthetic

    root = synthetic.generate(tmp_path / "raw", train=4, val=2, seed=1, workers=1)
    proc = holder(tmp_path / "out", "preparation")
    with pytest.raises(locking.FolderInUseError, match=f"process {proc.pid} is writing a preparation"):
        preparation.prepare(root, tmp_path / "out", workers=1, progress=False)
    assert prepare_cli.main([str(root), str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 2


def test_resume_of_a_run_that_is_still_training_is_refused(tmp_path, holder, cache_dir):
    from va2att.config import RunConfig, apply_overrides
    from va2att.training import trainer

    cfg = apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()])
    run = trainer.start_run(cfg, tmp_path / "run", ["train.py"])
    proc = holder(run.root)
    started = time.monotonic()
    child = subprocess.run([sys.executable, str(REPO / "train.py"), "--resume", str(run.root)], capture_output=True,
                           text=True, cwd=REPO, timeout=300, check=False,
                           env=dict(os.environ, VA2ATT_CACHE=str(cache_dir), CUDA_VISIBLE_DEVICES=""))
    assert child.returncode == 2, child.stderr[-2000:]
    assert f"process {proc.pid} is writing a training run" in child.stderr
    assert "Traceback" not in child.stderr
    assert not (run.checkpoints / "state.json").exists() and time.monotonic() - started < 120
