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
    x, y, w = next(iter(pipeline.make_dataset(prepared, "training", cfg, training=True)))
    assert all(np.all(w[name].numpy() == 1) for name in ("valence", "arousal", "expression"))  # no label is missing
    assert x.shape == (8, 48, 48, 1) and x.dtype == tf.float32
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255 and float(tf.reduce_max(x)) > 1
    assert y["valence"].shape == (8, 1) and y["arousal"].shape == (8, 1) and y["valence"].dtype == tf.float32
    assert y["expression"].shape == (8,) and y["expression"].dtype == tf.int32
    assert pipeline.count_examples(prepared, "training") == 40


def test_deterministic_mode_is_reproducible(prepared):
    cfg = DataConfig(batch_size=8, deterministic=True, cache=False)

    def epoch(ds):
        return [(x.numpy(), y["valence"].numpy()) for x, y, _ in ds]

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
    assert [x.shape[0] for x, _, _ in plain] == [5, 5, 2]
    x, _, _ = pairs[0]
    assert x.shape == (5, 2, 48, 48, 1)
    assert np.array_equal(x[:, 0].numpy(), plain[0][0].numpy())
    assert np.array_equal(x[:, 1].numpy(), plain[0][0].numpy()[:, :, ::-1])
    again = list(pipeline.make_dataset(prepared, "validation", cfg, training=False))
    assert all(np.array_equal(p[1]["valence"], q[1]["valence"]) for p, q in zip(plain, again))
    seven = [y["expression"].numpy() for _, y, _ in pipeline.make_dataset(prepared, "validation", cfg, training=False, num_classes=7)]
    codes = np.concatenate(seven)
    assert codes.max() <= 6 and len(codes) == pipeline.count_examples(prepared, "validation", num_classes=7)
    with pytest.raises(ValueError):
        pipeline.make_dataset(prepared, "training", cfg, training=True, flip_pairs=True)


def test_unprepared_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        pipeline.make_dataset(tmp_path, "training", DataConfig(), training=True)


def _all(ds):
    """Every element of a finite dataset, concatenated per key (labels, then sample weights)."""
    parts = list(ds.as_numpy_iterator())
    return [{k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]} for i in range(1, len(parts[0]))]


def test_none_faces_reach_valence_and_arousal_with_the_expression_masked(prepared):
    from va2att.data.pipeline import count_examples

    cfg = DataConfig(batch_size=1, deterministic=True, shuffle_buffer=100)
    n, n8 = count_examples(prepared, "training"), count_examples(prepared, "training", none_faces=True)
    assert n8 == n + 1  # the synthetic set plants one code-8 face per split
    plain = pipeline.make_dataset(prepared, "training", cfg, training=True)
    labels, weights = _all(plain)
    assert len(labels["expression"]) == n and np.all(weights["expression"] == 1) and set(labels["expression"]) <= set(range(8))
    labels, weights = _all(pipeline.make_dataset(prepared, "training", cfg, training=True, none_faces=True))
    assert len(labels["expression"]) == n + 1
    masked = weights["expression"] == 0
    assert masked.sum() == 1 and labels["expression"][masked] == [0]  # a placeholder the zero weight hides
    assert np.all(weights["valence"] == 1) and np.all(weights["arousal"] == 1)
    with pytest.raises(ValueError, match="training"):
        pipeline.make_dataset(prepared, "validation", cfg, training=False, none_faces=True)


def test_none_faces_train_valence_and_arousal_but_not_the_cross_entropy(prepared):
    from conftest import TINY_MODEL

    from va2att.config import ModelConfig, RunConfig
    from va2att.training.trainer import build_compiled_model

    cfg = DataConfig(batch_size=1, deterministic=True)  # every face, none left in a partial batch
    ds = pipeline.make_dataset(prepared, "training", cfg, training=True, none_faces=True)
    only_none = ds.unbatch().filter(lambda x, y, w: w["expression"] == 0).batch(4)
    model = build_compiled_model(RunConfig(model=ModelConfig(**TINY_MODEL)))
    logs = model.evaluate(only_none, verbose=0, return_dict=True)
    assert logs["expression_loss"] == 0.0 and logs["valence_loss"] > 0 and logs["arousal_loss"] > 0


def test_the_holdout_split_is_disjoint_stable_and_of_the_asked_share(prepared):
    import tensorflow as tf

    from va2att.data.pipeline import count_holdout, holdout_mask

    cfg = DataConfig(batch_size=4, holdout_share=0.25, holdout_seed=3)

    def paths(holdout):
        ds = pipeline.make_dataset(prepared, "training", cfg, training=False, holdout=holdout)
        return ds.cardinality().numpy(), sum(len(y["expression"]) for _, y, _ in ds.as_numpy_iterator())

    (_, kept), (_, held), (_, whole) = paths("exclude"), paths("only"), paths(None)
    assert kept + held == whole and 0 < held < whole
    assert count_holdout(prepared, "training", 0.25, 3) == (kept, held)
    # The mask is a function of the path alone: the same in another run, disjoint by construction.
    names = tf.constant([f"train{i:03d}/t{i:06d}.jpg" for i in range(4000)])
    first, again = holdout_mask(names, 0.25, 3).numpy(), holdout_mask(names, 0.25, 3).numpy()
    assert np.array_equal(first, again) and abs(first.mean() - 0.25) < 0.03
    assert not np.array_equal(first, holdout_mask(names, 0.25, 4).numpy())  # another seed, another share
