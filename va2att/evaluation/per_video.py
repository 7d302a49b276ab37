"""Per-video scores of a video data set (Aff-Wild2): CCC of valence and arousal within each video.

The challenge's own metric is the CCC over all frames of the split (`evaluation.score`); the
per-video CCC shows where a model fails: a video whose labels barely move has a CCC near 0
even for small errors, and a video scored below 0 is one whose trajectory the model inverts.
The evaluation stream carries each frame's video and number (`make_dataset(..., with_video=True)`),
which smoothing over time reads too (`va2att.evaluation.smoothing.smooth_videos`).
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
