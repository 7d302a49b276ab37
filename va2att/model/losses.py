"""Training losses: Tukey's biweight with a MAD residual scale, MSE, 1 - CCC; and `compile_args(cfg)`.

The regression losses are computed per output (valence and arousal each get their own instance,
hence their own residual scale) on `(batch, 1)` tensors. `compile_args` gives the paper's objective

    L = alpha * CE(expression) + beta * rho(valence) + (1 - beta) * rho(arousal)

as the `loss=` and `loss_weights=` dicts of `model.compile`.

Label masks: a sample whose label is missing comes with sample weight 0 (`va2att.data.pipeline`).
Keras then drops its loss value; the two losses built on batch statistics (Tukey's MAD scale, the
batch CCC) also leave such samples out of those statistics, so a placeholder label never shapes
the loss of the samples that have one.
"""

from __future__ import annotations

import keras
from keras import ops

from va2att.config import TUKEY_FORMS, ModelConfig
from va2att.model.heads import HEADS

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
MIN_SCALE = 1e-6  # below this the batch's MAD is treated as zero and residuals are left unscaled


def _residuals(y_true, y_pred):
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)), "float32")
    return y_true - y_pred


def masked_median(x, present=None):
    """Median over axis 0 of the rows where `present` (bool, broadcastable to x) holds; (1, C).

    All rows when `present` is None; 0 for a column without any present row."""
    if present is None:
        return ops.median(x, axis=0, keepdims=True)
    present = ops.broadcast_to(present, ops.shape(x))
    n = ops.sum(ops.cast(present, "int32"), axis=0, keepdims=True)
    ordered = ops.sort(ops.where(present, x, ops.full_like(x, float("inf"))), axis=0)  # absent rows last
    lo = ops.take_along_axis(ordered, ops.maximum(n - 1, 0) // 2, axis=0)
    hi = ops.take_along_axis(ordered, n // 2, axis=0)
    return ops.where(n > 0, (lo + hi) / 2.0, ops.zeros_like(lo))


def robust_scale(residuals, min_scale: float = 0.0, present=None):
    """`1.4826 · MAD` of the batch residuals per column (axis 0), held constant in the gradient.

    When it is below `MIN_SCALE` (e.g. a batch of one, or more than half the residuals identical)
    the scale is 1, i.e. raw residuals are used, instead of dividing by (nearly) zero. A positive
    `min_scale` is a floor: the scale never goes below it. `present` (bool (B, 1)) restricts the
    median and the MAD to the samples that have a label."""
    median = masked_median(residuals, present)
    mad = masked_median(ops.abs(residuals - median), present)
    scale = ops.stop_gradient(MAD_TO_SIGMA * mad)
    scale = ops.where(scale > MIN_SCALE, scale, ops.ones_like(scale))
    return ops.maximum(scale, min_scale) if min_scale > 0 else scale


def tukey_rho(r, c):
    """Tukey's biweight: `c²/6 · (1 - (1 - (r/c)²)³)` for `|r| <= c`, `c²/6` beyond (zero gradient there)."""
    inside = ops.abs(r) <= c
    u = ops.where(inside, r / c, ops.zeros_like(r))
    return ops.where(inside, (c**2 / 6.0) * (1.0 - (1.0 - u**2) ** 3), ops.full_like(r, c**2 / 6.0))


class _BatchStatisticLoss(keras.losses.Loss):
    """A loss whose per-sample values depend on statistics of the batch: `call` sees which samples
    have a label (`self._present`, from a sample weight > 0; None when no weights are given)."""

    _present = None

    def __call__(self, y_true, y_pred, sample_weight=None):
        self._present = None if sample_weight is None else ops.reshape(sample_weight, (-1, 1)) > 0
        try:
            return super().__call__(y_true, y_pred, sample_weight=sample_weight)
        finally:
            self._present = None


@keras.saving.register_keras_serializable(package="va2att")
class TukeyBiweight(_BatchStatisticLoss):
    """Tukey's biweight loss with the residual scale `s = 1.4826 · MAD` of the batch (Belagiannis et al. 2015).

    Reference: Belagiannis et al., "Robust Optimization for Deep Regression", ICCV 2015.
    A residual counts as an outlier (zero gradient) beyond `c` robust standard deviations of the
    current batch, `|r| > c·s`; unscaled residuals of targets in [-1, 1] would never reach
    c = 4.685, so without the scale the loss would be MSE in disguise.

    Two forms with the same outlier rule (`s` held constant in the gradient):
    - `"residual"` (default): `s² · rho(r / s)`, i.e. the biweight of the raw residual with threshold
      `c·s`. Near zero it is `r²/2`, so its value is in squared label units and falls as predictions
      improve (comparable across epochs), and its gradient is `r`-sized like MSE's.
    - `"scaled"`: `rho(r / s)`, as the equation is usually written. Its value does not change when every
      residual is scaled by the same factor, and its gradient grows as `1/s` as the fit improves, so
      the weight of this term against the cross-entropy drifts by `1/s²` during training.
    For one batch both forms have the same minimiser; they differ by the factor `s²`.

    Args:
        c: float. Tuning constant (4.685 gives 95% efficiency under Gaussian noise).
        form: str. `"residual"` or `"scaled"` (see above).
        min_scale: float. Floor on `s` (0 = none).
    """

    def __init__(self, c=4.685, form="residual", min_scale=0.0, name="tukey", reduction="sum_over_batch_size",
                 dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not c > 0:
            raise ValueError(f"c must be positive. Received: c={c!r}")
        if form not in TUKEY_FORMS:
            raise ValueError(f"form must be one of {TUKEY_FORMS}. Received: form={form!r}")
        if not min_scale >= 0:
            raise ValueError(f"min_scale must be >= 0. Received: min_scale={min_scale!r}")
        self.c = float(c)
        self.form = form
        self.min_scale = float(min_scale)

    def call(self, y_true, y_pred):
        r = _residuals(y_true, y_pred)
        if self._present is not None:
            r = ops.where(self._present, r, ops.zeros_like(r))
        scale = robust_scale(r, self.min_scale, self._present)
        rho = tukey_rho(r / scale, self.c)
        if self.form == "residual":
            rho = rho * ops.square(scale)
        return ops.mean(rho, axis=-1)

    def get_config(self):
        return {**super().get_config(), "c": self.c, "form": self.form, "min_scale": self.min_scale}


@keras.saving.register_keras_serializable(package="va2att")
class MeanSquaredError(keras.losses.Loss):
    """Mean squared error on `(batch, 1)` regression outputs (targets of shape `(batch,)` accepted)."""

    def __init__(self, name="mse", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(_residuals(y_true, y_pred)), axis=-1)


@keras.saving.register_keras_serializable(package="va2att")
class ConcordanceLoss(_BatchStatisticLoss):
    """`1 - CCC` of the batch (population moments, over the samples that have a label); one value per
    batch, weighted like a mean."""

    def __init__(self, epsilon=1e-7, name="ccc_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.epsilon = float(epsilon)

    def call(self, y_true, y_pred):
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)), "float32")
        w = ops.ones_like(y_true) if self._present is None else ops.cast(ops.broadcast_to(self._present, ops.shape(y_true)), "float32")
        y_true = ops.where(w > 0, y_true, ops.zeros_like(y_true))
        n = ops.maximum(ops.sum(w, axis=0), 1.0)

        def mean(x):
            return ops.sum(w * x, axis=0) / n

        mean_t = mean(y_true)
        mean_p = mean(y_pred)
        var_t = mean(ops.square(y_true - mean_t))
        var_p = mean(ops.square(y_pred - mean_p))
        cov = mean((y_true - mean_t) * (y_pred - mean_p))
        ccc = 2.0 * cov / (var_t + var_p + ops.square(mean_t - mean_p) + self.epsilon)
        loss = 1.0 - ops.mean(ccc)
        # Broadcast to one value per sample so sample weights and the usual reduction apply.
        return ops.ones_like(y_pred[:, 0]) * loss

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def regression_loss(cfg: ModelConfig) -> keras.losses.Loss:
    """A fresh instance of the regression loss named by `cfg.loss`."""
    if cfg.loss == "tukey":
        return TukeyBiweight(c=cfg.tukey_c, form=cfg.tukey_form, min_scale=cfg.tukey_min_scale)
    if cfg.loss == "mse":
        return MeanSquaredError()
    if cfg.loss == "ccc":
        return ConcordanceLoss()
    raise ValueError(f"Unknown loss {cfg.loss!r}: allowed values are 'tukey', 'mse', 'ccc'.")


def compile_args(cfg: ModelConfig) -> dict:
    """`dict(loss={...}, loss_weights={...})` for `model.compile`, keyed by `cfg.outputs`.

    The weights are the head's (`va2att.model.heads.HEADS`): 2mt / gcn: alpha·CE + beta·rho(V) + (1 - beta)·rho(A);
    mt: beta·rho(V) + (1 - beta)·rho(A); single-valence / single-arousal: rho with weight 1. The expression
    target is an integer class."""
    loss = {}
    for name in cfg.outputs:
        if name == "expression":
            loss[name] = keras.losses.SparseCategoricalCrossentropy(from_logits=False, name="expression_ce")
        else:
            loss[name] = regression_loss(cfg)
    return {"loss": loss, "loss_weights": HEADS[cfg.head].loss_weights(cfg)}
