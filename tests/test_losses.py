"""Losses: Tukey's biweight against a NumPy reference, its gradient, the MAD guard, MSE, 1-CCC, compile_args."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from va2att.config import ModelConfig
from va2att.model.losses import (
    ConcordanceLoss,
    MeanSquaredError,
    TukeyBiweight,
    compile_args,
)

C = 4.685


def numpy_tukey(y_true, y_pred, c=C, form="residual", min_scale=0.0):
    r = (np.asarray(y_true, "float64") - np.asarray(y_pred, "float64")).reshape(-1)
    scale = 1.4826 * np.median(np.abs(r - np.median(r)))
    scale = max(scale if scale > 1e-6 else 1.0, min_scale)
    u = r / scale
    rho = np.where(np.abs(u) <= c, c**2 / 6 * (1 - (1 - (u / c) ** 2) ** 3), c**2 / 6)
    return rho.mean() * (scale**2 if form == "residual" else 1.0)


Y_TRUE = np.array([0.5, -0.2, 0.9, 0.1, -0.7, 0.3, 0.0, -1.0], "float32")[:, None]
Y_PRED = np.array([0.4, -0.1, 0.2, 0.15, -0.65, 0.35, 0.9, 0.95], "float32")[:, None]


@pytest.mark.parametrize("form", ["residual", "scaled"])
@pytest.mark.parametrize("c", [C, 1.0])
def test_tukey_matches_numpy(c, form):
    got = float(TukeyBiweight(c=c, form=form)(Y_TRUE, Y_PRED))
    assert got == pytest.approx(numpy_tukey(Y_TRUE, Y_PRED, c, form), rel=1e-5)
    # Targets given as (batch,) give the same value.
    assert float(TukeyBiweight(c=c, form=form)(Y_TRUE[:, 0], Y_PRED)) == pytest.approx(got, rel=1e-6)


def test_tukey_hand_values():
    # r = [0, 1, -1, 2, 6] -> median 1, |r - 1| = [1, 0, 2, 1, 5] -> MAD 1 -> scale 1.4826.
    r = np.array([0.0, 1.0, -1.0, 2.0, 6.0])
    u = r / 1.4826
    c = 2.0
    rho = [c**2 / 6 * (1 - (1 - (v / c) ** 2) ** 3) if abs(v) <= c else c**2 / 6 for v in u]
    args = (r[:, None].astype("float32"), np.zeros((5, 1), "float32"))
    assert float(TukeyBiweight(c=c, form="scaled")(*args)) == pytest.approx(np.mean(rho), rel=1e-5)
    assert float(TukeyBiweight(c=c)(*args)) == pytest.approx(np.mean(rho) * 1.4826**2, rel=1e-5)
    assert rho[-1] == pytest.approx(c**2 / 6)  # 6 / 1.4826 > 2: saturated


@pytest.mark.parametrize("form", ["residual", "scaled"])
def test_tukey_gradient_is_zero_beyond_c(form):
    y_pred = tf.Variable(Y_PRED)
    with tf.GradientTape() as tape:
        loss = TukeyBiweight(c=C, form=form)(Y_TRUE, y_pred)
    grad = tape.gradient(loss, y_pred).numpy()[:, 0]
    r = (Y_TRUE - Y_PRED)[:, 0]
    s = 1.4826 * np.median(np.abs(r - np.median(r)))
    scaled = r / s
    outside = np.abs(scaled) > C
    assert outside.sum() >= 2 and (~outside).sum() >= 4  # the fixed vectors cover both cases
    assert np.all(grad[outside] == 0.0)
    assert np.all(grad[~outside & (r != 0)] != 0.0)
    # Inside: d/dpred rho(r/s) = -(r/s)(1 - (r/s/c)^2)^2 / s, averaged over the batch (scale held
    # constant); the residual form is that times s^2.
    expected = -(scaled * (1 - (scaled / C) ** 2) ** 2) / s / len(r) * (s**2 if form == "residual" else 1.0)
    np.testing.assert_allclose(grad[~outside], expected[~outside], rtol=1e-4, atol=1e-7)


def test_tukey_value_falls_as_predictions_improve_in_the_residual_form_only():
    # The same predictions made k times more accurate: every residual is divided by k.
    values = {form: [float(TukeyBiweight(form=form)(Y_TRUE, Y_TRUE - (Y_TRUE - Y_PRED) / k)) for k in (1, 2, 10)]
              for form in ("residual", "scaled")}
    np.testing.assert_allclose(values["residual"], [values["residual"][0] / k**2 for k in (1, 2, 10)], rtol=1e-4)
    np.testing.assert_allclose(values["scaled"], values["scaled"][0], rtol=1e-4)  # scale-invariant


def test_tukey_min_scale_is_a_floor():
    tiny = (Y_TRUE, Y_TRUE - (Y_TRUE - Y_PRED) / 100)  # residual scale about 0.002
    got = float(TukeyBiweight(form="scaled", min_scale=0.05)(*tiny))
    assert got == pytest.approx(numpy_tukey(*tiny, form="scaled", min_scale=0.05), rel=1e-5)
    assert got < 0.1 * float(TukeyBiweight(form="scaled")(*tiny))
    with pytest.raises(ValueError, match="form"):
        TukeyBiweight(form="other")


@pytest.mark.parametrize("form", ["residual", "scaled"])
def test_tukey_guards_a_zero_mad(form):
    y_true = np.array([[0.1], [0.1], [0.1], [0.5]], "float32")
    y_pred = np.array([[0.1], [0.1], [0.1], [0.1]], "float32")  # 3 of 4 residuals are 0 -> MAD = 0
    loss = float(TukeyBiweight(form=form)(y_true, y_pred))
    assert np.isfinite(loss) and loss == pytest.approx(numpy_tukey(y_true, y_pred, form=form), rel=1e-5)
    assert np.isfinite(float(TukeyBiweight(form=form)(y_true[:1], y_pred[:1])))  # batch of one


def test_mse_and_ccc_losses():
    assert float(MeanSquaredError()(Y_TRUE, Y_PRED)) == pytest.approx(np.mean((Y_TRUE - Y_PRED) ** 2), rel=1e-5)
    t, p = Y_TRUE[:, 0].astype("float64"), Y_PRED[:, 0].astype("float64")
    ccc = 2 * np.mean((t - t.mean()) * (p - p.mean())) / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert float(ConcordanceLoss()(Y_TRUE, Y_PRED)) == pytest.approx(1 - ccc, rel=1e-4)
    assert float(ConcordanceLoss()(Y_TRUE, Y_TRUE)) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("cls", [TukeyBiweight, MeanSquaredError, ConcordanceLoss])
def test_losses_serialize(cls):
    loss = cls()
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is cls and restored.get_config() == loss.get_config()


def test_compile_args_weights():
    args = compile_args(ModelConfig())
    assert args["loss_weights"] == {"valence": 0.3, "arousal": pytest.approx(0.7), "expression": 0.5}
    assert isinstance(args["loss"]["valence"], TukeyBiweight) and args["loss"]["valence"].c == C
    assert (args["loss"]["valence"].form, args["loss"]["valence"].min_scale) == ("residual", 0.0)
    assert args["loss"]["valence"] is not args["loss"]["arousal"]
    assert isinstance(args["loss"]["expression"], keras.losses.SparseCategoricalCrossentropy)

    gcn = compile_args(ModelConfig(head="gcn", loss="mse", alpha=1.0, beta=0.5))
    assert gcn["loss_weights"] == {"valence": 0.5, "arousal": 0.5, "expression": 1.0}
    assert isinstance(gcn["loss"]["arousal"], MeanSquaredError)

    mt = compile_args(ModelConfig(head="mt", loss="ccc"))
    assert set(mt["loss"]) == {"valence", "arousal"} and mt["loss_weights"]["valence"] == 0.3
    assert isinstance(mt["loss"]["arousal"], ConcordanceLoss)

    single = compile_args(ModelConfig(head="single-arousal"))
    assert single["loss_weights"] == {"arousal": 1.0} and set(single["loss"]) == {"arousal"}
