"""tf.data input pipeline over prepared shards (see `prepare`).

`make_dataset(prepared_dir, split, data_cfg, training=..., ...)` (the options are the fields of
`Stream`) yields, whatever the options, `(image, labels, sample_weights)`:
    image           float32 [B, 48, 48, 1], pixel values 0-255 (the model rescales inside the graph);
                    with flip_pairs=True, [B, 2, 48, 48, 1] (index 0 centre crop, 1 its mirror)
    labels          {"valence": float32 [B, 1], "arousal": float32 [B, 1], "expression": int32 [B]}
                    (+ "video": string [B] and "frame": int64 [B] with with_video=True)
    sample_weights  {"valence", "arousal", "expression"}: float32 [B], 1 for a label the record has
Label masks. A record says which labels it has (`has_va`, `has_expression`, see `records`): an
Aff-Wild2 frame may carry only valence/arousal or only an expression, and with `none_faces=True`
(training only) AffectNet's code-8 "None" faces are streamed for valence and arousal. The weight
of valence and arousal is `has_va`, that of the expression is 1 on a labelled code 0..K-1 and 0
otherwise (no expression annotated, "None"). Where a weight is 0 the label is a 0 placeholder that
the weight keeps out of the losses and of the (weighted) metrics; a missing label is never
trained on. A record is streamed when it has a label the model is scored on: an expression code
0..K-1, or valence/arousal without any expression annotation, or (with `none_faces`)
valence/arousal on a "None" face.

The steps: `_records` (read, parse, keep), then `_training_batches` (shuffle, augment, full
batches) or `_evaluation_batches` (centre crops or flip pairs, in file order), each element built
by `_labels_and_weights`; the length comes from report.json (`_count`).

`prepared_dir` may be one folder or a sequence of folders (a mixture, e.g. AffectNet + Aff-Wild2):
their shards are read together; for training the shard lists are interleaved in proportion to
their lengths, so that every part of an epoch mixes the sources. `data_cfg.frame_step` k > 1 keeps
every k-th frame of each video for training (frames 1, 1 + k, ...; still images are all kept).

`holdout` splits the training split in two by a keyed hash of each face's file path
(`holdout_mask`): "exclude" streams the faces that stay for training, "only" the held-out share
used for model selection and the schedule (`data.selection="holdout"`). The split depends only on
the path, the share and the seed, so it is the same in every run and disjoint by construction.

Training: shuffle, random 48 x 48 crop of the 56 x 56 face, random horizontal flip. Evaluation:
the centre crop, or the crop and its mirror (`va2att.faces.network_input.centre_crop`, `flip_pair`).
The augmentation is the pure function `augment(faces, keys)`: each element's crop offset and
flip are read from its own int64 key, so the same keys give the same crops eagerly and in
tf.data. Keys come from `tf.data.Dataset.random`, seeded in deterministic mode (and then the
whole pipeline is deterministic: same seed, same batches, epoch after epoch) and unseeded
otherwise. Given `epoch`, the shuffle and key seeds are those of that epoch (`epoch_seed`), so a run
resumed at epoch e trains on what the uninterrupted run would have. Faces carry no landmark targets, so a flip permutes nothing (valence, arousal and
expression are mirror-invariant).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

from va2att.config import FACE_SIZE, INPUT_SIZE, DataConfig
from va2att.data.affectnet import NONE_CODE
from va2att.faces.network_input import centre_crop, flip_pair

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
    from va2att.data.preparation import load_report

    return load_report(prepared_dir)


def prepared_dirs(prepared_dir) -> tuple[Path, ...]:
    """One prepared folder, or a sequence of them (a mixture), as a tuple of Paths."""
    if isinstance(prepared_dir, (str, os.PathLike)):
        return (Path(prepared_dir),)
    dirs = tuple(Path(p) for p in prepared_dir)
    if not dirs:
        raise ValueError("no prepared folder given")
    return dirs


def _shards(prepared_dir, split: str, interleave: bool = False) -> list[str]:
    """Shard files of `split` in all folders: one after the other, or interleaved in proportion."""
    lists = [[str(d / n) for n in _report(d)["splits"][split]["shards"]] for d in prepared_dirs(prepared_dir)]
    if not interleave or len(lists) == 1:
        return [f for files in lists for f in files]
    keyed = [((i + 0.5) / len(files), k, f) for k, files in enumerate(lists) for i, f in enumerate(files)]
    return [f for _, _, f in sorted(keyed)]


class DamagedShardError(ValueError):
    """A prepared shard cannot be read; the message names it and says how to prepare it again."""


def damaged_shards(prepared_dir) -> list[tuple[str, str]]:
    """`(shard file, why)` of every shard of the folder(s) that cannot be read to its end (one pass over all)."""
    from va2att.data.records import shard_damage

    found = []
    for d in prepared_dirs(prepared_dir):
        for split in _report(d)["splits"]:
            for name in _shards((d,), split):
                why = shard_damage(name)
                if why is not None:
                    found.append((name, why))
    return found


def reading_error(prepared_dir, error: Exception) -> DamagedShardError:
    """The one-line error for a failure `error` while streaming `prepared_dir`: which shard is damaged, and how
    to prepare it again (the shard and its done marker removed, the same preparation resumes)."""
    found = damaged_shards(prepared_dir)
    if not found:
        return DamagedShardError(f"reading the prepared data in {prepared_dir} failed ({type(error).__name__}), "
                                 "but every shard reads when checked again; run the command again.")
    name, why = found[0]
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    folder = Path(name).parent
    marker = folder / ".progress" / f"{Path(name).name}.json"
    root = _report(folder).get("root", "ROOT")
    return DamagedShardError(f"the prepared shard {name}{more} is damaged ({why}); delete it and {marker}, and "
                             f"`python -m va2att.data.prepare {root} {folder}` prepares it again (so does the same "
                             "command when --data names the data set's root).")


def count_examples(prepared_dir, split: str, num_classes: int = 8, none_faces: bool = False) -> int:
    """Faces in a prepared split (codes < num_classes, and code 8 with `none_faces`), from report.json;
    for a folder with label masks, the records `make_dataset` streams (one pass over its shards)."""
    total = 0
    for d in prepared_dirs(prepared_dir):
        report = _report(d)
        if report.get("label_masks"):
            total += _pass_count((d,), _split(split), num_classes, none_faces, 0.0, 0, 1)[0]
            continue
        per = report["splits"][_split(split)].get("per_expression", {})
        total += sum(n for code, n in per.items()
                     if 0 <= int(code) < num_classes or (none_faces and int(code) == NONE_CODE))
    return total


def holdout_mask(paths, share: float, seed: int = 0):
    """True for the faces of the held-out share: a keyed hash of the path (SipHash, `seed`) below `share`."""
    import tensorflow as tf

    bucket = tf.strings.to_hash_bucket_strong(paths, HOLDOUT_BUCKETS, key=[int(seed), 0x5EED])
    return bucket < round(share * HOLDOUT_BUCKETS)


def _labelled(p, num_classes: int):
    """The records whose expression is a label the model is trained and scored on (codes 0..K-1)."""
    import tensorflow as tf

    code = p["expression"]
    return tf.logical_and(p["has_expression"] > 0, tf.logical_and(code >= 0, code < num_classes))


def _kept(p, num_classes: int, none_faces: bool):
    """Streamed records: a labelled expression, or V/A without an expression annotation, or (with
    `none_faces`) V/A on a "None" face. Without label masks this is `code < K` (or code 8)."""
    import tensorflow as tf

    has_va, has_expr = p["has_va"] > 0, p["has_expression"] > 0
    keep = tf.logical_or(_labelled(p, num_classes), tf.logical_and(has_va, tf.logical_not(has_expr)))
    if none_faces:
        keep = tf.logical_or(keep, tf.logical_and(has_va, tf.logical_and(has_expr, p["expression"] == NONE_CODE)))
    return keep


def _frame_kept(p, frame_step: int):
    """Every `frame_step`-th frame of a video (1, 1 + k, ...); still images (frame -1) are all kept."""
    import tensorflow as tf

    if frame_step <= 1:
        return tf.ones_like(p["frame"], tf.bool)
    return tf.logical_or(p["frame"] < 1, tf.math.floormod(p["frame"] - 1, frame_step) == 0)


@functools.lru_cache(maxsize=32)
def _pass_count(dirs: tuple, split: str, num_classes: int, none_faces: bool, share: float, seed: int,
                frame_step: int) -> tuple[int, int]:
    """(kept for training, held out) records, by one pass over the shards' labels and paths."""
    import tensorflow as tf

    spec = {"path": tf.io.FixedLenFeature([], tf.string, default_value=""),
            "expression": tf.io.FixedLenFeature([], tf.int64),
            "has_va": tf.io.FixedLenFeature([], tf.int64, default_value=1),
            "has_expression": tf.io.FixedLenFeature([], tf.int64, default_value=1),
            "frame": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    held = total = 0
    files = _shards(dirs, split)
    for p in tf.data.TFRecordDataset(files).batch(4096).map(lambda b: tf.io.parse_example(b, spec)):
        keep = tf.logical_and(_kept(p, num_classes, none_faces), _frame_kept(p, frame_step))
        total += int(tf.reduce_sum(tf.cast(keep, tf.int64)))
        if share > 0:
            mask = holdout_mask(p["path"], share, seed)
            held += int(tf.reduce_sum(tf.cast(tf.logical_and(keep, mask), tf.int64)))
    return total - held, held


def count_holdout(prepared_dir, split: str, share: float, seed: int, num_classes: int = 8,
                  none_faces: bool = False) -> tuple[int, int]:
    """(kept for training, held out) faces of a split, by one pass over the shards' paths and codes."""
    return _pass_count(prepared_dirs(prepared_dir), _split(split), num_classes, none_faces, float(share), int(seed), 1)


def _count(prepared_dir, data_cfg: DataConfig, stream: Stream) -> int:
    """Batches' worth of records the stream yields: from report.json, or by one pass over the shards'
    labels when the held-out share or the frame step select records."""
    frame_step = data_cfg.frame_step if stream.training else 1
    if stream.holdout is None and frame_step <= 1:
        return count_examples(prepared_dir, stream.split, stream.num_classes, stream.none_faces)
    share = data_cfg.holdout_share if stream.holdout is not None else 0.0
    kept, held = _pass_count(prepared_dirs(prepared_dir), stream.split, stream.num_classes, stream.none_faces,
                             float(share), int(data_cfg.holdout_seed), frame_step)
    return held if stream.holdout == "only" else kept


def _traced_without_zero_global_seed(build):
    """Run `build` (which traces tf.data functions with a tensor op seed) with TF's global seed lifted if it is 0.

    `tf.random`'s seed resolution compares `(global, op)` with `(0, 0)` in Python; with a global seed of
    0 (`train.seed=0`, the default) that comparison reaches the tensor op seed and fails to trace. The
    global seed is set again afterwards."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    global_seed = context.global_seed() if context.executing_eagerly() else None
    if global_seed is None or global_seed % (2**31 - 1) != 0:
        return build()
    tf.random.set_seed(None)
    try:
        return build()
    finally:
        tf.random.set_seed(global_seed)


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


@dataclasses.dataclass(frozen=True)
class Stream:
    """Which faces of a prepared split to stream, and how.

    Args:
        split: "training" / "validation" (or "train" / "val").
        training: shuffle + random crop/flip, full batches only; else centre crop, in file order.
        num_classes: 8 keeps codes 0-7, 7 drops code 7.
        seed: shuffle and augmentation seed (fully reproducible with data_cfg.deterministic).
        flip_pairs: evaluation only: images [B, 2, 48, 48, 1] for flip averaging.
        none_faces: training only: stream code-8 faces too, for valence and arousal (see above).
        holdout: None (the whole split), "exclude" or "only" (the held-out share of
            `data_cfg.holdout_share`, seed `data_cfg.holdout_seed`; see above).
        epoch: training only: the epoch (0-based) an iteration of the dataset trains, an int or a
            tf.Variable that the trainer sets before each epoch (`va2att.training.callbacks.DataEpoch`), read
            each time an iteration starts. In deterministic mode the shuffle order and the augmentation
            are then seeded by `epoch_seed(seed, epoch)`: epoch e sees the same batches in a run resumed
            at e as in an uninterrupted one. None (or not deterministic): seeded once by `seed`.
        with_video: evaluation only: add each face's `video` name (bytes, "" for still images) and `frame`
            number (int64, -1 for still images) to the labels, for per-video scores and smoothing over time.
    """

    split: str
    training: bool
    num_classes: int = 8
    seed: int = 0
    flip_pairs: bool = False
    none_faces: bool = False
    holdout: str | None = None
    epoch: object = None
    with_video: bool = False

    def __post_init__(self):
        object.__setattr__(self, "split", _split(self.split))
        if self.num_classes not in (7, 8):
            raise ValueError(f"num_classes must be 7 or 8. Received: num_classes={self.num_classes}")
        if self.flip_pairs and self.training:
            raise ValueError("flip_pairs is for evaluation; use training=False.")
        if self.none_faces and not self.training:
            raise ValueError("none_faces is for training; evaluation scores codes 0..K-1 only.")
        if self.holdout not in HOLDOUT_MODES:
            raise ValueError(f"holdout must be one of {HOLDOUT_MODES}. Received: holdout={self.holdout!r}")
        if self.with_video and self.training:
            raise ValueError("with_video is for evaluation; use training=False.")


def make_dataset(prepared_dir, split: str, data_cfg: DataConfig, *, training: bool, **stream):
    """A batched, prefetched tf.data.Dataset of `(image, labels, sample_weights)` over one prepared split.

    Args:
        prepared_dir: folder written by `prepare` (report.json must be present), or several (a mixture).
        split, training, **stream: the fields of `Stream` (which faces, augmented or not, flip pairs, ...).
        data_cfg: DataConfig: batch_size, shuffle_buffer, cache, parallel_calls, deterministic, frame_step,
            holdout_share, holdout_seed.
    """
    return stream_dataset(prepared_dir, data_cfg, Stream(split, training, **stream))


def stream_dataset(prepared_dir, data_cfg: DataConfig, stream: Stream):
    """`make_dataset` with the stream as one `Stream` record: records, then batches, then their length."""
    import tensorflow as tf

    files = _shards(prepared_dir, stream.split, interleave=stream.training)
    if not files:
        raise FileNotFoundError(f"no shards for split {stream.split!r} in {prepared_dir}")
    faces = _records(files, data_cfg, stream)
    if stream.training:
        ds = _training_batches(faces, data_cfg, stream)
        batches = _count(prepared_dir, data_cfg, stream) // data_cfg.batch_size
    else:
        ds = _evaluation_batches(faces, data_cfg, stream)
        batches = -(-_count(prepared_dir, data_cfg, stream) // data_cfg.batch_size)
    # Known length (from report.json): Keras shows progress and knows the steps per epoch.
    ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
    options = tf.data.Options()
    options.deterministic = _deterministic(data_cfg, stream)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _parallel_calls(data_cfg: DataConfig):
    import tensorflow as tf

    return tf.data.AUTOTUNE if data_cfg.parallel_calls == -1 else data_cfg.parallel_calls


def _deterministic(data_cfg: DataConfig, stream: Stream) -> bool:
    return bool(data_cfg.deterministic) or not stream.training


def _records(files, data_cfg: DataConfig, stream: Stream):
    """The streamed records, one by one: read, parsed in batches, and kept by `_kept`, the frame step and the
    held-out share; cached in memory with `data_cfg.cache`."""
    import tensorflow as tf

    from va2att.data.records import parse_batch

    calls = _parallel_calls(data_cfg)
    frame_step = data_cfg.frame_step if stream.training else 1
    share, hseed = data_cfg.holdout_share, data_cfg.holdout_seed
    names = ("image", "valence", "arousal", "expression", "has_va", "has_expression") + (
        ("video", "frame") if stream.with_video else ())

    def select(p):
        out = {k: p[k] for k in names}
        keep = tf.logical_and(_kept(p, stream.num_classes, stream.none_faces), _frame_kept(p, frame_step))
        if stream.holdout is not None:
            held = holdout_mask(p["path"], share, hseed)
            keep = tf.logical_and(keep, held if stream.holdout == "only" else tf.logical_not(held))
        out["keep"] = keep
        return out

    ds = tf.data.TFRecordDataset(files, num_parallel_reads=None if _deterministic(data_cfg, stream) else calls)
    ds = ds.batch(PARSE_BATCH).map(parse_batch, num_parallel_calls=calls, deterministic=True)
    ds = ds.map(select, num_parallel_calls=calls, deterministic=True)
    ds = ds.unbatch().filter(lambda p: p["keep"])
    return ds.cache() if data_cfg.cache else ds


def _training_batches(faces, data_cfg: DataConfig, stream: Stream):
    """Shuffled full batches of randomly cropped and flipped faces; order and augmentation seeded per epoch
    in deterministic mode (see `Stream.epoch`)."""
    import tensorflow as tf

    deterministic = data_cfg.deterministic

    def one_epoch(epoch_seed_value):
        shuffled = faces.shuffle(data_cfg.shuffle_buffer, seed=epoch_seed_value, reshuffle_each_iteration=True)
        keys = tf.data.Dataset.random(seed=epoch_seed_value if deterministic else None, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((shuffled, keys)).batch(data_cfg.batch_size, drop_remainder=True)

    if stream.epoch is None or not deterministic:  # unseeded augmentation: no order to reproduce
        ds = one_epoch(stream.seed)
    else:  # read the epoch when an iteration starts: one flat_map element builds that epoch's stream
        ds = _traced_without_zero_global_seed(
            lambda: tf.data.Dataset.range(1).flat_map(lambda _: one_epoch(epoch_seed(stream.seed, stream.epoch))))

    def element(p, keys):
        return (tf.cast(augment(p["image"], keys), tf.float32), *_labels_and_weights(p, stream))

    return ds.map(element, num_parallel_calls=_parallel_calls(data_cfg), deterministic=_deterministic(data_cfg, stream))


def _evaluation_batches(faces, data_cfg: DataConfig, stream: Stream):
    """Batches in file order of centre crops (or crop and mirror pairs), the last one possibly short."""
    import tensorflow as tf

    def element(p):
        image = tf.cast(flip_pair(p["image"]) if stream.flip_pairs else centre_crop(p["image"]), tf.float32)
        labels, weights = _labels_and_weights(p, stream)
        if stream.with_video:
            labels["video"], labels["frame"] = p["video"], p["frame"]
        return image, labels, weights

    ds = faces.batch(data_cfg.batch_size)
    return ds.map(element, num_parallel_calls=_parallel_calls(data_cfg), deterministic=True)


def _labels_and_weights(p, stream: Stream):
    """Labels and sample weights from the label masks: weight 0 (and a 0 placeholder label) for a missing
    valence/arousal, and for an expression that is not a code 0..K-1 (none annotated, "None"); weight 1
    for every label a record has."""
    import tensorflow as tf

    has_va = p["has_va"] > 0
    labelled = _labelled(p, stream.num_classes)
    labels = {
        "valence": tf.reshape(p["valence"], [-1, 1]),
        "arousal": tf.reshape(p["arousal"], [-1, 1]),
        "expression": tf.cast(p["expression"], tf.int32),
    }
    for name in ("valence", "arousal"):
        labels[name] = tf.where(has_va[:, None], labels[name], tf.zeros_like(labels[name]))
    labels["expression"] = tf.where(labelled, labels["expression"], tf.zeros_like(labels["expression"]))
    va = tf.cast(has_va, tf.float32)
    return labels, {"valence": va, "arousal": va, "expression": tf.cast(labelled, tf.float32)}
