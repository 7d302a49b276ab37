"""tf.data input pipeline over prepared shards (see `prepare`).

Yields `(image, {"valence", "arousal", "expression"})`:
    image       float32 [B, 48, 48, 1], pixel values 0-255 (the model rescales inside the graph);
                with flip_pairs=True, [B, 2, 48, 48, 1] (index 0 centre crop, 1 its mirror)
    valence     float32 [B, 1]
    arousal     float32 [B, 1]
    expression  int32 [B]
With `none_faces=True` (training only) AffectNet's code-8 "None" faces are streamed too and each
element is `(image, labels, sample_weights)`: weight 1 for valence and arousal, and for the
expression 1 on codes 0..K-1 and 0 on "None" faces (whose expression label is then 0, a
placeholder that the zero weight keeps out of the cross-entropy and of the weighted accuracy).

`holdout` splits the training split in two by a keyed hash of each face's file path
(`holdout_mask`): "exclude" streams the faces that stay for training, "only" the held-out share
used for model selection and the schedule (`data.selection="holdout"`). The split depends only on
the path, the share and the seed, so it is the same in every run and disjoint by construction.

Training: shuffle, random 48 x 48 crop of the 56 x 56 face, random horizontal flip. Evaluation:
the centre crop, or the crop and its mirror (`va2att.face_input.centre_crop`, `flip_pair`).
The augmentation is the pure function `augment(faces, keys)`: each element's crop offset and
flip are read from its own int64 key, so the same keys give the same crops eagerly and in
tf.data. Keys come from `tf.data.Dataset.random`, seeded in deterministic mode (and then the
whole pipeline is deterministic: same seed, same batches, epoch after epoch) and unseeded
otherwise. Given `epoch`, the shuffle and key seeds are those of that epoch (`epoch_seed`), so a run
resumed at epoch e trains on what the uninterrupted run would have. Faces carry no landmark targets, so a flip permutes nothing (valence, arousal and
expression are mirror-invariant).
"""

from __future__ import annotations

import functools
from pathlib import Path

from va2att.config import FACE_SIZE, INPUT_SIZE, DataConfig
from va2att.data.affectnet import NONE_CODE
from va2att.face_input import centre_crop, flip_pair

MARGIN = FACE_SIZE - INPUT_SIZE  # crop offsets 0..MARGIN on each axis
SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "valid": "validation", "validation": "validation"}
PARSE_BATCH = 512  # records parsed together (vectorised parse_example)
HOLDOUT_BUCKETS = 1_000_000  # resolution of the held-out share
HOLDOUT_MODES = (None, "exclude", "only")


def _split(split: str) -> str:
    if split not in SPLIT_ALIASES:
        raise ValueError(f"split must be 'training' or 'validation'. Received: split={split!r}")
    return SPLIT_ALIASES[split]


def _report(prepared_dir) -> dict:
    from va2att.data.prepare import load_report

    return load_report(prepared_dir)


def count_examples(prepared_dir, split: str, num_classes: int = 8, none_faces: bool = False) -> int:
    """Faces in a prepared split (codes < num_classes, and code 8 with `none_faces`), from report.json."""
    s = _report(prepared_dir)["splits"][_split(split)]
    per = s.get("per_expression", {})
    return sum(n for code, n in per.items() if int(code) < num_classes or (none_faces and int(code) == NONE_CODE))


def holdout_mask(paths, share: float, seed: int = 0):
    """True for the faces of the held-out share: a keyed hash of the path (SipHash, `seed`) below `share`."""
    import tensorflow as tf

    bucket = tf.strings.to_hash_bucket_strong(paths, HOLDOUT_BUCKETS, key=[int(seed), 0x5EED])
    return bucket < round(share * HOLDOUT_BUCKETS)


def _kept(p, num_classes: int, none_faces: bool):
    import tensorflow as tf

    keep = p["expression"] < num_classes
    return tf.logical_or(keep, p["expression"] == NONE_CODE) if none_faces else keep


@functools.lru_cache(maxsize=32)
def count_holdout(prepared_dir, split: str, share: float, seed: int, num_classes: int = 8,
                  none_faces: bool = False) -> tuple[int, int]:
    """(kept for training, held out) faces of a split, by one pass over the shards' paths and codes."""
    import tensorflow as tf

    files = [str(Path(prepared_dir) / n) for n in _report(prepared_dir)["splits"][_split(split)]["shards"]]
    spec = {"path": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "expression": tf.io.FixedLenFeature([], tf.int64)}
    held = total = 0
    for p in tf.data.TFRecordDataset(files).batch(4096).map(lambda b: tf.io.parse_example(b, spec)):
        keep = _kept(p, num_classes, none_faces)
        mask = holdout_mask(p["path"], share, seed)
        total += int(tf.reduce_sum(tf.cast(keep, tf.int64)))
        held += int(tf.reduce_sum(tf.cast(tf.logical_and(keep, mask), tf.int64)))
    return total - held, held


def _count(prepared_dir, split, data_cfg: DataConfig, num_classes, none_faces, holdout) -> int:
    if holdout is None:
        return count_examples(prepared_dir, split, num_classes, none_faces)
    kept, held = count_holdout(prepared_dir, split, data_cfg.holdout_share, data_cfg.holdout_seed, num_classes,
                               none_faces)
    return held if holdout == "only" else kept


