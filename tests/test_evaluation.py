"""va2att.evaluation.evaluate.evaluate: flip averaging over the whole split, expression cut to the scored classes."""

import numpy as np
import pytest
from conftest import Probe

from va2att.config import DataConfig
from va2att.data import pipeline
from va2att.evaluation.evaluate import evaluate
from va2att.model import metrics


@pytest.mark.parametrize("classes", [8, 7])
def test_evaluate_scores_flip_averaged_predictions_of_the_whole_split(prepared, classes):
    data = DataConfig(data=str(prepared), batch_size=5)
    found = evaluate(Probe(), data, "validation", classes)

    batches = list(pipeline.make_dataset(prepared, "validation", data, training=False, num_classes=classes))
    crops = np.concatenate([x.numpy() for x, _, _ in batches])
    truth = {name: np.concatenate([y[name].numpy().reshape(-1) for _, y, _ in batches]) for name in Probe.outputs}
    probe = Probe()
    plain, mirrored = probe(crops), probe(crops[:, :, ::-1])
    averaged = {name: (plain[name] + mirrored[name]) / 2.0 for name in Probe.outputs}

    assert found.metrics["n"] == len(crops) == pipeline.count_examples(prepared, "validation", classes)
    np.testing.assert_allclose(found.predictions["valence"], averaged["valence"][:, 0], atol=1e-6)
    assert found.predictions["expression"].shape == (len(crops), classes)
    np.testing.assert_array_equal(found.labels["expression"], truth["expression"])
    for name in ("valence", "arousal"):
        assert found.metrics[name]["ccc"] == pytest.approx(metrics.ccc(truth[name], averaged[name]), abs=1e-6)
        assert found.metrics[name]["sagr"] == pytest.approx(metrics.sagr(truth[name], averaged[name]), abs=1e-6)
    predicted = averaged["expression"][:, :classes].argmax(axis=1)
    expression = found.metrics["expression"]
    assert expression["accuracy"] == pytest.approx(metrics.accuracy(truth["expression"], predicted))
    assert np.array_equal(expression["confusion"], metrics.confusion_matrix(truth["expression"], predicted, classes))
    assert len(expression["class_names"]) == classes == len(found.metrics["per_class"])
    for k, row in enumerate(found.metrics["per_class"]):
        true_k, predicted_k = truth["expression"] == k, predicted == k
        assert row["n"] == true_k.sum()
        if predicted_k.any():
            assert row["precision"] == pytest.approx((true_k & predicted_k).sum() / predicted_k.sum())


def _reference_smoothing(videos, frames, values, seconds, fps):
    """Each row: the mean of its video's rows with frame numbers in (frame - seconds * fps, frame]."""
    out = np.array(values, np.float64)
    for i, (video, frame) in enumerate(zip(videos, frames)):
        if video:
            window = (videos == video) & (frames <= frame) & (frames > frame - seconds * fps)
            out[i] = np.mean(values[window], axis=0)
    return out


def test_smooth_videos_follows_frame_order_and_gaps_within_each_video():
    from va2att.evaluation.smoothing import smooth_videos

    rng = np.random.default_rng(3)
    videos = np.array(["a"] * 12 + ["b"] * 8 + [""] * 3)
    frames = np.concatenate([[1, 2, 3, 5, 6, 9, 10, 11, 20, 21, 22, 23], np.arange(1, 9), [-1, -1, -1]])
    values = rng.normal(size=(len(videos), 3))
    order = rng.permutation(len(videos))  # rows in any order, as shards may hold them
    smoothed = smooth_videos(videos[order], frames[order], values[order], 0.3, 10.0)
    expected = _reference_smoothing(videos[order], frames[order], values[order], 0.3, 10.0)
    np.testing.assert_allclose(smoothed, expected, atol=1e-12)
    first_after_gap = np.flatnonzero((videos[order] == "a") & (frames[order] == 20))[0]
    np.testing.assert_allclose(smoothed[first_after_gap], values[order][first_after_gap])  # frames 9-11 are too old
    stills = videos[order] == ""
    np.testing.assert_array_equal(smoothed[stills], values[order][stills])  # still images are left as they are


def test_evaluate_scores_each_video_smoothed_in_frame_order(tmp_path, prepared):
    from va2att.data import preparation
    from va2att.data.synthetic import affwild2 as synthetic_affwild2

    synthetic_affwild2.generate(tmp_path / "raw", videos=2, val_videos=1, frames=30, seed=4)
    preparation.prepare(tmp_path / "raw", tmp_path / "prepared", workers=1, shard_size=16, progress=False)
    data = DataConfig(data=str(tmp_path / "prepared"), batch_size=8)
    found = evaluate(Probe(), data, "validation", 8, log=lambda *a: None, smooth=(1.0, 0.25), fps=10.0)
    video, frame = found.labels["video"], found.labels["frame"]
    assert len(set(zip(video, frame))) == len(video) and set(frame) <= set(range(1, 31))
    assert len(set(frame[video == "valid_000"])) < 30  # frames without an image or a label: gaps in time
    rows = found.metrics["smoothing"]["rows"]
    assert [row["seconds"] for row in rows] == [0.0, 0.25, 1.0] and found.metrics["smoothing"]["fps"] == 10.0
    raw = rows[0]
    assert raw["valence_ccc"] == pytest.approx(found.metrics["valence"]["ccc"], abs=1e-9)
    assert raw["video_arousal_ccc"] == pytest.approx(found.metrics["mean_video_ccc"]["arousal"], abs=1e-9)
    has_va = np.isfinite(found.labels["valence"])
    for row in rows[1:]:
        expected = _reference_smoothing(video, frame, found.predictions["valence"], row["seconds"], 10.0)
        assert row["valence_ccc"] == pytest.approx(metrics.ccc(found.labels["valence"][has_va], expected[has_va]),
                                                   abs=1e-6)
    assert rows[2]["valence_ccc"] != pytest.approx(raw["valence_ccc"], abs=1e-6)
    with pytest.raises(ValueError, match="video data set"):
        evaluate(Probe(), DataConfig(data=str(prepared), batch_size=5), "validation", 8, smooth=(1.0,))
