"""The experiments package: table definitions, aggregation and rendering, resumability, and a smoke run."""

import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import REPO

from va2att.cli.experiments import parse
from va2att.config import ModelConfig, to_dict
from va2att.experiments import runner
from va2att.experiments.tables import TABLES, run_config


def _doc_field(table, field: str) -> str:
    (line,) = [line.strip() for line in table.doc.splitlines() if line.strip().startswith(field)]
    return line[len(field):].strip()


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_variant_builds_a_valid_config_and_a_documented_table(name):
    table = TABLES[name]
    # The documented command is one the experiments CLI accepts, for this very table.
    command = shlex.split(_doc_field(table, "Command:"))
    assert command[:3] == ["python", "-m", "va2att.experiments"]
    assert parse(command[3:]).table == name
    assert _doc_field(table, "Runtime:")
    slugs = set()
    for variant in table.variants:
        assert set(variant.paper) <= set(table.metrics), variant.name
        if not variant.trained:
            continue
        for part in variant.runs():
            slugs.add(runner.run_dir_for("OUT", table, variant, part, 0))
            for smoke in (False, True):
                cfg = run_config(variant, part, data="demo", seed=3, smoke=smoke)
                assert cfg.train.seed == 3
                assert cfg.model.width == (8 if smoke else ModelConfig().width)
                assert cfg.train.epochs == (2 if smoke else 10)
    assert len(slugs) == sum(len(v.runs()) for v in table.trained())  # one folder per run


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_documented_expected_figures_are_the_rows_paper_figures(name):
    """A table's docstring (what users read) and its rows (what the report prints beside ours) must agree."""
    table = TABLES[name]
    expected = _doc_field(table, "Expected")
    rows = {v.name: v for v in table.variants}
    if expected.startswith("CCC (paper"):  # "Name 0.506, Name 0.518, ..."
        figures = re.findall(r"([^,:]+?) (\d\.\d+)(?:,|\.$)", expected.partition(":")[2])
        assert figures, expected
        for row, figure in figures:
            assert rows[row.strip()].paper["mean.ccc"] == float(figure), (row, figure)
    elif expected.startswith("accuracy (paper)"):  # the trained row's figure
        (trained,) = table.trained()
        assert trained.paper["expression.accuracy"] == float(expected.rpartition(" ")[2].rstrip("."))
    else:  # a table without published figures for every row says which one it compares with
        assert all("mean.ccc" not in v.paper or v.paper["mean.ccc"] == 0.635 for v in table.variants), expected
        assert "0.635" in expected


def test_variants_change_what_the_paper_changes():
    def model(table, name, smoke=False):
        variant = next(v for v in TABLES[table].variants if v.name == name)
        return [run_config(variant, p, data="demo", seed=0, smoke=smoke).model for p in variant.runs()]

    (base,) = model("table1", "MultitaskCNN")
    assert (base.blocks, base.second_level, base.head) == (0, False, "mt")
    (first,) = model("table1", "1st-level")
    assert (first.blocks, first.second_level, first.head) == (2, False, "mt")
    (second,) = model("table1", "2nd-level")
    assert (second.blocks, second.second_level, second.head) == (2, True, "mt")
    assert [model("table2", f"{n}-Block")[0].blocks for n in (1, 2, 3)] == [1, 2, 3]
    assert [m.head for m in model("table3", "2Att-CNN")] == ["single-valence", "single-arousal"]
    assert model("table3", "2Att-Mt")[0].head == "mt" and model("table3", "2Att-2Mt")[0].head == "2mt"
    widths = [(m.dimensional_units, m.categorical_units)
              for name in ("128/128", "256/128", "256/256") for m in model("table4", name)]
    assert widths == [(128, 128), (256, 128), (256, 256)]
    smoke = [(m.dimensional_units, m.categorical_units)
             for name in ("128/128", "256/128", "256/256") for m in model("table4", name, smoke=True)]
    assert smoke == [(16, 16), (32, 16), (32, 32)]
    assert [model("table5", n)[0].loss for n in ("MSE", "Tukey's biweight")] == ["mse", "tukey"]
    ours = next(v for v in TABLES["table6"].variants if v.trained)
    assert ours.classes == 7 and model("table6", ours.name)[0].num_classes == 8  # trained on 8, scored on 7
    assert [model("gcn", v.name)[0].head for v in TABLES["gcn"].variants] == ["2mt", "gcn"]


