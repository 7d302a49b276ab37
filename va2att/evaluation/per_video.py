"""Per-video scores of a video data set (Aff-Wild2): CCC of valence and arousal within each video.

The challenge's own metric is the CCC over all frames of the split (`evaluation.score`); the
per-video CCC shows where a model fails: a video whose labels barely move has a CCC near 0
even for small errors, and a video scored below 0 is one whose trajectory the model inverts.
`frame_numbers` gives each evaluated frame's number in its video, which smoothing over time needs
(`va2att.evaluation.smoothing.smooth_videos`).
"""

from __future__ import annotations

import numpy as np

from va2att.model import metrics

WORST = 5  # videos listed in the report


def per_video_ccc(videos, labels: dict, predictions: dict) -> list[dict]:
    """One row per video with at least two frames with valence/arousal, worst (lowest mean CCC) first.

    Args:
        videos: (N,) video names ("" for still images, which are left out).
        labels: {"valence", "arousal"}: (N,) true values, NaN where a frame has none.
        predictions: {"valence", "arousal"}: (N,) predictions.
    Returns:
        [{"video", "frames", "valence_ccc", "arousal_ccc", "mean_ccc"}], sorted by mean_ccc, then name.
    """
    videos = np.asarray(videos).astype(str)
    rows = []
    for video in sorted(set(videos.tolist()) - {""}):
        sel = (videos == video) & np.isfinite(labels["valence"]) & np.isfinite(labels["arousal"])
        if sel.sum() < 2:
            continue
        row = {"video": video, "frames": int(sel.sum())}
        for dim in ("valence", "arousal"):
            row[f"{dim}_ccc"] = metrics.ccc(labels[dim][sel], predictions[dim][sel])
        row["mean_ccc"] = (row["valence_ccc"] + row["arousal_ccc"]) / 2
        rows.append(row)
    return sorted(rows, key=lambda r: (r["mean_ccc"], r["video"]))


def video_report(videos, labels: dict, predictions: dict, worst: int = WORST) -> dict:
    """{"videos": n, "per_video": rows, "worst_videos": the `worst` lowest rows, "mean_video_ccc": {dim: mean}}."""
    if not all(k in predictions for k in ("valence", "arousal")):
        return {}
    rows = per_video_ccc(videos, labels, predictions)
    if not rows:
        return {}
    return {
        "videos": len(rows),
        "per_video": rows,
        "worst_videos": rows[:worst],
        "mean_video_ccc": {d: float(np.mean([r[f"{d}_ccc"] for r in rows])) for d in ("valence", "arousal")},
    }


def frame_numbers(prepared, split: str, num_classes: int) -> np.ndarray:
    """The frame number (`records.frame`, -1 for a still image) of every record that the evaluation stream
    (`make_dataset(..., training=False, num_classes=num_classes)`) yields from `split`, in its order.

    The stream carries each record's video name but not its frame number, so the numbers are read by one
    pass over the same shards, in the same order, with the stream's own selection of records
    (`pipeline._shards`, `pipeline._kept`).
    """
    import tensorflow as tf

    from va2att.data import pipeline

    spec = {"expression": tf.io.FixedLenFeature([], tf.int64),
            "has_va": tf.io.FixedLenFeature([], tf.int64, default_value=1),
            "has_expression": tf.io.FixedLenFeature([], tf.int64, default_value=1),
            "frame": tf.io.FixedLenFeature([], tf.int64, default_value=-1)}
    files = pipeline._shards(prepared, pipeline._split(split))
    found = [p["frame"][pipeline._kept(p, num_classes, False)].numpy()
             for p in tf.data.TFRecordDataset(files).batch(4096).map(lambda b: tf.io.parse_example(b, spec))]
    return np.concatenate(found) if found else np.zeros(0, np.int64)
