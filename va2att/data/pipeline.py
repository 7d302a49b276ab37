"""tf.data input pipeline over prepared shards (see `prepare`).

Yields `(image, {"valence", "arousal", "expression"})`:
    image       float32 [B, 48, 48, 1], pixel values 0-255 (the model rescales inside the graph);
                with flip_pairs=True, [B, 2, 48, 48, 1] (index 0 centre crop, 1 its mirror)
    valence     float32 [B, 1]
    arousal     float32 [B, 1]
    expression  int32 [B]

Training: shuffle, random 48 x 48 crop of the 56 x 56 face, random horizontal flip. Evaluation:
the centre crop, or the crop and its mirror (`va2att.face_input.centre_crop`, `flip_pair`).
The augmentation is the pure function `augment(faces, keys)`: each element's crop offset and
flip are read from its own int64 key, so the same keys give the same crops eagerly and in
tf.data. Keys come from `tf.data.Dataset.random`, seeded in deterministic mode (and then the
whole pipeline is deterministic: same seed, same batches, epoch after epoch) and unseeded
otherwise. Faces carry no landmark targets, so a flip permutes nothing (valence, arousal and
expression are mirror-invariant).
"""

from __future__ import annotations

from pathlib import Path

from va2att.config import FACE_SIZE, INPUT_SIZE, DataConfig
from va2att.face_input import centre_crop, flip_pair

MARGIN = FACE_SIZE - INPUT_SIZE  # crop offsets 0..MARGIN on each axis
SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "valid": "validation", "validation": "validation"}
PARSE_BATCH = 512  # records parsed together (vectorised parse_example)


def _split(split: str) -> str:
    if split not in SPLIT_ALIASES:
        raise ValueError(f"split must be 'training' or 'validation'. Received: split={split!r}")
    return SPLIT_ALIASES[split]


def _report(prepared_dir) -> dict:
    from va2att.data.prepare import load_report

    return load_report(prepared_dir)


def count_examples(prepared_dir, split: str, num_classes: int = 8) -> int:
    """Faces in a prepared split (codes < num_classes), from report.json."""
    s = _report(prepared_dir)["splits"][_split(split)]
    per = s.get("per_expression", {})
    return sum(n for code, n in per.items() if int(code) < num_classes)


def augment(faces, keys):
    """Random crop + horizontal flip, as a pure function of per-element keys.

    Args:
        faces: uint8 or float [B, FACE_SIZE, FACE_SIZE, C] (or one face [FACE_SIZE, FACE_SIZE, C]).
        keys: int64 [B] (or scalar): offset x = k mod 9, offset y = (k // 9) mod 9,
            flip = (k // 81) mod 2.
    Returns:
        Tensor [B, INPUT_SIZE, INPUT_SIZE, C] (or [INPUT_SIZE, INPUT_SIZE, C]), dtype of `faces`.
    """
    import tensorflow as tf

    faces = tf.convert_to_tensor(faces)
    keys = tf.cast(tf.convert_to_tensor(keys), tf.int64)
    single = faces.shape.rank == 3
    if single:
        faces, keys = faces[None], tf.reshape(keys, [1])
    span = tf.constant(MARGIN + 1, tf.int64)
    ox = tf.math.floormod(keys, span)
    oy = tf.math.floormod(tf.math.floordiv(keys, span), span)
    flip = tf.math.floormod(tf.math.floordiv(keys, span * span), 2) > 0
    r = tf.range(INPUT_SIZE, dtype=tf.int64)
    rows = oy[:, None] + r[None, :]
    cols = ox[:, None] + r[None, :]
    cols = tf.where(flip[:, None], tf.reverse(cols, axis=[1]), cols)  # mirrored columns = flip of the crop
    out = tf.gather(faces, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    return out[0] if single else out


def _targets(p):
    import tensorflow as tf

    return {
        "valence": tf.reshape(p["valence"], [-1, 1]),
        "arousal": tf.reshape(p["arousal"], [-1, 1]),
        "expression": tf.cast(p["expression"], tf.int32),
    }


def make_dataset(
    prepared_dir,
    split: str,
    data_cfg: DataConfig,
    *,
    training: bool,
    num_classes: int = 8,
    seed: int = 0,
    flip_pairs: bool = False,
):
    """A batched, prefetched tf.data.Dataset over one prepared split.

    Args:
        prepared_dir: folder written by `prepare` (report.json must be present).
        split: "training" / "validation" (or "train" / "val").
        data_cfg: DataConfig: batch_size, shuffle_buffer, cache, parallel_calls, deterministic.
        training: shuffle + random crop/flip, full batches only; else centre crop, in file order.
        num_classes: 8 keeps codes 0-7, 7 drops code 7.
        seed: shuffle and augmentation seed (fully reproducible with data_cfg.deterministic).
        flip_pairs: evaluation only: images [B, 2, 48, 48, 1] for flip averaging.
    """
    import tensorflow as tf

    from va2att.data.records import parse_batch

    if num_classes not in (7, 8):
        raise ValueError(f"num_classes must be 7 or 8. Received: num_classes={num_classes}")
    if flip_pairs and training:
        raise ValueError("flip_pairs is for evaluation; use training=False.")
    split = _split(split)
    report = _report(prepared_dir)
    files = [str(Path(prepared_dir) / n) for n in report["splits"][split]["shards"]]
    if not files:
        raise FileNotFoundError(f"no shards for split {split!r} in {prepared_dir}")
    calls = tf.data.AUTOTUNE if data_cfg.parallel_calls == -1 else data_cfg.parallel_calls
    det = bool(data_cfg.deterministic) or not training

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=None if det else calls)
    ds = ds.batch(PARSE_BATCH).map(parse_batch, num_parallel_calls=calls, deterministic=True)
    ds = ds.map(lambda p: {"image": p["image"], "valence": p["valence"], "arousal": p["arousal"],
                           "expression": p["expression"]}, num_parallel_calls=calls, deterministic=True)
    ds = ds.unbatch()
    if num_classes < 8:
        ds = ds.filter(lambda p: p["expression"] < num_classes)
    if data_cfg.cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(data_cfg.shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        keys = tf.data.Dataset.random(seed=seed if data_cfg.deterministic else None, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, keys)).batch(data_cfg.batch_size, drop_remainder=True)

        def train_map(p, k):
            return tf.cast(augment(p["image"], k), tf.float32), _targets(p)

        ds = ds.map(train_map, num_parallel_calls=calls, deterministic=det)
        batches = count_examples(prepared_dir, split, num_classes) // data_cfg.batch_size
    else:
        ds = ds.batch(data_cfg.batch_size)

        def eval_map(p):
            img = flip_pair(p["image"]) if flip_pairs else centre_crop(p["image"])
            return tf.cast(img, tf.float32), _targets(p)

        ds = ds.map(eval_map, num_parallel_calls=calls, deterministic=True)
        batches = -(-count_examples(prepared_dir, split, num_classes) // data_cfg.batch_size)
    # Known length (from report.json): Keras shows progress and knows the steps per epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    options = tf.data.Options()
    options.deterministic = det
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