def epoch_seed(seed, epoch):
    """The shuffle and augmentation seed of one epoch: a function of (seed, epoch) only (int64, TF)."""
    import tensorflow as tf

    epoch = tf.cast(tf.convert_to_tensor(epoch), tf.int64)
    return tf.constant(int(seed), tf.int64) * 1_000_003 + epoch * 7919 + 17


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


def _masked_targets(p):
    """Labels and sample weights when "None" faces are streamed: their expression is weighted 0."""
    import tensorflow as tf

    none = tf.equal(p["expression"], NONE_CODE)
    labels = _targets(p)
    labels["expression"] = tf.where(none, tf.zeros_like(labels["expression"]), labels["expression"])
    ones = tf.ones_like(labels["valence"][:, 0])
    return labels, {"valence": ones, "arousal": ones, "expression": tf.cast(tf.logical_not(none), tf.float32)}


def make_dataset(
    prepared_dir,
    split: str,
    data_cfg: DataConfig,
    *,
    training: bool,
    num_classes: int = 8,
    seed: int = 0,
    flip_pairs: bool = False,
    none_faces: bool = False,
    holdout: str | None = None,
    epoch=None,
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
        none_faces: training only: stream code-8 faces too, with sample weights (see above).
        holdout: None (the whole split), "exclude" or "only" (the held-out share of
            `data_cfg.holdout_share`, seed `data_cfg.holdout_seed`; see above).
        epoch: training only: the epoch (0-based) an iteration of the dataset trains, an int or a
            tf.Variable that the trainer sets before each epoch (`va2att.callbacks.DataEpoch`), read
            each time an iteration starts. In deterministic mode the shuffle order and the augmentation
            are then seeded by `epoch_seed(seed, epoch)`: epoch e sees the same batches in a run resumed
            at e as in an uninterrupted one. None (or not deterministic): seeded once by `seed`.
    """
    import tensorflow as tf

    from va2att.data.records import parse_batch

    if num_classes not in (7, 8):
        raise ValueError(f"num_classes must be 7 or 8. Received: num_classes={num_classes}")
    if flip_pairs and training:
        raise ValueError("flip_pairs is for evaluation; use training=False.")
    if none_faces and not training:
        raise ValueError("none_faces is for training; evaluation scores codes 0..K-1 only.")
    if holdout not in HOLDOUT_MODES:
        raise ValueError(f"holdout must be one of {HOLDOUT_MODES}. Received: holdout={holdout!r}")
    split = _split(split)
    report = _report(prepared_dir)
    files = [str(Path(prepared_dir) / n) for n in report["splits"][split]["shards"]]
    if not files:
        raise FileNotFoundError(f"no shards for split {split!r} in {prepared_dir}")
    calls = tf.data.AUTOTUNE if data_cfg.parallel_calls == -1 else data_cfg.parallel_calls
    det = bool(data_cfg.deterministic) or not training

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=None if det else calls)
    ds = ds.batch(PARSE_BATCH).map(parse_batch, num_parallel_calls=calls, deterministic=True)
    share, hseed = data_cfg.holdout_share, data_cfg.holdout_seed

    def select(p):
        out = {"image": p["image"], "valence": p["valence"], "arousal": p["arousal"], "expression": p["expression"]}
        keep = _kept(p, num_classes, none_faces)
        if holdout is not None:
            held = holdout_mask(p["path"], share, hseed)
            keep = tf.logical_and(keep, held if holdout == "only" else tf.logical_not(held))
        out["keep"] = keep
        return out

    ds = ds.map(select, num_parallel_calls=calls, deterministic=True)
    ds = ds.unbatch().filter(lambda p: p["keep"])
    if data_cfg.cache:
        ds = ds.cache()
    if training:
        faces, deterministic = ds, data_cfg.deterministic

        def one_epoch(epoch_seed_value):
            shuffled = faces.shuffle(data_cfg.shuffle_buffer, seed=epoch_seed_value, reshuffle_each_iteration=True)
            keys = tf.data.Dataset.random(seed=epoch_seed_value if deterministic else None,
                                          rerandomize_each_iteration=True)
            return tf.data.Dataset.zip((shuffled, keys)).batch(data_cfg.batch_size, drop_remainder=True)

        if epoch is None or not deterministic:  # unseeded augmentation: no order to reproduce
            ds = one_epoch(seed)
        else:  # read the epoch when an iteration starts: one flat_map element builds that epoch's stream
            ds = tf.data.Dataset.range(1).flat_map(lambda _: one_epoch(epoch_seed(seed, epoch)))

        def train_map(p, k):
            image = tf.cast(augment(p["image"], k), tf.float32)
            return (image, *_masked_targets(p)) if none_faces else (image, _targets(p))

        ds = ds.map(train_map, num_parallel_calls=calls, deterministic=det)
        batches = _count(prepared_dir, split, data_cfg, num_classes, none_faces, holdout) // data_cfg.batch_size
    else:
        ds = ds.batch(data_cfg.batch_size)

        def eval_map(p):
            img = flip_pair(p["image"]) if flip_pairs else centre_crop(p["image"])
            return tf.cast(img, tf.float32), _targets(p)

        ds = ds.map(eval_map, num_parallel_calls=calls, deterministic=True)
        batches = -(-_count(prepared_dir, split, data_cfg, num_classes, none_faces, holdout) // data_cfg.batch_size)
    # Known length (from report.json): Keras shows progress and knows the steps per epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    options = tf.data.Options()
    options.deterministic = det
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)

