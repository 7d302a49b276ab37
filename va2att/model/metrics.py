"""Evaluation metrics on a whole split (DESIGN.md §4): NumPy functions and streaming Keras metrics.

Regression predictions are clipped to [-1, 1] before scoring, in both families. The Keras metrics
accumulate sufficient statistics (n, Σx, Σy, Σx², Σy², Σxy, ...) in float64 over every batch of the
split and compute the value from those sums, so the result equals the NumPy metric on the
concatenated split, never an average of per-batch values.

With `model.compile(**metric_args(cfg))` Keras 3 logs them as `valence_ccc`, `valence_rmse`,
`valence_pcc`, `valence_sagr`, the same for `arousal_`, and `expression_accuracy`; validation logs
carry a `val_` prefix (`val_valence_ccc`, ...).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from va2att.config import ModelConfig


def _regression_arrays(y_true, y_pred):
    y_true = np.asarray(y_true, dtype="float64").reshape(-1)
    y_pred = np.clip(np.asarray(y_pred, dtype="float64").reshape(-1), -1.0, 1.0)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of equal size. Received: {y_true.shape}, {y_pred.shape}")
    return y_true, y_pred


def ccc(y_true, y_pred) -> float:
    """Concordance correlation coefficient `2·cov / (var_t + var_p + (mean_t - mean_p)²)` (population moments)."""
    t, p = _regression_arrays(y_true, y_pred)
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    denom = t.var() + p.var() + (t.mean() - p.mean()) ** 2
    return float(2.0 * cov / denom) if denom > 0 else 0.0


def rmse(y_true, y_pred) -> float:
    """Root mean squared error."""
    t, p = _regression_arrays(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def pcc(y_true, y_pred) -> float:
    """Pearson correlation coefficient (0 when either side is constant)."""
    t, p = _regression_arrays(y_true, y_pred)
    denom = t.std() * p.std()
    return float(np.mean((t - t.mean()) * (p - p.mean())) / denom) if denom > 0 else 0.0


def sagr(y_true, y_pred) -> float:
    """Sign agreement: the share of samples with `sign(y_true) == sign(y_pred)`."""
    t, p = _regression_arrays(y_true, y_pred)
    return float(np.mean(np.sign(t) == np.sign(p)))


def regression_report(y_true, y_pred) -> dict:
    """All four regression metrics of one target: {"ccc", "rmse", "pcc", "sagr"}."""
    return {"ccc": ccc(y_true, y_pred), "rmse": rmse(y_true, y_pred), "pcc": pcc(y_true, y_pred), "sagr": sagr(y_true, y_pred)}


def _labels(y_true, y_pred):
    t = np.asarray(y_true).reshape(-1).astype("int64")
    p = np.asarray(y_pred)
    p = p.argmax(axis=-1) if p.ndim == 2 else p.reshape(-1)
    p = p.astype("int64")
    if t.shape != p.shape or t.size == 0:
        raise ValueError(f"y_true and y_pred must hold the same non-zero number of samples. Received: {t.shape}, {p.shape}")
    return t, p


def accuracy(y_true, y_pred) -> float:
    """Expression accuracy; `y_pred` is either class ids `(n,)` or probabilities `(n, K)`."""
    t, p = _labels(y_true, y_pred)
    return float(np.mean(t == p))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """`(K, K)` counts, rows = true class, columns = predicted class."""
    t, p = _labels(y_true, y_pred)
    if t.min() < 0 or p.min() < 0 or t.max() >= num_classes or p.max() >= num_classes:
        raise ValueError(f"class ids must lie in 0..{num_classes - 1}. Received: {t.min()}..{t.max()}, {p.min()}..{p.max()}")
    matrix = np.zeros((num_classes, num_classes), dtype="int64")
    np.add.at(matrix, (t, p), 1)
    return matrix


def macro_f1(y_true, y_pred, num_classes: int, classes=None) -> float:
    """Unweighted mean of the per-class F1 over the classes present in `y_true` or `y_pred`; with
    `classes` (e.g. the seven a data set annotates), over those of them that are present (predictions
    of other classes still count as errors on the true class)."""
    matrix = confusion_matrix(y_true, y_pred, num_classes)
    tp = np.diag(matrix).astype("float64")
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    present = (support + predicted) > 0
    f1 = 2.0 * tp / np.maximum(support + predicted, 1)
    if classes is not None:
        chosen = np.zeros(num_classes, bool)
        chosen[np.asarray(list(classes), dtype="int64")] = True
        return float(f1[chosen & present].mean()) if (chosen & present).any() else 0.0
    return float(f1[present].mean())


class _SumsMetric(keras.metrics.Metric):
    """Base of the streaming metrics: float64 running sums named in `SUMS`, updated from clipped predictions."""

    SUMS: tuple[str, ...] = ()

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._sums = {
            key: self.add_variable(shape=(), initializer="zeros", dtype="float64", name=key, aggregation="sum")
            for key in self.SUMS
        }

    def _terms(self, t, p):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        p = ops.clip(ops.reshape(ops.cast(y_pred, "float64"), (-1,)), -1.0, 1.0)
        t = ops.reshape(ops.cast(y_true, "float64"), (-1,))
        w = ops.ones_like(t) if sample_weight is None else ops.reshape(ops.cast(sample_weight, "float64"), (-1,))
        for key, value in self._terms(t, p).items():
            self._sums[key].assign_add(ops.sum(w * value))
        self._sums["n"].assign_add(ops.sum(w))

    def reset_state(self):
        for variable in self._sums.values():
            variable.assign(ops.zeros((), dtype="float64"))

    def _moments(self):
        s = {key: variable.value for key, variable in self._sums.items()}
        n = ops.maximum(s["n"], 1.0)
        mean_t, mean_p = s["st"] / n, s["sp"] / n
        var_t = ops.maximum(s["stt"] / n - mean_t**2, 0.0)
        var_p = ops.maximum(s["spp"] / n - mean_p**2, 0.0)
        cov = s["stp"] / n - mean_t * mean_p
        return mean_t, mean_p, var_t, var_p, cov

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _moment_terms(t, p):
    return {"st": t, "sp": p, "stt": t * t, "spp": p * p, "stp": t * p}


def _safe_divide(numerator, denominator):
    ok = denominator > 0
    return ops.where(ok, numerator / ops.where(ok, denominator, ops.ones_like(denominator)), ops.zeros_like(numerator))


@keras.saving.register_keras_serializable(package="va2att")
class CCC(_SumsMetric):
    """Concordance correlation coefficient over everything seen since the last `reset_state`."""

    SUMS = ("n", "st", "sp", "stt", "spp", "stp")

    def __init__(self, name="ccc", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, t, p):
        return _moment_terms(t, p)

    def result(self):
        mean_t, mean_p, var_t, var_p, cov = self._moments()
        return ops.cast(_safe_divide(2.0 * cov, var_t + var_p + (mean_t - mean_p) ** 2), "float32")


@keras.saving.register_keras_serializable(package="va2att")
class PCC(_SumsMetric):
    """Pearson correlation coefficient over everything seen since the last `reset_state`."""

    SUMS = ("n", "st", "sp", "stt", "spp", "stp")

    def __init__(self, name="pcc", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, t, p):
        return _moment_terms(t, p)

    def result(self):
        _, _, var_t, var_p, cov = self._moments()
        return ops.cast(_safe_divide(cov, ops.sqrt(var_t * var_p)), "float32")


@keras.saving.register_keras_serializable(package="va2att")
class RMSE(_SumsMetric):
    """Root mean squared error over everything seen since the last `reset_state`."""

    SUMS = ("n", "sse")

    def __init__(self, name="rmse", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, t, p):
        return {"sse": (t - p) ** 2}

    def result(self):
        return ops.cast(ops.sqrt(self._sums["sse"].value / ops.maximum(self._sums["n"].value, 1.0)), "float32")


@keras.saving.register_keras_serializable(package="va2att")
class SAGR(_SumsMetric):
    """Sign agreement rate over everything seen since the last `reset_state`."""

    SUMS = ("n", "agree")

    def __init__(self, name="sagr", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _terms(self, t, p):
        return {"agree": ops.cast(ops.equal(ops.sign(t), ops.sign(p)), "float64")}

    def result(self):
        return ops.cast(self._sums["agree"].value / ops.maximum(self._sums["n"].value, 1.0), "float32")


def metric_args(cfg: ModelConfig) -> dict:
    """`dict(weighted_metrics={...})` of fresh metric instances for `model.compile`: every metric is weighted.

    Logged names: `<output>_<metric>` and `val_<output>_<metric>`, e.g. `val_valence_ccc`,
    `val_arousal_rmse`, `val_expression_accuracy`. The expression accuracy is a weighted metric, so
    faces whose expression has sample weight 0 (AffectNet's "None" faces, `data.none_faces`) do not
    count; without sample weights it is the plain accuracy. The regression metrics are weighted too, so
    a face without valence/arousal (sample weight 0, e.g. an Aff-Wild2 frame with only an expression
    label) is left out of them. Keras 3 drops the output prefix when a
    model has a single output, so the single-task heads name their metrics `valence_ccc`, ...
    themselves and the logs read the same for every head."""
    prefix = f"{cfg.outputs[0]}_" if len(cfg.outputs) == 1 else ""
    weighted = {}
    for name in cfg.outputs:
        if name == "expression":
            weighted[name] = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
        else:
            weighted[name] = [CCC(f"{prefix}ccc"), RMSE(f"{prefix}rmse"), PCC(f"{prefix}pcc"), SAGR(f"{prefix}sagr")]
    return {"weighted_metrics": weighted}
