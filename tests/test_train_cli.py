"""train.py and evaluate.py end to end on a tiny demo set and a tiny network."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, TINY_MODEL, guarded
from test_quiet import TF_STARTUP

TINY = [f"--model.{k}={v}" for k, v in TINY_MODEL.items()] + [
    "--data.demo_train=192", "--data.demo_val=64", "--batch-size", "32", "--data.shuffle_buffer=256"]


def run_cli(script, *args, cache_dir, check=True, **kwargs):
    env = dict(os.environ, VA2ATT_CACHE=str(cache_dir), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(guarded([sys.executable, str(REPO / script), *args]), check=False, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=600, process_group=0, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {args} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    # stdout is a pipe, not a terminal: the console must fall back to one line per epoch by itself.
    proc = run_cli("train.py", "--out", str(run), "--epochs", "2", *TINY, cache_dir=cache_dir)
    return run, proc


@pytest.mark.large
def test_train_writes_a_complete_run_folder(trained_run):
    run, proc = trained_run
    assert "synthetic demo set" in proc.stdout  # said on screen on first use
    assert not TF_STARTUP.search(proc.stderr), proc.stderr[-3000:]  # va2att's own lines only
    assert "\r" not in proc.stdout and "\u2501" not in proc.stdout  # no progress bars in a log file
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("Epoch ") and "/2 (" in line]
    assert len(epoch_lines) == 2 and all(len(line) < 120 and "val CCC V" in line for line in epoch_lines)
    assert "Finished 2 epochs" in proc.stdout and f"python evaluate.py --model {run}" in proc.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["config"]["model"]["width"] == TINY_MODEL["width"]
    assert config["argv"][0] == "train.py" and "--epochs" in config["argv"]
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "val_loss", "val_valence_ccc", "val_arousal_ccc", "lr"} <= set(rows[0])
    assert sorted(p.name for p in (run / "checkpoints").glob("epoch-*.weights.h5")) == [
        "epoch-001.weights.h5", "epoch-002.weights.h5"]
    assert (run / "best.keras").is_file()
    assert any((run / "logs").rglob("events.out.tfevents.*"))
    tags = _event_tags(run / "logs")
    assert {"faces", "circumplex"} <= tags["figures"]  # validation faces and circumplex per epoch
    assert "epoch_learning_rate" in tags["train"] and "epoch_lr" not in tags["train"]  # one learning-rate scalar
    exports = sorted((run / "export" / "va2att").iterdir())
    assert [p.name for p in exports] == ["1"] and (exports[0] / "saved_model.pb").is_file()
    record = json.loads((run / "provenance.json").read_text())  # what trained it, carried into the export
    assert record["data"]["kind"] == "synthetic" and record["data"]["training_faces"] > 0
    assert record["training"]["best_epoch"] in (1, 2) and "val_valence_ccc" in record["training"]["best_metrics"]
    assert json.loads((exports[0] / "assets.extra" / "va2att.json").read_text())["provenance"] == record
    assert "learnt drawn faces" in proc.stdout


def _event_tags(logs):
    import tensorflow as tf

    tags = {}
    for path in logs.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.setdefault(path.parent.name, set()).update(v.tag for v in event.summary.value)
    return tags


@pytest.mark.large
def test_best_model_loads_in_a_fresh_process_through_the_public_api(trained_run, tmp_path):
    """A process that imports only `va2att` loads the compiled best.keras (no import-order dependence),
    and it computes what the run's export serves."""
    run, _ = trained_run
    import numpy as np
    import tensorflow as tf

    images = np.random.default_rng(0).uniform(0, 255, (5, 48, 48, 1)).astype("float32")
    np.save(tmp_path / "images.npy", images)
    served = tf.saved_model.load(str(run / "export" / "va2att" / "1")).signatures["serving_default"]
    expected = {k: v.numpy() for k, v in served(image=tf.constant(images)).items()}
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        import va2att
        model = va2att.load_keras_model({str(run / 'best.keras')!r}, compile=True)
        assert type(model).__name__ == "VA2AttModel", type(model)
        assert type(model.loss["valence"]).__name__ == "TukeyBiweight", model.loss
        out = model.predict(np.load({str(tmp_path / 'images.npy')!r}), verbose=0)
        print(json.dumps({{k: v.tolist() for k, v in out.items()}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES=""), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(loaded) == {"valence", "arousal", "expression"}
    for name in loaded:
        np.testing.assert_allclose(np.array(loaded[name]), expected[name], atol=1e-5)


@pytest.mark.large
def test_evaluate_writes_metrics_report_and_plots(trained_run, tmp_path, cache_dir):
    run, _ = trained_run
    out = tmp_path / "eval"
    proc = run_cli("evaluate.py", "--model", str(run), "--out", str(out), "--json", str(tmp_path / "m.json"),
                   cache_dir=cache_dir)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["n"] > 0
    for dim in ("valence", "arousal"):
        assert set(metrics[dim]) == {"ccc", "rmse", "pcc", "sagr"}
        assert -1 <= metrics[dim]["ccc"] <= 1 and metrics[dim]["rmse"] >= 0
    assert 0 <= metrics["expression"]["accuracy"] <= 1 and len(metrics["per_class"]) == 8
    assert sum(r["n"] for r in metrics["per_class"]) == metrics["n"]
    for png in ("circumplex.png", "confusion.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| valence |" in (out / "report.md").read_text() and "CCC" in proc.stdout
    assert not TF_STARTUP.search(proc.stderr), proc.stderr[-3000:]
    assert "warning" not in proc.stderr  # a demo-trained model scored on the demo set: nothing to warn about

    # The exported SavedModel scores what the Keras model scores.
    scores = {}
    prepared = next(cache_dir.glob("demo-*-192-64-*/prepared"))
    for name, model in (("keras", run / "best.keras"), ("saved_model", run / "export" / "va2att" / "1")):
        run_cli("evaluate.py", "--model", str(model), "--data", str(prepared), "--json",
                str(tmp_path / f"{name}.json"), "--out", str(tmp_path / name), cache_dir=cache_dir)
        scores[name] = json.loads((tmp_path / f"{name}.json").read_text())
    for dim in ("valence", "arousal"):
        for metric in ("ccc", "rmse"):
            assert abs(scores["keras"][dim][metric] - scores["saved_model"][dim][metric]) < 1e-4


@pytest.mark.large
def test_evaluate_reads_the_runs_data_where_it_was_prepared_and_checks_its_outputs_first(trained_run, tmp_path):
    run, _ = trained_run
    elsewhere = tmp_path / "other-cache"
    proc = run_cli("evaluate.py", "--model", str(run), "--out", str(tmp_path / "eval"), cache_dir=elsewhere)
    assert not elsewhere.exists() and "Generating" not in proc.stderr + proc.stdout
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] > 0
    (tmp_path / "a-folder").mkdir()
    proc = run_cli("evaluate.py", "--model", str(run), "--out", str(tmp_path / "eval2"), "--json",
                   str(tmp_path / "a-folder"), cache_dir=elsewhere, check=False)
    assert proc.returncode == 2 and "a-folder: it is a folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "eval2" / "metrics.json").exists()


def test_evaluate_rejects_a_missing_model(tmp_path, cache_dir):
    proc = run_cli("evaluate.py", "--model", str(tmp_path / "nothing"), cache_dir=cache_dir, check=False)
    assert proc.returncode == 2 and "nothing" in proc.stderr


def _wait_for_epoch(run, epoch, proc, timeout=300):
    deadline = time.time() + timeout
    state = run / "checkpoints" / "state.json"
    while time.time() < deadline:
        if state.is_file() and json.loads(state.read_text())["epoch"] >= epoch:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError("no epoch finished in time")


@pytest.mark.large
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_interrupted_run_resumes_and_finishes(tmp_path, cache_dir, sig, spawn):
    run = tmp_path / "run"
    env = dict(os.environ, VA2ATT_CACHE=str(cache_dir), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = spawn([sys.executable, str(REPO / "train.py"), "--out", str(run), "--epochs", "4", "--quiet",
                  *TINY, "--data.demo_train=512"], cwd=REPO, env=env, text=True,
                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for_epoch(run, 1, proc)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert 1 <= state["epoch"] < 4, "the run was not interrupted mid-way"
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and "--resume" in output
        assert not (run / "checkpoints" / "interrupted.weights.h5").exists()  # the resume point is the epoch
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not list(run.rglob("*.tmp*")) or sig == signal.SIGKILL
    done = state["epoch"]
    resumed = run_cli("train.py", "--resume", str(run), "--quiet", cache_dir=cache_dir)
    assert f"after epoch {done} of 4" in resumed.stdout
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 5))
    assert json.loads((run / "checkpoints" / "state.json").read_text())["epoch"] == 4
    assert (run / "export" / "va2att" / "1" / "saved_model.pb").is_file()
    # A second resume of a finished run does nothing but keep its single export.
    run_cli("train.py", "--resume", str(run), "--quiet", cache_dir=cache_dir)
    assert [p.name for p in (run / "export" / "va2att").iterdir()] == ["1"]


def test_bad_flags_are_rejected_with_allowed_values(tmp_path, cache_dir):
    proc = run_cli("train.py", "--out", str(tmp_path / "r"), "--set", "model.blocks=7", cache_dir=cache_dir,
                   check=False)
    assert proc.returncode == 2 and "model.blocks=7" in proc.stderr and "0..3" in proc.stderr
    proc = run_cli("train.py", "--out", str(tmp_path / "r"), "--set", "model.nope=1", cache_dir=cache_dir,
                   check=False)
    assert proc.returncode == 2 and "allowed keys" in proc.stderr
    proc = run_cli("train.py", "--head", "cnn", cache_dir=cache_dir, check=False)
    assert proc.returncode == 2 and "2mt" in proc.stderr
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_bad_data_path_leaves_no_run_folder(tmp_path, cache_dir):
    run = tmp_path / "mine"
    proc = run_cli("train.py", "--data", str(tmp_path / "AffectNte"), "--out", str(run), cache_dir=cache_dir,
                   check=False)
    assert proc.returncode == 2 and "AffectNte" in proc.stderr and "no such folder" in proc.stderr
    assert not run.exists()


def test_a_run_folder_that_completed_no_epoch_is_started_over(tmp_path):
    from va2att import run_dir
    from va2att.config import RunConfig, apply_overrides
    from va2att.training import trainer

    run = tmp_path / "mine"
    trainer.start_run(apply_overrides(RunConfig(), ["data.data=/typo"]), run, ["train.py"])
    (run / "logs").mkdir()
    lines = []
    trainer.start_run(RunConfig(), run, ["train.py", "--out", str(run)], log=lines.append)  # the corrected command
    assert run_dir.load_run_config(run) == RunConfig() and not (run / "logs").exists()
    assert "completed no epoch" in lines[0]
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "state.json").write_text(json.dumps({"epoch": 1}))
    with pytest.raises(trainer.RunExistsError, match="--resume"):
        trainer.start_run(RunConfig(), run, ["train.py"])
