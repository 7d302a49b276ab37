"""Aff-Wild2 (ABAW layout) and AffectNet's npy layout: reading, preparation counts, label masks
reaching the right losses, the class mapping, per-video CCC, frame sampling and mixtures."""

import dataclasses

import numpy as np
import pytest
from conftest import TINY_MODEL, Probe

from va2att.config import EXPRESSION_NAMES, DataConfig
from va2att.data import affwild2, pipeline, preparation
from va2att.data.records import feature_spec
from va2att.data.synthetic import affectnet_npy as synthetic_affectnet_npy
from va2att.data.synthetic import affwild2 as synthetic_affwild2
from va2att.model import metrics


def plant_invalid(raw, planted):
    """Add a training video whose labels are invalid or whose image is no image, as real copies may have, and
    count what preparation must make of it: invalid V/A and an unannotated expression, invalid V/A and a valid
    expression, unannotated V/A and an invalid expression, valid labels on garbage bytes, and valid labels."""
    from va2att.data.affwild2 import (
        ANNOTATIONS_DIR,
        EXPR_DIR,
        FRAMES_DIR,
        SPLIT_DIRS,
        VA_DIR,
    )

    folder = raw / FRAMES_DIR / "train_planted"
    folder.mkdir()
    face = next((raw / FRAMES_DIR / "train_000").glob("*.jpg")).read_bytes()
    for frame in range(1, 6):
        (folder / f"{frame:05d}.jpg").write_bytes(face if frame != 4 else bytes(range(256)) * 8)
    lines = {VA_DIR: ["valence,arousal", "abc,0.1", "1.5,0.2", "-5,-5", "0.2,0.3", "0.1,-0.4"],
             EXPR_DIR: [synthetic_affwild2.EXPR_HEADER, "-1", "1", "12", "2", "0"]}
    for sub, text in lines.items():
        (raw / ANNOTATIONS_DIR / sub / SPLIT_DIRS["training"] / "train_planted.txt").write_text("\n".join(text) + "\n")
    training = planted["training"]
    training["written"] += 2
    for reason, n in (("labels_invalid", 2), ("not_an_image", 1)):
        training["skipped"][reason] = training["skipped"].get(reason, 0) + n
    for labels in ("expression_only", "va_and_expression"):
        training["labels"][labels] = training["labels"].get(labels, 0) + 1
    return planted


@pytest.fixture(scope="module")
def affwild2_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("affwild2")
    planted = plant_invalid(base / "raw", synthetic_affwild2.generate(base / "raw", videos=3, val_videos=1, frames=20,
                                                                      seed=1))
    report = preparation.prepare(base / "raw", base / "prepared", workers=1, shard_size=32, progress=False)
    return base, planted, report


@pytest.fixture(scope="module")
def npy_set(tmp_path_factory):
    base = tmp_path_factory.mktemp("affectnet-npy")
    planted = synthetic_affectnet_npy.generate(base / "raw", train=24, val=8, seed=2)
    report = preparation.prepare(base / "raw", base / "prepared", workers=1, shard_size=16, progress=False,
                             use_mtcnn=False)
    return base, planted, report


def _records(prepared, split):
    import tensorflow as tf

    files = [str(prepared / n) for n in preparation.load_report(prepared)["splits"][split]["shards"]]
    batches = tf.data.TFRecordDataset(files).batch(4096).map(lambda b: tf.io.parse_example(b, feature_spec()))
    return {k: np.concatenate([b[k].numpy() for b in batches]) for k in feature_spec() if k != "image"}


def test_affwild2_report_counts_equal_what_the_generator_planted(affwild2_set):
    _base, planted, report = affwild2_set
    assert report["layout"] == "affwild2" and report["label_masks"] is True and report["other"] == "unlabelled"
    assert report["expression_classes"] == [0, 1, 2, 3, 4, 5, 6]
    assert report["videos_without_annotations"] == ["test_000"]
    for split in ("training", "validation"):
        s = report["splits"][split]
        assert s["written"] == planted[split]["written"]
        assert s["skipped"] == planted[split]["skipped"]
        assert s["labels"] == planted[split]["labels"]
        assert s["methods"] == {"aligned": s["written"]}
    assert report["splits"]["training"]["videos_without_frames"] == ["train_noframes"]
    assert {"labels_invalid", "no_image", "no_label", "not_an_image"} <= set(report["splits"]["training"]["skipped"])


