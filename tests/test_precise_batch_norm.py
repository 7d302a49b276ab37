"""va2att.training.precise_batch_norm: batch-norm statistics recomputed for the current weights, before each validation."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL

from va2att.config import ModelConfig, RunConfig, apply_overrides
from va2att.model.layers import FusedBatchNormalization
from va2att.model.network import build_model
from va2att.training import precise_batch_norm, trainer
from va2att.training.distribute import batch_norm_layers


def test_the_statistics_become_the_average_of_the_batches_statistics():
    inputs = keras.Input((4, 4, 3))
    bn = FusedBatchNormalization(momentum=0.9, name="bn")
    frozen = FusedBatchNormalization(momentum=0.9, name="frozen")
    model = keras.Model(inputs, frozen(bn(inputs)))
    frozen.trainable = False
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0 * k, 1.0 + k, (5, 4, 4, 3)).astype("float32") for k in range(3)]

    assert precise_batch_norm.recompute_batch_norm_statistics(model, batches, batches=2) == 2

    flat = [b.reshape(-1, 3) for b in batches[:2]]  # only the first two batches are read
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([f.mean(0) for f in flat], 0), rtol=1e-5)
    # the fused kernel's (unbiased) batch variance, as the moving average uses it in training
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([f.var(0, ddof=1) for f in flat], 0),
                               rtol=1e-4)
    assert bn.momentum == 0.9  # restored
    np.testing.assert_array_equal(frozen.moving_mean.numpy(), np.zeros(3))  # a frozen layer keeps its own
    np.testing.assert_array_equal(frozen.moving_variance.numpy(), np.ones(3))


def test_recomputed_statistics_make_inference_match_training_mode_on_the_same_faces():
    model = build_model(ModelConfig(**TINY_MODEL))
    x = np.random.default_rng(1).uniform(0, 255, (16, 48, 48, 1)).astype("float32")
    for layer in batch_norm_layers(model):  # stale statistics, as after fast-moving weights
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 2.0, "float32"))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 9.0, "float32"))
    trained = {k: np.asarray(v) for k, v in model(x, training=True).items()}  # moves the statistics too
    stale = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    assert max(np.abs(stale[k] - trained[k]).max() for k in trained) > 0.05

    assert precise_batch_norm.recompute_batch_norm_statistics(model, [x], batches=1) == 1
    precise = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    for k, value in trained.items():  # equal up to the unbiased (N-1) variance the statistics keep
        np.testing.assert_allclose(precise[k], value, atol=0.02, err_msg=k)


def test_nothing_changes_without_batches():
    model = build_model(ModelConfig(**TINY_MODEL))
    before = [layer.moving_mean.numpy().copy() for layer in batch_norm_layers(model)]
    assert precise_batch_norm.recompute_batch_norm_statistics(model, [], batches=4) == 0
    assert precise_batch_norm.recompute_batch_norm_statistics(model, [np.zeros((2, 48, 48, 1))], batches=0) == 0
    for layer, mean in zip(batch_norm_layers(model), before):
        np.testing.assert_array_equal(layer.moving_mean.numpy(), mean)


@pytest.mark.parametrize("samples, batch_size, batches", [(0, 256, 0), (1, 256, 1), (8192, 256, 32), (100, 64, 2)])
def test_batches_for_covers_the_samples(samples, batch_size, batches):
    assert precise_batch_norm.batches_for(samples, batch_size) == batches


def test_the_setting_is_validated_and_older_runs_keep_the_moving_averages():
    from va2att.config import from_dict, to_dict

    with pytest.raises(ValueError, match="precise_bn_samples"):
        apply_overrides(RunConfig(), ["train.precise_bn_samples=-1"])
    saved = to_dict(RunConfig())
    del saved["train"]["precise_bn_samples"]  # a config.json written before the setting existed
    assert from_dict(saved).train.precise_bn_samples == 0
    assert RunConfig().train.precise_bn_samples > 0


def test_training_recomputes_before_every_validation(prepared, tmp_path, monkeypatch):
    calls = []
    real = precise_batch_norm.recompute_batch_norm_statistics

    def spy(model, images, batches, forward=None):
        calls.append(batches)
        return real(model, images, batches, forward)

    monkeypatch.setattr(precise_batch_norm, "recompute_batch_norm_statistics", spy)
    cfg = apply_overrides(RunConfig(), [f"model.{k}={v}" for k, v in TINY_MODEL.items()] + [
        f"data.data={prepared}", "data.batch_size=8", "data.shuffle_buffer=64", "train.epochs=2",
        "train.precise_bn_samples=16"])
    run = trainer.start_run(cfg, tmp_path / "run", ["test"])
    trainer.train(run.root, verbose=0, log=lambda *a: None)
    assert calls == [2, 2]  # 16 faces = 2 batches of 8, once per epoch


def test_the_trainer_adds_the_callback_only_when_it_applies():
    cfg = apply_overrides(RunConfig(), ["train.precise_bn_samples=16", "data.batch_size=8"])
    dataset = tf.data.Dataset.from_tensors((np.zeros((8, 48, 48, 1), "float32"), {}))
    callback = trainer._precise_batch_norm(cfg, dataset, single=True, log=print)
    assert isinstance(callback, precise_batch_norm.PreciseBatchNorm) and callback.batches == 2


def test_several_replicas_keep_the_moving_averages_and_say_so():
    lines = []
    cfg = RunConfig()
    assert trainer._precise_batch_norm(cfg, None, single=False, log=lines.append) is None
    assert "moving averages" in lines[0]
    off = apply_overrides(cfg, ["train.precise_bn_samples=0"])
    assert trainer._precise_batch_norm(off, None, single=True, log=lines.append) is None and len(lines) == 1
