"""Two training workers on 127.0.0.1 (CPU) under MultiWorkerMirroredStrategy."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, TINY_MODEL, kill_group

pytestmark = pytest.mark.large

ARGS = [f"--model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "--data.demo_train=256", "--data.demo_val=64", "--batch-size", "32", "--data.shuffle_buffer=256",
    "--strategy", "multiworker", "--quiet"]


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def start_workers(spawn, run, extra, cache_dir, tmp_path, tag):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = dict(os.environ, VA2ATT_CACHE=str(cache_dir), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(tmp_path / f"{tag}-worker{index}.log", "w")  # noqa: SIM115 - closed in finish()
        procs.append((spawn([sys.executable, str(REPO / "train.py"), *extra], cwd=REPO, env=env,
                            stdout=log, stderr=subprocess.STDOUT), log))
    return procs


def finish(procs, timeout=600):
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=timeout))
        finally:
            kill_group(proc)  # the worker and anything it started
            log.close()
    return codes


def digests(tmp_path, tag):
    found = {}
    for index in range(2):
        text = (tmp_path / f"{tag}-worker{index}.log").read_text()
        match = re.search(r"Worker (\d): weights digest (\w+)", text)
        assert match, text[-3000:]
        found[int(match.group(1))] = match.group(2)
    return found


def test_two_workers_train_identical_models_and_write_once(tmp_path, cache_dir, spawn):
    run = tmp_path / "run"
    procs = start_workers(spawn, run, ["--out", str(run), "--epochs", "1", *ARGS], cache_dir, tmp_path, "a")
    codes = finish(procs)
    logs = [(tmp_path / f"a-worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    d = digests(tmp_path, "a")
    assert d[0] == d[1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["epoch-001.weights.h5", "state.json"]
    assert [p.name for p in (run / "export" / "va2att").iterdir()] == ["1"]
    assert "Run folder" in logs[0] and "Run folder" not in logs[1]  # only the chief creates and writes
    assert "Exported" in logs[0] and "Exported" not in logs[1]
    assert not [p for p in run.rglob("*") if ".tmp" in p.name]


def test_killed_worker_restart_resumes_from_last_checkpoint(tmp_path, cache_dir, spawn):
    run = tmp_path / "run"
    procs = start_workers(spawn, run, ["--out", str(run), "--epochs", "3", *ARGS], cache_dir, tmp_path, "b")
    state = run / "checkpoints" / "state.json"
    deadline = time.time() + 400
    while not (state.is_file() and json.loads(state.read_text())["epoch"] >= 1):
        assert time.time() < deadline and all(p.poll() is None for p, _ in procs), "no epoch finished:\n" + "\n".join(
            (tmp_path / f"b-worker{i}.log").read_text()[-3000:] for i in range(2))
        time.sleep(0.05)
    procs[1][0].send_signal(signal.SIGKILL)  # a worker dies mid-run
    try:
        procs[0][0].wait(timeout=15)  # the chief may notice its peer is gone; else it is stopped with it
    except subprocess.TimeoutExpired:
        kill_group(procs[0][0])
    finish(procs)
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3
    procs = start_workers(spawn, run, ["--resume", str(run), "--quiet"], cache_dir, tmp_path, "c")
    codes = finish(procs)
    logs = [(tmp_path / f"c-worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert all(f"after epoch {done} of 3" in log for log in logs)
    assert json.loads(state.read_text())["epoch"] == 3
    d = digests(tmp_path, "c")
    assert d[0] == d[1]
    history = (run / "history.csv").read_text().strip().splitlines()
    assert [int(line.split(",")[0]) for line in history[1:]] == list(range(1, 4))
    assert [p.name for p in (run / "export" / "va2att").iterdir()] == ["1"]