def test_affwild2_records_carry_masks_and_never_a_made_up_label(affwild2_set):
    base, _, report = affwild2_set
    r = _records(base / "prepared", "training")
    labels = report["splits"]["training"]["labels"]
    no_va, no_expr = r["has_va"] == 0, r["has_expression"] == 0
    assert no_va.sum() == labels["expression_only"] and no_expr.sum() == labels["va_only"]
    assert np.isnan(r["valence"][no_va]).all() and np.isfinite(r["valence"][~no_va]).all()
    assert (r["expression"][no_expr] == -1).all() and set(r["expression"][~no_expr]) <= set(range(7))
    videos = {v.decode() for v in r["video"]}
    assert {"train_pair_left", "train_pair_right", "train_000"} <= videos and (r["frame"] >= 1).all()
    # The training split is written across videos, not one video after the other.
    first = [v.decode() for v in r["video"][:12]]
    assert len(set(first)) > 2


def test_expression_classes_are_mapped_by_name_onto_affectnet_codes():
    codes = affwild2.expression_header(synthetic_affwild2.EXPR_HEADER)
    assert [EXPRESSION_NAMES[c] for c in codes[:7]] == ["Neutral", "Anger", "Disgust", "Fear", "Happy", "Sad",
                                                         "Surprise"]
    assert codes[7] == affwild2.OTHER and 7 not in codes  # no Contempt in Aff-Wild2
    assert affwild2.expression_header("Surprise, happiness,Other,NEUTRAL") == [3, 1, affwild2.OTHER, 0]
    with pytest.raises(affwild2.AffWild2Error, match="joy"):
        affwild2.expression_header("Neutral,Joy")


def test_other_is_unlabelled_by_default_or_none_or_dropped(affwild2_set):
    raw = affwild2_set[0] / "raw"
    split = {o: affwild2.read_split(raw, "training", other=o) for o in affwild2.OTHER_CHOICES}
    masked_other = sum("expression_other" in item[8] for item in split["unlabelled"].items)
    assert masked_other > 0
    assert sum(item[7] == 8 for item in split["none"].items) == masked_other + split["unlabelled"].dropped[
        "expression_other"]
    assert split["drop"].dropped["expression_other"] == masked_other + split["unlabelled"].dropped["expression_other"]
    assert len(split["drop"]) == len(split["unlabelled"]) - masked_other


def test_label_masks_reach_the_right_losses(affwild2_set):
    from va2att.config import ModelConfig, RunConfig
    from va2att.training.trainer import build_compiled_model

    base = affwild2_set[0]
    data = DataConfig(batch_size=64)
    x, y, w = [], {}, {}
    for images, labels, weights in pipeline.make_dataset(base / "prepared", "training", data, training=False):
        x.append(images.numpy())
        for k in labels:
            y.setdefault(k, []).append(labels[k].numpy())
            w.setdefault(k, []).append(weights[k].numpy())
    x = np.concatenate(x)
    y = {k: np.concatenate(v) for k, v in y.items()}
    w = {k: np.concatenate(v) for k, v in w.items()}
    va_only, expr_only = (w["expression"] == 0), (w["valence"] == 0)
    assert va_only.sum() > 0 and expr_only.sum() > 0 and not (va_only & expr_only).any()
    cfg = dataclasses.replace(RunConfig(), model=ModelConfig(**TINY_MODEL))
    model = build_compiled_model(cfg)
    for sel, zero, nonzero in ((va_only, ["expression_loss"], ["valence_loss", "arousal_loss"]),
                               (expr_only, ["valence_loss", "arousal_loss"], ["expression_loss"])):
        result = model.evaluate(x[sel], {k: v[sel] for k, v in y.items()},
                                sample_weight={k: v[sel] for k, v in w.items()}, batch_size=256, verbose=0,
                                return_dict=True)
        for name in zero:
            assert result[name] == 0.0, (name, result)
        for name in nonzero:
            assert result[name] > 0.0, (name, result)


def test_masked_batch_statistics_ignore_placeholder_labels():
    from va2att.model.losses import ConcordanceLoss, TukeyBiweight

    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, (9, 1)).astype("float32")
    p = rng.uniform(-1, 1, (9, 1)).astype("float32")
    w = np.array([1, 1, 0, 1, 1, 0, 1, 1, 1], "float32")
    present = w > 0
    for loss in (TukeyBiweight(), ConcordanceLoss()):
        expected = float(loss(t[present], p[present])) * present.mean()
        wild = t.copy()
        wild[~present] = 50.0  # a placeholder must change nothing
        assert float(loss(wild, p, sample_weight=w)) == pytest.approx(expected, rel=1e-5)


