"""Custom layers: every layer through the layer harness (config, shapes, weights, training step, .keras
save/load, mixed precision), plus odd sizes and numerical references."""

import keras
import numpy as np
import pytest
from layer_testing import run_layer_test

from va2att.model.layers import (
    EmotionGCN,
    FusedBatchNormalization,
    GraphConvolution,
    LevelAttention,
    PerImageStandardization,
    ResidualAttentionBlock,
    ResidualUnit,
)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("filters,strides,in_channels", [(8, 1, 8), (8, 2, 4), (16, 1, 8)])
def test_residual_unit(filters, strides, in_channels, tmp_path):
    has_projection = strides != 1 or in_channels != filters
    layer, _ = run_layer_test(
        ResidualUnit, {"filters": filters, "strides": strides, "name": "unit"}, _rand(2, 12, 12, in_channels),
        (2, 12 // strides, 12 // strides, filters), call_kwargs={"training": True},
        # 3 BN (gamma, beta) + 3 convs, + projection conv; each BN's moving mean and variance.
        expected_num_trainable_weights=9 + int(has_projection), expected_num_non_trainable_weights=6,
        tmp_path=tmp_path)
    assert (layer.shortcut is not None) == has_projection


def test_residual_unit_downsamples_odd_sizes():
    y = ResidualUnit(8, strides=2)(_rand(2, 5, 5, 8))
    assert tuple(y.shape) == (2, 3, 3, 8)


@pytest.mark.parametrize("size,depth", [(6, 1), (5, 1), (12, 2), (7, 2)])
def test_attention_block_shapes_and_odd_sizes(size, depth):
    # 6x6 pools to 3x3 and comes back to 6x6; 5 -> 3 -> 5; 12 -> 6 -> 3 -> 6 -> 12; 7 -> 4 -> 2 -> 4 -> 7.
    x = _rand(2, size, size, 8)
    block = ResidualAttentionBlock(8, mask_depth=depth)
    y = block(x, training=True)
    assert tuple(y.shape) == (2, size, size, 8)
    assert len(block.mask_down) == depth and len(block.mask_skip) == depth - 1
    symbolic = block(keras.Input((size, size, 8)))
    assert tuple(symbolic.shape) == (None, size, size, 8)


def test_attention_block_output_is_one_plus_mask_times_trunk():
    x = _rand(2, 6, 6, 8)
    block = ResidualAttentionBlock(8, mask_depth=1)
    y = keras.ops.convert_to_numpy(block(x))
    trunk = x
    for unit in block.trunk:
        trunk = unit(trunk)
    ratio = y / keras.ops.convert_to_numpy(trunk)
    # The soft mask lies in (0, 1), so H / T lies in (1, 2).
    assert np.all((ratio > 1.0 - 1e-4) & (ratio < 2.0 + 1e-4))


def test_attention_block_layer_checks(tmp_path):
    # Units: trunk 2, mask down 2, skip 1, bottom 1, up 1 = 7 x (9 trainable, 6 moving statistics); the
    # mask head: 2 BN (2 + 2 each) and 2 convs (the second with a bias).
    run_layer_test(ResidualAttentionBlock, {"filters": 8, "mask_depth": 2, "name": "att"}, _rand(2, 12, 12, 8),
                   (2, 12, 12, 8), expected_num_trainable_weights=7 * 9 + 4 + 3,
                   expected_num_non_trainable_weights=7 * 6 + 4, tmp_path=tmp_path)


def test_attention_block_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mask_depth"):
        ResidualAttentionBlock(8, mask_depth=0)
    with pytest.raises(ValueError, match="filters"):
        ResidualAttentionBlock(-1)


@pytest.mark.parametrize("pooling,width", [("flatten", 3 * 16), ("mean", 16)])
def test_level_attention_matches_reference(pooling, width, tmp_path):
    levels = [_rand(4, 12, seed=i) for i in range(3)]
    # Bidirectional GRU: per direction kernel, recurrent kernel, bias.
    layer, z = run_layer_test(LevelAttention, {"gru_units": 8, "pooling": pooling, "name": "levels"}, levels,
                              (4, width), expected_num_trainable_weights=6, tmp_path=tmp_path)
    z = keras.ops.convert_to_numpy(z)
    # Reference: softmax(H Hᵀ / sqrt(d)) H on the BiGRU outputs, then pooled.
    h = keras.ops.convert_to_numpy(layer.bigru(np.stack(levels, axis=1)))
    scores = h @ h.transpose(0, 2, 1) / np.sqrt(h.shape[-1])
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = weights @ h
    expected = attended.reshape(4, -1) if pooling == "flatten" else attended.mean(axis=1)
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)
    # The GRU must not need cuDNN (an export traced on a GPU must run on a CPU server).
    # (GRU.get_config does not record use_cudnn; LevelAttention re-creates its GRU with it on load.)
    assert layer.bigru.forward_layer.use_cudnn is False and layer.bigru.backward_layer.use_cudnn is False


def test_level_attention_accepts_a_stacked_sequence():
    assert tuple(LevelAttention(4)(_rand(2, 3, 6)).shape) == (2, 24)
    with pytest.raises(ValueError, match="pooling"):
        LevelAttention(4, pooling="max")