def _fake_finished_run(run_dir, cfg, valence, arousal, accuracy=0.5):
    from va2att.util import fileio

    fileio.write_json(run_dir / "config.json", {"config": to_dict(cfg), "argv": []})
    (run_dir / "export" / "va2att" / "1").mkdir(parents=True)
    (run_dir / "export" / "va2att" / "1" / "saved_model.pb").write_bytes(b"")
    metrics = {"n": 64, "expression": {"accuracy": accuracy, "macro_f1": 0.1}}
    for name, (ccc, rmse) in (("valence", valence), ("arousal", arousal)):
        if ccc is not None:
            metrics[name] = {"ccc": ccc, "rmse": rmse, "pcc": 0.0, "sagr": 0.0}
    if valence[0] is not None and arousal[0] is not None:
        metrics["mean"] = {"ccc": (valence[0] + arousal[0]) / 2, "rmse": (valence[1] + arousal[1]) / 2,
                           "pcc": 0.0, "sagr": 0.0}
    fileio.write_json(run_dir / runner.METRICS_FILE, {"metrics": metrics})


def test_rows_combine_parts_and_aggregate_over_repeats(tmp_path):
    table = TABLES["table3"]
    cnn, mt = table.variants[2], table.variants[3]
    for seed, (v, a) in enumerate([(0.5, 0.3), (0.7, 0.5)]):
        for part in cnn.runs():
            run_dir = runner.run_dir_for(tmp_path, table, cnn, part, seed)
            cfg = run_config(cnn, part, data="demo", seed=seed)
            own = (v, 0.4) if part.name == "valence" else (None, None)
            other = (a, 0.2) if part.name == "arousal" else (None, None)
            _fake_finished_run(run_dir, cfg, own, other)
    # 2Att-Mt: only repeat 0 finished; 2Att-2Mt: none.
    _fake_finished_run(runner.run_dir_for(tmp_path, table, mt, mt.runs()[0], 0),
                       run_config(mt, mt.runs()[0], data="demo", seed=0), (0.6, 0.3), (0.4, 0.5))
    report = runner.collect(table, tmp_path, 2, smoke=False, data="demo")
    rows = {v["name"]: v for v in report["variants"]}
    s = rows["2Att-CNN"]["summary"]
    assert s["valence.ccc"]["mean"] == pytest.approx(0.6) and s["valence.ccc"]["std"] == pytest.approx(0.1414, abs=1e-4)
    assert s["arousal.ccc"]["mean"] == pytest.approx(0.4) and s["mean.ccc"]["mean"] == pytest.approx(0.5)
    assert s["mean.rmse"]["mean"] == pytest.approx(0.3)
    assert len(rows["2Att-CNN"]["repeats"]) == 2 and len(rows["2Att-CNN"]["repeats"][0]["runs"]) == 2
    assert rows["2Att-Mt"]["summary"]["mean.ccc"] == {"mean": pytest.approx(0.5), "std": 0.0, "n": 1}

    md = runner.render(report, "python -m va2att.experiments table3 --data demo")
    assert runner.DEMO_LABEL in md
    assert "| 2Att-CNN | 0.600 ± 0.141 | 0.609 |" in md
    assert "| 2Att-Mt | 0.600 | 0.618 |" in md  # one repeat: no ± shown
    assert "| 2Att-2Mt | not run | 0.714 |" in md
    assert "| SVR (Mollahosseini et al. 2017) | — | 0.372 |" in md
    assert "CCC V (ours) | CCC V (paper)" in md and "RMSE mean (paper)" in md


def test_finished_runs_are_read_back_and_other_configs_refused(tmp_path):
    table = TABLES["table5"]
    variant = table.variants[0]
    part = variant.runs()[0]
    cfg = run_config(variant, part, data="demo", seed=0, smoke=True)
    run_dir = tmp_path / "run"
    _fake_finished_run(run_dir, cfg, (0.5, 0.3), (0.4, 0.2))
    lines = []
    record = runner.ensure_run(run_dir, cfg, log=lines.append)
    assert record["metrics"]["mean"]["ccc"] == pytest.approx(0.45)
    assert "not retrained" in lines[0]
    other = run_config(variant, part, data="demo", seed=0, smoke=True, overrides=["train.epochs=3"])
    with pytest.raises(runner.ConfigMismatchError, match="train.epochs: 2 in the folder, 3 asked for"):
        runner.ensure_run(run_dir, other, log=lines.append)


def test_cli_arguments():
    with pytest.raises(SystemExit):
        parse(["table2"])  # --data is required without --smoke
    args = parse(["table4", "--smoke"])
    assert (args.data, args.repeats) == ("demo", 1)
    args = parse(["table2", "--data", "/data/AffectNet", "--epochs", "3", "--set", "data.batch_size=128"])
    assert args.repeats == 5 and args.set == ["data.batch_size=128", "train.epochs=3"]