def test_frame_step_keeps_every_kth_frame_for_training(affwild2_set):
    prepared = affwild2_set[0] / "prepared"
    r = _records(prepared, "training")
    data = DataConfig(batch_size=4, frame_step=3)
    kept = pipeline._count(prepared, data, pipeline.Stream("training", training=True))
    assert kept == int(((r["frame"] - 1) % 3 == 0).sum()) < pipeline.count_examples(prepared, "training")
    batches = list(pipeline.make_dataset(prepared, "training", data, training=True))
    assert len(batches) == kept // 4


def test_affectnet_npy_report_counts_equal_what_the_generator_planted(npy_set):
    base, planted, report = npy_set
    assert report["layout"] == "affectnet-npy" and "label_masks" not in report
    for split in ("training", "validation"):
        s = report["splits"][split]
        assert s["written"] == planted[split]["written"]
        assert s["skipped"] == planted[split]["skipped"]
        assert s["none_faces"] == planted[split]["none_faces"]
        assert s["methods"] == {"landmarks": s["written"]}
    assert pipeline.count_examples(base / "prepared", "training") == planted["training"]["written"] - 1


def test_evaluation_per_video_ccc_equals_numpy_and_masks_are_respected(affwild2_set, npy_set):
    from va2att.evaluation.evaluate import evaluate, markdown_report

    prepared = affwild2_set[0] / "prepared"
    found = evaluate(Probe(), DataConfig(data=str(prepared), batch_size=16), "validation", 8, log=lambda *a: None)
    m, p, y = found.metrics, found.predictions, found.labels
    va = np.isfinite(y["valence"])
    assert m["n"] == len(va) and m["n_va"] == va.sum() and m["n_expression"] == (y["expression"] >= 0).sum()
    assert m["valence"]["ccc"] == pytest.approx(metrics.ccc(y["valence"][va], p["valence"][va]), abs=1e-6)
    assert m["expression"]["f1_classes"] == list(EXPRESSION_NAMES[:7])
    rows = {r["video"]: r for r in m["per_video"]}
    assert set(rows) == {"valid_000", "valid_pair_left", "valid_pair_right"}
    for video, row in rows.items():
        sel = (y["video"] == video) & va
        t, q = y["arousal"][sel].astype("float64"), np.clip(p["arousal"][sel].astype("float64"), -1, 1)
        cov = np.mean((t - t.mean()) * (q - q.mean()))
        expected = 2 * cov / (t.var() + q.var() + (t.mean() - q.mean()) ** 2)
        assert row["frames"] == sel.sum() and row["arousal_ccc"] == pytest.approx(expected, abs=1e-6)
    assert m["worst_videos"][0]["mean_ccc"] == min(r["mean_ccc"] for r in rows.values())
    assert "Worst videos" in markdown_report(m, "t", {})
    # A mixture: both folders scored together; per-video rows only for the videos.
    both = (str(prepared), str(npy_set[0] / "prepared"))
    mixed = evaluate(Probe(), DataConfig(data=":".join(both), batch_size=16), "validation", 8, log=lambda *a: None)
    assert mixed.metrics["n"] == m["n"] + pipeline.count_examples(npy_set[0] / "prepared", "validation")
    assert mixed.metrics["videos"] == 3


@pytest.mark.large
def test_training_on_a_mixture_of_affectnet_and_affwild2(affwild2_set, npy_set, tmp_path):
    from va2att.config import RunConfig, apply_overrides
    from va2att.data.layouts import detect_layout
    from va2att.data.source import resolve_data
    from va2att.training.trainer import start_run, train

    assert detect_layout(affwild2_set[0] / "raw").name == "affwild2"
    assert detect_layout(npy_set[0] / "raw").name == "affectnet-npy"
    both = f"{affwild2_set[0] / 'prepared'}:{npy_set[0] / 'prepared'}"
    assert resolve_data(DataConfig(data=both)) == (affwild2_set[0] / "prepared", npy_set[0] / "prepared")
    cfg = apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        f"data.data={both}", "data.batch_size=16", "data.shuffle_buffer=64", "train.epochs=1"])
    start_run(cfg, tmp_path / "run", ["test"])
    result = train(tmp_path / "run", verbose=0, log=lambda *a: None)
    assert result.epochs_done == 1 and np.isfinite(result.last_logs["loss"])
    assert np.isfinite(result.last_logs["val_valence_ccc"])


def test_macro_f1_over_the_annotated_classes():
    t = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 7, 1, 0, 2])  # a Contempt (7) prediction is an error on class 0
    f1 = {0: 2 * 1 / (2 + 2), 1: 2 * 1 / (2 + 1), 2: 1.0}
    assert metrics.macro_f1(t, p, 8, classes=range(7)) == pytest.approx(np.mean(list(f1.values())))
    assert metrics.macro_f1(t, p, 8) == pytest.approx(np.mean(list(f1.values()) + [0.0]))
