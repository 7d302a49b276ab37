"""va2att.data.pipeline: shapes, augmentation eager vs tf.data, determinism, evaluation modes."""

import numpy as np
import pytest
import tensorflow as tf

from va2att.config import DataConfig
from va2att.data import pipeline


def _faces(n=6):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 56, 56, 1), dtype=np.uint8)


def _reference(face, key):
    """NumPy reference of augment() for one face."""
    ox, oy, flip = key % 9, (key // 9) % 9, (key // 81) % 2
    crop = face[oy : oy + 48, ox : ox + 48]
    return crop[:, ::-1] if flip else crop


def test_augment_matches_reference_eagerly_and_in_tf_data():
    faces = _faces()
    keys = np.array([0, 8, 80, 81, 161, -7], np.int64)
    eager = pipeline.augment(faces, keys).numpy()
    for f, k, e in zip(faces, keys, eager):
        assert np.array_equal(e, _reference(f, int(k) % (9 * 9 * 2)))
    single = np.stack([pipeline.augment(f, k).numpy() for f, k in zip(faces, keys)])
    ds = tf.data.Dataset.from_tensor_slices((faces, keys)).map(pipeline.augment, num_parallel_calls=2)
    in_data = np.stack(list(ds.as_numpy_iterator()))
    batched = next(iter(tf.data.Dataset.from_tensor_slices((faces, keys)).batch(6).map(pipeline.augment)))
    assert np.array_equal(eager, single) and np.array_equal(eager, in_data) and np.array_equal(eager, batched.numpy())
    traced = tf.function(pipeline.augment)(tf.constant(faces, tf.float32), tf.constant(keys))
    assert np.array_equal(traced.numpy(), eager.astype(np.float32))


def test_training_batches_shapes_and_range(prepared):
    cfg = DataConfig(batch_size=8, deterministic=True)
    x, y = next(iter(pipeline.make_dataset(prepared, "training", cfg, training=True)))
    assert x.shape == (8, 48, 48, 1) and x.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255 and float(tf.reduce_max(x)) > 1
    assert y["valence"].shape == (8, 1) and y["arousal"].shape == (8, 1) and y["valence"].dtype == tf.float32
    assert y["expression"].shape == (8,) and y["expression"].dtype == tf.int32
    assert pipeline.count_examples(prepared, "training") == 40


def test_deterministic_mode_is_reproducible(prepared):
    cfg = DataConfig(batch_size=8, deterministic=True, cache=False)

    def epoch(ds):
        return [(x.numpy(), y["valence"].numpy()) for x, y in ds]

    a, b = (pipeline.make_dataset(prepared, "training", cfg, training=True, seed=3) for _ in range(2))
    a1, b1, a2 = epoch(a), epoch(b), epoch(a)
    assert len(a1) == 5
    assert all(np.array_equal(p[0], q[0]) and np.array_equal(p[1], q[1]) for p, q in zip(a1, b1))
    assert not all(np.array_equal(p[0], q[0]) for p, q in zip(a1, a2))  # a new epoch reshuffles and re-crops
    other = epoch(pipeline.make_dataset(prepared, "training", cfg, training=True, seed=4))
    assert not all(np.array_equal(p[1], q[1]) for p, q in zip(a1, other))


def test_evaluation_centre_crop_flip_pairs_and_seven_classes(prepared):
    cfg = DataConfig(batch_size=5)
    plain = list(pipeline.make_dataset(prepared, "validation", cfg, training=False))
    pairs = list(pipeline.make_dataset(prepared, "validation", cfg, training=False, flip_pairs=True))
    assert [x.shape[0] for x, _ in plain] == [5, 5, 2]
    x, _ = pairs[0]
    assert x.shape == (5, 2, 48, 48, 1)
    assert np.array_equal(x[:, 0].numpy(), plain[0][0].numpy())
    assert np.array_equal(x[:, 1].numpy(), plain[0][0].numpy()[:, :, ::-1])
    again = list(pipeline.make_dataset(prepared, "validation", cfg, training=False))
    assert all(np.array_equal(p[1]["valence"], q[1]["valence"]) for p, q in zip(plain, again))
    seven = [y["expression"].numpy() for _, y in pipeline.make_dataset(prepared, "validation", cfg, training=False, num_classes=7)]
    codes = np.concatenate(seven)
    assert codes.max() <= 6 and len(codes) == pipeline.count_examples(prepared, "validation", num_classes=7)
    with pytest.raises(ValueError):
        pipeline.make_dataset(prepared, "training", cfg, training=True, flip_pairs=True)


def test_unprepared_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        pipeline.make_dataset(tmp_path, "training", DataConfig(), training=True)
