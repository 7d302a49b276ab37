"""Provenance: runs and exports say what trained them; a synthetic-trained model used on real faces says so once."""

import io
import json

import pytest
from conftest import TINY_MODEL

from va2att.config import RunConfig
from va2att.serving import provenance
from va2att.training import trainer


def test_describe_data_tells_synthetic_from_real(prepared, tmp_path):
    demo = provenance.describe_data("demo", None)
    assert demo["kind"] == "synthetic" and "synthetic" in demo["name"]
    synthetic = provenance.describe_data(str(prepared), prepared)  # made by va2att.data.synthetic.affectnet
    assert synthetic["kind"] == "synthetic" and synthetic["training_faces"] > 0 and synthetic["validation_faces"] > 0
    real = tmp_path / "AffectNet-prepared"
    real.mkdir()
    report = json.loads((prepared / "report.json").read_text())
    (real / "report.json").write_text(json.dumps(dict(report, root=str(tmp_path / "AffectNet"))))
    assert provenance.describe_data(str(real), real)["kind"] == "real"


@pytest.fixture()
def demo_run(tmp_path):
    run = tmp_path / "run"
    trainer.start_run(RunConfig(), run, ["train.py"])
    (run / "best.keras").write_bytes(b"")  # stands in for the model: only the run folder is read
    return run


def test_a_demo_trained_model_warns_once_on_photos_and_not_on_its_own_data(demo_run):
    out = io.StringIO()
    for model in (demo_run, demo_run / "best.keras"):
        assert provenance.read_provenance(model)["data"]["kind"] == "synthetic"
    assert not provenance.warn_if_synthetic(demo_run, data="demo", stream=out)  # evaluate on the demo set
    assert provenance.warn_if_synthetic(demo_run, stream=out)  # photos
    assert provenance.warn_if_synthetic(demo_run, stream=out)
    text = out.getvalue()
    assert text.count("warning:") == 1
    assert "synthetic" in text and "mean nothing" in text and provenance.REAL_TRAINING_COMMAND in text


def test_a_model_of_unknown_or_real_origin_does_not_warn(tmp_path):
    out = io.StringIO()
    assert not provenance.warn_if_synthetic(tmp_path / "nothing", stream=out)
    assert not provenance.warn_if_synthetic("m", {"data": {"kind": "real"}}, stream=out)
    assert out.getvalue() == ""


def test_the_saved_model_answers_where_it_comes_from(tmp_path):
    import tensorflow as tf

    from va2att.config import ModelConfig
    from va2att.model.network import build_model
    from va2att.serving.export import export_saved_model

    record = provenance.make_record(provenance.describe_data("demo", None),
                                    {"epoch": 3, "best_epoch": 2, "best_mean_ccc": 0.5,
                                     "history": [{"epoch": 2, "val_valence_ccc": 0.6, "lr": 0.001}]})
    assert record["training"]["best_metrics"] == {"val_valence_ccc": 0.6}
    path = export_saved_model(build_model(ModelConfig(**TINY_MODEL)), tmp_path / "export", provenance=record)
    assert provenance.read_provenance(path) == record  # from assets.extra, no run folder around it
    served = tf.saved_model.load(str(path)).signatures["provenance"]()
    assert json.loads(served["provenance"].numpy().decode()) == record


@pytest.mark.parametrize(("where", "text"), [
    ("export", "[]"), ("export", '{"provenance": "x"}'), ("export", "not json"), ("export", "[" * 100_000),
    ("provenance.json", "[]"), ("provenance.json", "no json"), ("config.json", "[]"), ("config.json", '{"config": 5}')])
def test_provenance_files_of_the_wrong_shape_are_unknown_provenance(tmp_path, where, text):
    run = tmp_path / "run"
    version = run / "export" / "va2att" / "1"
    (version / "assets.extra").mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"config": {"data": {"data": "demo"}}}))
    target = {"export": version / "assets.extra" / "va2att.json", "provenance.json": run / "provenance.json",
              "config.json": run / "config.json"}[where]
    target.write_text(text)
    record = provenance.read_provenance(run)  # no exception, whatever the file holds
    assert record is None or provenance.is_synthetic(record)  # the config's demo data, where it is readable
    assert not provenance.warn_if_synthetic(run, {"data": "x"}, stream=io.StringIO())