def _experiments(*args, cache_dir):
    env = dict(os.environ, VA2ATT_CACHE=str(cache_dir), CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-m", "va2att.experiments", *args], check=False, capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.mark.large
def test_smoke_table_end_to_end_then_resumed_without_retraining(tmp_path, cache_dir):
    out = tmp_path / "experiments"
    _experiments("table5", "--smoke", "--quiet", "--out", str(out), cache_dir=cache_dir)
    md = (out / "table5.md").read_text()
    assert runner.DEMO_LABEL in md and "smoke run" in md
    for name, paper in (("MSE", "0.709"), ("Tukey's biweight", "0.714")):
        row = next(line for line in md.splitlines() if line.startswith(f"| {name} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == paper and cells[1] not in ("not run", "—")
        assert -1.0 <= float(cells[1]) <= 1.0
    report = json.loads((out / "table5.json").read_text())
    assert report["table"] == "table5" and report["smoke"] is True
    for variant in report["variants"]:
        (repeat,) = variant["repeats"]
        (run,) = repeat["runs"]
        assert {"valence", "arousal", "mean", "expression"} <= set(run["metrics"])
        assert run["epochs_done"] == 2 and run["faces"] == 64
    checkpoints = sorted(out.rglob("*.weights.h5"))
    assert checkpoints
    mtimes = [p.stat().st_mtime_ns for p in checkpoints]

    again = _experiments("table5", "--smoke", "--quiet", "--out", str(out), cache_dir=cache_dir)
    assert again.stdout.count("not retrained") == 2
    assert [p.stat().st_mtime_ns for p in sorted(out.rglob("*.weights.h5"))] == mtimes
    assert (out / "table5.md").read_text() == md


def test_unfinished_runs_are_resumed_in_their_folder_and_new_ones_started(tmp_path, monkeypatch):
    from va2att.training import trainer

    table = TABLES["table2"]
    variant = table.variants[0]
    cfg = run_config(variant, variant.runs()[0], data="demo", seed=0, smoke=True)
    calls = []

    def fake_train(run_dir, **kwargs):
        calls.append(run_dir)
        return trainer.TrainResult(run_dir, 2, 1, 0.1, {}, run_dir / "export" / "va2att" / "1")

    monkeypatch.setattr(trainer, "train", fake_train)
    monkeypatch.setattr(runner, "evaluate_run", lambda *a, **k: {"n": 64, "mean": {"ccc": 0.1}})
    fresh, started = tmp_path / "fresh", tmp_path / "started"
    trainer.start_run(cfg, started, ["test"])
    lines = []
    for run_dir in (fresh, started):
        record = runner.ensure_run(run_dir, cfg, log=lines.append)
        assert record["epochs_done"] == 2 and (run_dir / runner.METRICS_FILE).is_file()
    assert calls == [fresh, started]
    assert (fresh / "config.json").is_file() and "training" in lines[0] and "resuming" in lines[2]


def test_a_row_another_table_already_ran_is_linked_not_trained_again(tmp_path, monkeypatch):
    from va2att.training import trainer
    from va2att.util import fileio

    def no_training(run_dir, **kwargs):
        raise AssertionError(f"trained {run_dir}")

    monkeypatch.setattr(trainer, "train", no_training)
    # The default 2Att-2Mt, finished as Table 5's Tukey row.
    t5, t4, t6 = TABLES["table5"], TABLES["table4"], TABLES["table6"]
    tukey = next(v for v in t5.variants if v.name == "Tukey's biweight")
    done = runner.run_dir_for(tmp_path, t5, tukey, tukey.runs()[0], 0)
    cfg = run_config(tukey, tukey.runs()[0], data="demo", seed=0)
    _fake_finished_run(done, cfg, (0.5, 0.3), (0.4, 0.2))
    fileio.write_json(done / runner.METRICS_FILE, dict(fileio.read_json(done / runner.METRICS_FILE), classes=8))
    lines = []
    report = runner.run_table(t4, data="demo", out=tmp_path, repeats=1, variants=("256/128",), log=lines.append)
    linked = runner.run_dir_for(tmp_path, t4, next(v for v in t4.variants if v.name == "256/128"),
                                t4.variants[0].runs()[0], 0)
    assert linked.is_symlink() and linked.resolve() == done.resolve()
    assert any("linked (not trained again)" in line for line in lines)
    row = next(v for v in report["variants"] if v["name"] == "256/128")
    assert row["summary"]["mean.ccc"]["mean"] == pytest.approx(0.45)
    # Scored on other classes (Table 6 scores 7), the same training config is not the same run.
    (ours,) = t6.trained()
    assert runner.find_twin(tmp_path, run_config(ours, ours.runs()[0], data="demo", seed=0), ours.classes,
                            exclude=tmp_path / "x") is None
    # Another seed is another run.
    assert runner.find_twin(tmp_path, run_config(tukey, tukey.runs()[0], data="demo", seed=1), None,
                            exclude=tmp_path / "x") is None
