"""Training under storage faults and interruptions: one line saying what to fix, nothing lost, the same command resumes."""

import errno
import os
import textwrap

import numpy as np
import pytest
from conftest import TINY_MODEL

from va2att import run_dir
from va2att.config import RunConfig, apply_overrides
from va2att.training import trainer


def config(prepared, epochs=2):
    return apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        f"data.data={prepared}", "data.batch_size=8", "data.shuffle_buffer=64", f"train.epochs={epochs}",
        "train.precise_bn_samples=0"])


def _failing(original, error, after=0, only=None):
    """`original`, raising `error` from its call number `after` + 1 on (counting only calls whose first
    argument is a path named `only`, when given)."""
    calls = []

    def call(*args, **kwargs):
        if only is None or getattr(args[0], "name", None) == only:
            calls.append(1)
            if len(calls) > after:
                raise error
        return original(*args, **kwargs)

    return call


def test_a_full_disk_stops_training_in_one_line_and_the_run_resumes(prepared, tmp_path, monkeypatch):
    from va2att.training import callbacks

    run = trainer.start_run(config(prepared), tmp_path / "run", ["test"])
    full = OSError(errno.ENOSPC, "No space left on device")
    with monkeypatch.context() as patch:  # epoch 1 commits; epoch 2's state.json does not fit on the disk
        patch.setattr(callbacks.fileio, "write_json", _failing(callbacks.fileio.write_json, full, 1, "state.json"))
        with pytest.raises(trainer.TrainStorageError) as caught:
            trainer.train(run.root, verbose=0, log=lambda *a: None)
    message = str(caught.value)
    assert "\n" not in message and "disk is full" in message and "last complete epoch (1)" in message
    assert f"python train.py --resume {run.root}" in message
    assert run_dir.completed_epochs(run.root) == 1
    result = trainer.train(run.root, verbose=0, log=lambda *a: None)  # space freed: the same run goes on
    assert result.epochs_done == 2 and result.export_dir is not None


def test_ctrl_c_during_the_export_says_how_to_export_and_the_resume_does(prepared, tmp_path, monkeypatch):
    from va2att.serving import export

    run = trainer.start_run(config(prepared, epochs=1), tmp_path / "run", ["test"])
    lines = []
    with monkeypatch.context() as patch:
        patch.setattr(export, "export_saved_model", _failing(export.export_saved_model, KeyboardInterrupt()))
        result = trainer.train(run.root, verbose=0, log=lines.append)
    assert result.interrupted and result.export_dir is None and result.epochs_done == 1
    assert any("Interrupted during the export" in line and "--resume" in line for line in lines), lines
    resumed = trainer.train(run.root, verbose=0, log=lines.append)
    assert not resumed.interrupted and resumed.export_dir is not None and resumed.export_dir.is_dir()
    assert np.isfinite(resumed.best_mean_ccc)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.ENOSPC])
def test_an_unwritable_out_folder_is_one_line(prepared, tmp_path, monkeypatch, capsys, code):
    from va2att.cli import train as train_cli
    from va2att.util import fileio

    monkeypatch.setattr(fileio, "write_text", _failing(fileio.write_text, OSError(code, "refused")))
    status = train_cli.main(["--out", str(tmp_path / "run"), "--data", str(prepared), "--epochs", "1", "--quiet",
                             *[f"--model.{k}={v}" for k, v in TINY_MODEL.items()]])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "cannot write the run folder" in err, err
    assert "Traceback" not in err


def _damage(folder, how):
    """Damage the first training shard of a prepared folder: cut it, or flip bytes inside a record."""
    shard = min(folder.glob("training-*.tfrecord"))
    data = bytearray(shard.read_bytes())
    if how == "truncated":
        shard.write_bytes(bytes(data[: len(data) // 2]))
    else:
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        shard.write_bytes(bytes(data))
    return shard


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_shard_is_named_in_one_line(prepared, tmp_path, how, capsys):
    import shutil

    from va2att.cli import train as train_cli
    from va2att.data.pipeline import damaged_shards
    from va2att.data.preparation import preparation_problem

    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    shard = _damage(copy, how)
    if how == "truncated":  # TensorFlow reads a cut record as the end of the file: the size recorded tells
        assert str(shard) in preparation_problem(copy) and "bytes" in preparation_problem(copy)
    else:  # the same size, but a record's checksum fails
        assert preparation_problem(copy) is None and [name for name, _ in damaged_shards(copy)] == [str(shard)]
    run = trainer.start_run(config(copy, epochs=1), tmp_path / "run", ["test"])
    with pytest.raises(ValueError) as caught:
        trainer.train(run.root, verbose=0, log=lambda *a: None)
    message = str(caught.value)
    assert "\n" not in message and str(shard) in message and "python -m va2att.data.prepare" in message
    status = train_cli.main(["--resume", str(run.root), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and str(shard) in err and "Traceback" not in err


def test_a_cut_report_is_no_preparation(prepared, tmp_path):
    import json
    import shutil

    from va2att.config import DataConfig
    from va2att.data.source import resolve_data

    copy = tmp_path / "prepared"
    shutil.copytree(prepared, copy)
    text = (copy / "report.json").read_text()
    (copy / "report.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="report.json cannot be read"):
        resolve_data(DataConfig(data=str(copy)))
    report = json.loads(text)
    report["splits"]["training"]["shards"] = "training-00000.tfrecord"  # a list cut to a string
    (copy / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="report.json is damaged"):
        resolve_data(DataConfig(data=str(copy)))


def test_an_unwritable_export_is_found_before_training_and_a_failed_export_is_one_line(prepared, tmp_path,
                                                                                        monkeypatch):
    from va2att.serving import export

    run = trainer.start_run(config(prepared, epochs=1), tmp_path / "run", ["test"])
    run.export_root.parent.mkdir(parents=True)
    run.export_root.write_text("a file where the export folder goes")
    with pytest.raises(trainer.TrainStorageError, match="it is a file; give a folder"):
        trainer.train(run.root, verbose=0, log=lambda *a: None)
    assert run_dir.completed_epochs(run.root) == 0  # refused before any epoch
    run.export_root.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(export, "export_saved_model",
                      _failing(export.export_saved_model, export.ExportError("Cannot write the export: the disk is full.")))
        with pytest.raises(trainer.TrainStorageError) as caught:
            trainer.train(run.root, verbose=0, log=lambda *a: None)
    assert "\n" not in str(caught.value) and "Every epoch is complete" in str(caught.value)
    assert trainer.train(run.root, verbose=0, log=lambda *a: None).export_dir.is_dir()


_CTRL_C_WHILE_PREPARING = textwrap.dedent("""
    import os, signal, sys
    from va2att.cli import train as train_cli
    from va2att.data import source
    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
    source.prepare = interrupted
    sys.exit(train_cli.main(sys.argv[1:]))
""")


def test_ctrl_c_while_train_prepares_the_data_is_one_line(tmp_path, spawn):
    import subprocess
    import sys

    env = dict(os.environ, VA2ATT_CACHE=str(tmp_path / "cache"))
    args = ["--out", str(tmp_path / "run"), "--data.demo_train=16", "--data.demo_val=8", "--data.prepare_workers=1"]
    proc = spawn([sys.executable, "-c", _CTRL_C_WHILE_PREPARING, *args], stderr=subprocess.PIPE, text=True, env=env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "Interrupted. Data prepared so far is kept; the same command resumes from it." in err
    assert not (tmp_path / "run").exists()
