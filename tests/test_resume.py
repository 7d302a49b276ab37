"""A resumed run is the run that was interrupted: bit-identical weights, damaged files handled in one line."""

import json

import numpy as np
import pytest
from conftest import TINY_MODEL

from va2att import run_dir
from va2att.config import RunConfig, apply_overrides
from va2att.training import trainer


def config(prepared, epochs=2):
    return apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        f"data.data={prepared}", "data.deterministic=true", "data.batch_size=8", "data.shuffle_buffer=64",
        f"train.epochs={epochs}", "train.seed=7"])


def weights(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if hasattr(obj, "shape") else None)
    return out


@pytest.fixture(scope="module")
def runs(prepared, tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    quiet = {"verbose": 0, "log": lambda *a: None}
    whole = trainer.start_run(config(prepared), base / "whole", ["test"])
    trainer.train(whole.root, **quiet)
    resumed = trainer.start_run(config(prepared), base / "resumed", ["test"])
    trainer.train(resumed.root, epochs=1, **quiet)  # as if killed after epoch 1
    (resumed.checkpoints / ".epoch-002-deadbeef.tmp.weights.h5").write_bytes(b"half")  # left by a kill -9
    trainer.train(resumed.root, **quiet)
    return whole, resumed


@pytest.mark.large
def test_a_resumed_deterministic_run_is_bit_identical_to_an_uninterrupted_one(runs):
    whole, resumed = runs
    a, b = weights(whole.checkpoint(2)), weights(resumed.checkpoint(2))
    assert a.keys() == b.keys() and len(a) > 10
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert json.loads(whole.state.read_text())["history"] == json.loads(resumed.state.read_text())["history"]
    assert not list(resumed.checkpoints.glob(".*.tmp*"))  # the killed writer's temporary is gone


@pytest.mark.large
def test_a_truncated_checkpoint_falls_back_to_the_previous_one(runs, tmp_path):
    import shutil

    _, resumed = runs
    run = tmp_path / "run"
    shutil.copytree(resumed.root, run)
    last = run / "checkpoints" / "epoch-002.weights.h5"
    last.write_bytes(last.read_bytes()[:1000])
    lines = []  # the copied run keeps its export, so only epoch 2 is redone
    result = trainer.train(run, verbose=0, log=lines.append)
    assert any("epoch-002.weights.h5 cannot be read" in line for line in lines)
    assert any("resuming from epoch 1" in line for line in lines)
    assert result.epochs_done == 2


@pytest.mark.parametrize("content", ["[]", "{}", '{"config": {"model": []}}', "\xff not json"])
def test_a_damaged_config_json_is_one_clear_error(tmp_path, content):
    (tmp_path / "config.json").write_text(content, encoding="latin-1")
    with pytest.raises(ValueError, match="config.json is damaged"):
        run_dir.load_run_config(tmp_path)


def test_a_run_trained_on_to_a_new_best_epoch_exports_it_as_a_new_version(tmp_path):
    """`train.py --resume RUN --epochs N` on a finished run: the newest export (what TF Serving and
    `load_inference_model(RUN)` take) is the new best model, and an unchanged best is not exported again."""
    from va2att.config import ModelConfig
    from va2att.model.network import build_model
    from va2att.run_dir import RunDir
    from va2att.util import fileio

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    build_model(ModelConfig(**TINY_MODEL)).save(run.best)
    quiet = lambda *a: None
    first = trainer._export_best(run, {"best_epoch": 10, "history": []}, quiet)
    state = fileio.read_json(run.state)
    assert first.name == "1" and state["export_epoch"] == 10

    assert trainer._export_best(run, state, quiet, resumed_after=10) == first  # best unchanged: kept
    second = trainer._export_best(run, dict(state, best_epoch=12), quiet, resumed_after=10)
    assert second.name == "2" and fileio.read_json(run.state)["export_epoch"] == 12

    legacy = {"best_epoch": 12, "export": "export/va2att/2", "history": []}  # a state from before export_epoch
    assert trainer._export_best(run, legacy, quiet, resumed_after=12) == second
    assert trainer._export_best(run, legacy, quiet, resumed_after=10).name == "3"  # the best came after the resume


@pytest.mark.parametrize("content", ["[]", "\xff not json", '{"epoch": "x", "history": {}}', '{"history": [1, {"epoch": 1}]}'])
def test_a_damaged_state_json_reads_as_no_progress(tmp_path, content):
    from va2att.run_dir import RunDir

    state = RunDir(tmp_path).state
    state.parent.mkdir()
    state.write_text(content, encoding="latin-1")
    assert run_dir.completed_epochs(tmp_path) == 0
    assert run_dir.run_history(tmp_path) == ([{"epoch": 1}] if content.startswith('{"history": [') else [])


def test_a_resumed_run_reads_its_data_where_the_run_prepared_it(tmp_path, monkeypatch):
    """Started with --cache-dir A, resumed where the cache is elsewhere: nothing is generated or prepared again."""
    from va2att.data.source import resolve_data

    first, elsewhere = tmp_path / "cache-a", tmp_path / "cache-b"
    cfg = apply_overrides(config("demo", epochs=1), ["data.demo_train=48", "data.demo_val=16", "data.prepare_workers=1"])
    prepared = resolve_data(cfg.data, cache_dir=first, log=lambda *a: None)
    run = trainer.start_run(cfg, tmp_path / "run", ["test"], prepared=prepared, cache_dir=first)
    assert run_dir.read_data_record(run.root)["prepared"] == [str(prepared.resolve())]
    trainer.train(run.root, cache_dir=first, verbose=0, log=lambda *a: None)
    monkeypatch.setenv("VA2ATT_CACHE", str(elsewhere))
    lines = []
    result = trainer.train(run.root, epochs=2, verbose=0, log=lines.append)
    assert result.epochs_done == 2 and not elsewhere.exists(), lines
    assert not any("Preparing" in line or "Generating" in line for line in lines)
    # A run folder written before data.json existed resumes from the cache it is given, and records it.
    from va2att.data.source import run_data

    run.data.unlink()
    assert run_data(run, cfg.data, cache_dir=first, log=lines.append) == prepared
    assert run_dir.read_data_record(run.root) == {"prepared": [str(prepared.resolve())], "cache_dir": str(first.resolve())}
    assert trainer.resume_command(run.root, first).endswith(f"--resume {run.root} --cache-dir {first}")