def test_graph_convolution_is_a_x_w(tmp_path):
    features, adjacency = _rand(4, 5), _rand(4, 4, seed=1)
    # One weight, the kernel: no bias. Nodes, not a batch, on the first axis.
    layer, y = run_layer_test(GraphConvolution, {"units": 3, "name": "gc"}, (features, adjacency), (4, 3),
                              expected_num_trainable_weights=1, fixed_batch=True, tmp_path=tmp_path)
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(y), adjacency @ (features @ kernel), rtol=1e-5, atol=1e-5)
    assert len(layer.weights) == 1  # no bias


def test_emotion_gcn_head(tmp_path):
    adjacency = np.full((10, 10), 0.1, dtype="float32")
    z = _rand(3, 12)
    # Two graph convolutions, one kernel each; the outputs are float32 whatever the policy.
    layer, outputs = run_layer_test(
        EmotionGCN, {"num_classes": 8, "adjacency": adjacency, "hidden_units": 16, "name": "gcn"}, z,
        [(3, 8), (3, 1), (3, 1)], expected_num_trainable_weights=2, expected_mixed_precision_dtype="float32",
        tmp_path=tmp_path)
    expression, valence, arousal = (keras.ops.convert_to_numpy(t) for t in outputs)
    np.testing.assert_allclose(expression.sum(axis=1), 1.0, rtol=1e-5)
    # logits = z · Wᵀ with W = A·(LeakyReLU(A·(X·W1))·W2), X one-hot.
    w1, w2 = (keras.ops.convert_to_numpy(v) for v in (layer.gc1.kernel, layer.gc2.kernel))
    hidden = adjacency @ w1
    hidden = np.where(hidden > 0, hidden, 0.2 * hidden)
    logits = z @ (adjacency @ (hidden @ w2)).T
    np.testing.assert_allclose(valence[:, 0], np.tanh(logits[:, 8]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(arousal[:, 0], np.tanh(logits[:, 9]), rtol=1e-4, atol=1e-5)
    config = layer.get_config()
    assert np.array_equal(np.asarray(config["adjacency"], "float32"), adjacency)
    with pytest.raises(ValueError, match="adjacency"):
        EmotionGCN(8, adjacency=np.eye(9))


def test_fused_batch_norm_layer_checks(tmp_path):
    layer, _ = run_layer_test(FusedBatchNormalization, {"momentum": 0.9, "epsilon": 1e-3, "name": "bn"},
                              _rand(4, 5, 5, 6), (4, 5, 5, 6), call_kwargs={"training": True},
                              expected_num_trainable_weights=2, expected_num_non_trainable_weights=2,
                              tmp_path=tmp_path)
    assert layer.momentum == 0.9


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras(training):
    x = _rand(8, 5, 5, 6) * 3.0 + 1.0
    fused, plain = FusedBatchNormalization(), keras.layers.BatchNormalization()
    fused.build(x.shape)
    plain.build(x.shape)
    for layer in (fused, plain):
        layer.gamma.assign(np.linspace(0.5, 2.0, 6))
        layer.beta.assign(np.linspace(-1.0, 1.0, 6))
        layer.moving_mean.assign(np.linspace(-0.2, 0.2, 6))
        layer.moving_variance.assign(np.linspace(0.5, 1.5, 6))
    np.testing.assert_allclose(fused(x, training=training), plain(x, training=training), rtol=1e-4, atol=1e-4)
    if training:
        # Same moving-average rule; the fused kernel's batch variance is the unbiased one.
        n = 8 * 5 * 5
        variance = x.reshape(-1, 6).var(axis=0) * n / (n - 1)
        expected = 0.99 * np.linspace(0.5, 1.5, 6) + 0.01 * variance
        np.testing.assert_allclose(fused.moving_variance, expected, rtol=1e-4)
        np.testing.assert_allclose(fused.moving_mean, plain.moving_mean, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size", [5, 6, 7, 24])
def test_shortcut_average_pool_selects_the_strided_pixels(size):
    # ResidualUnit sub-samples its shortcut with a 1x1 stride-2 average pool: it must pick x[:, ::2, ::2].
    x = np.random.default_rng(size).normal(size=(2, size, size, 3)).astype("float32")
    pooled = keras.ops.convert_to_numpy(keras.ops.average_pool(x, 1, 2, "valid"))
    np.testing.assert_array_equal(pooled, x[:, ::2, ::2, :])


def test_per_image_standardization_matches_tensorflow(tmp_path):
    import tensorflow as tf

    faces = np.random.default_rng(1).uniform(0, 255, size=(3, 6, 6, 1)).astype("float32")
    faces[1] = 0.3 * faces[0] + 90.0  # the same pattern, dimmer and flatter: standardises to the same values
    faces[2] = 128.0  # uniform: all zeros, not NaN
    _, out = run_layer_test(PerImageStandardization, {"name": "standardize"}, faces, (3, 6, 6, 1),
                            expected_num_trainable_weights=0, tmp_path=tmp_path)
    out = keras.ops.convert_to_numpy(out)
    np.testing.assert_allclose(out, tf.image.per_image_standardization(faces).numpy(), atol=1e-5)
    np.testing.assert_allclose(out[1], out[0], atol=1e-4)
    assert np.all(out[2] == 0.0)
