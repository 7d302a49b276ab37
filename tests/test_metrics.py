"""Metrics: NumPy functions against hand values, streaming Keras metrics against the whole-split NumPy value."""

import numpy as np
import pytest

from va2att.config import ModelConfig
from va2att.model.metrics import (
    CCC,
    PCC,
    RMSE,
    SAGR,
    accuracy,
    ccc,
    confusion_matrix,
    macro_f1,
    metric_args,
    pcc,
    rmse,
    sagr,
)


def emonet_ccc(ground_truth, predictions):
    """CCC as emonet's metrics.py computes it (population moments)."""
    mean_pred, mean_gt = np.mean(predictions), np.mean(ground_truth)
    cov = np.mean((predictions - mean_pred) * (ground_truth - mean_gt))
    return 2 * cov / (np.var(predictions) + np.var(ground_truth) + (mean_pred - mean_gt) ** 2)


def test_regression_metrics_hand_values():
    t = np.array([0.5, -0.5, 1.0, 0.0])
    p = np.array([0.5, -0.5, 1.0, 0.0])
    assert ccc(t, p) == pytest.approx(1.0) and pcc(t, p) == pytest.approx(1.0) and rmse(t, p) == 0.0
    assert sagr(t, p) == 1.0
    # Predictions are clipped to [-1, 1] before scoring: 3.0 counts as 1.0.
    assert rmse([1.0, 0.0], [3.0, 0.0]) == 0.0
    assert sagr([0.2, -0.2, 0.3, 0.0], [0.1, 0.4, -0.1, 0.0]) == 0.5
    rng = np.random.default_rng(0)
    t, p = rng.uniform(-1, 1, 500), rng.uniform(-1, 1, 500) * 0.5 + 0.1
    assert ccc(t, p) == pytest.approx(emonet_ccc(t, p))
    assert pcc(t, p) == pytest.approx(np.corrcoef(t, p)[0, 1])


def test_classification_metrics_hand_values():
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 2]
    assert accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    probs = np.eye(3)[y_pred] * 0.8 + 0.05
    assert accuracy(y_true, probs) == pytest.approx(4 / 6)
    expected = np.array([[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred, 3), expected)
    # F1: class 0: tp 1, 2 true, 2 predicted -> 0.5; class 1: 2*2/(2+3) = 0.8; class 2: 2*1/(2+1) = 2/3.
    assert macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # Classes absent from both sides do not count.
    assert macro_f1(y_true, y_pred, 8) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


@pytest.mark.parametrize("metric_cls,fn", [(CCC, ccc), (RMSE, rmse), (PCC, pcc), (SAGR, sagr)])
def test_streaming_equals_numpy_on_the_concatenation(metric_cls, fn):
    rng = np.random.default_rng(1)
    batches = []
    for i in range(23):
        n = int(rng.integers(1, 40))
        shift = 0.5 * np.sin(i)  # batches differ in mean: an average of per-batch values would be off
        t = np.clip(rng.normal(shift, 0.4, (n, 1)), -1, 1).astype("float32")
        p = (0.6 * t + rng.normal(0.1, 0.3, (n, 1)) * 1.3).astype("float32")  # some |p| > 1: clipped
        batches.append((t, p))
    metric = metric_cls()
    for t, p in batches:
        metric.update_state(t, p)
    all_t = np.concatenate([b[0] for b in batches])
    all_p = np.concatenate([b[1] for b in batches])
    assert float(metric.result()) == pytest.approx(fn(all_t, all_p), rel=1e-5, abs=1e-6)
    per_batch = np.mean([fn(t, p) for t, p in batches if len(t) > 1])
    assert abs(per_batch - fn(all_t, all_p)) > 1e-3 or metric_cls is SAGR or metric_cls is RMSE
    metric.reset_state()
    metric.update_state(*batches[0])
    assert float(metric.result()) == pytest.approx(fn(*batches[0]), rel=1e-5, abs=1e-6)


def test_keras_metrics_names():
    args = metric_args(ModelConfig())
    metrics = args["weighted_metrics"]  # weighted: faces without a label (sample weight 0) are left out
    assert [m.name for m in metrics["valence"]] == ["ccc", "rmse", "pcc", "sagr"]
    assert [m.name for m in args["weighted_metrics"]["expression"]] == ["accuracy"]
    single = metric_args(ModelConfig(head="single-valence"))
    assert list(single["weighted_metrics"]) == ["valence"] and single["weighted_metrics"]["valence"][0].name == "valence_ccc"
    assert set(single) == {"weighted_metrics"}  # every metric is weighted
    assert metrics["valence"][0] is not metric_args(ModelConfig())["weighted_metrics"]["valence"][0]


@pytest.mark.large
def test_logged_metric_names_from_fit():
    from va2att.model.losses import compile_args
    from va2att.model.network import build_model

    for head in ("2mt", "single-arousal"):
        cfg = ModelConfig(width=4, level_dim=8, gru_units=4, dimensional_units=8, categorical_units=8, head=head)
        model = build_model(cfg)
        model.compile(optimizer="rmsprop", **metric_args(cfg), **compile_args(cfg))
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 255, (16, 48, 48, 1)).astype("float32")
        y = {"valence": rng.uniform(-1, 1, (16, 1)), "arousal": rng.uniform(-1, 1, (16, 1)), "expression": rng.integers(0, 8, 16)}
        y = {k: y[k] for k in cfg.outputs}
        logs = model.fit(x, y, batch_size=8, epochs=1, validation_data=(x, y), verbose=0).history
        for name in cfg.outputs:
            if name != "expression":
                assert {f"val_{name}_ccc", f"val_{name}_rmse", f"val_{name}_pcc", f"val_{name}_sagr"} <= set(logs)
        if "expression" in cfg.outputs:
            assert "val_expression_accuracy" in logs and "val_expression_loss" in logs
        if head == "2mt":  # evaluate() over uneven batches gives the whole-split CCC
            result = model.evaluate(x, y, batch_size=5, return_dict=True, verbose=0)
            pred = model.predict(x, batch_size=16, verbose=0)
            assert result["valence_ccc"] == pytest.approx(ccc(y["valence"], pred["valence"]), rel=1e-4, abs=1e-5)
