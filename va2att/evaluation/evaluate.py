"""Score a model on a whole split, with flip averaging, as the paper evaluates.

Each face is predicted from its centre 48x48 crop and from the mirrored crop, and
the two predictions are averaged (probabilities too). Metrics are computed once on
the concatenated split, never averaged over batches.

`evaluate(model, data, split, classes)` is the one evaluation: `evaluate.py` and the
experiments runner both call it.

Label masks (Aff-Wild2): a frame without valence/arousal has NaN there in `labels`, a frame without
an expression label has -1; the regression metrics are computed over the frames with V/A, the
expression metrics over the frames with a label. On a video data set the report adds per-video CCC
and the worst videos (`per_video`); macro-F1 is averaged over the classes the data set annotates
(report.json's `expression_classes`: Aff-Wild2 has no Contempt).

Smoothing (`smooth`, video data sets): the predictions of each video, in frame order, are also
smoothed with the causal filter predict's `--smooth` uses (`va2att.evaluation.smoothing`: the mean
over the last S seconds, time = frame number / fps) for each window S, and the report's `smoothing`
table gives the CCC over all frames and the mean per-video CCC with each window beside the raw
figures (S = 0). The evaluated frames are those with a label; frames without a label or an image are
gaps in time, as frames without a face are in predict.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from va2att.config import EXPRESSION_NAMES, DataConfig
from va2att.faces.network_input import flip_average


def predict_split(model, dataset) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Run `model` (an InferenceModel) over a flip-pair dataset; return (predictions, labels)."""
    preds: dict[str, list] = {}
    labels: dict[str, list] = {"valence": [], "arousal": [], "expression": []}
    for images, target, weights in dataset:
        images = images.numpy()  # [B, 2, 48, 48, 1]: centre crops and their mirrors
        for name, value in flip_average(model, images[:, 0], images[:, 1]).items():
            preds.setdefault(name, []).append(value)
        for name in ("valence", "arousal", "expression"):
            value = np.asarray(target[name]).reshape(-1)
            present = np.asarray(weights[name]).reshape(-1) > 0  # a label with weight 0 is missing:
            value = np.where(present, value, -1 if name == "expression" else np.nan)  # NaN (V/A) or -1
            labels[name].append(value)
        if "video" in target:
            labels.setdefault("video", []).append(np.char.decode(np.asarray(target["video"]).astype(bytes), "utf-8"))
            labels.setdefault("frame", []).append(np.asarray(target["frame"]).reshape(-1))
    if not labels["valence"]:
        raise ValueError("the evaluation split is empty")
    predictions = {k: np.concatenate(v) for k, v in preds.items()}
    for k in ("valence", "arousal"):
        if k in predictions:
            predictions[k] = predictions[k].reshape(-1)
    return predictions, {k: np.concatenate(v) for k, v in labels.items()}


def score(predictions: dict[str, np.ndarray], labels: dict[str, np.ndarray], num_classes: int,
          f1_classes=None) -> dict:
    """All metrics of the report, as a JSON-ready dict. Frames without V/A (NaN) or without an
    expression label (-1) are left out of those metrics; `f1_classes`: the classes macro-F1 averages
    (default: those present)."""
    from va2att.model import metrics

    result: dict = {"n": int(labels["valence"].shape[0])}
    has_va = np.isfinite(labels["valence"]) & np.isfinite(labels["arousal"])
    for name in ("valence", "arousal"):
        if name in predictions and has_va.any():
            result[name] = metrics.regression_report(labels[name][has_va], predictions[name][has_va])
    dims = [result[n] for n in ("valence", "arousal") if n in result]
    if len(dims) == 2:
        result["mean"] = {k: (dims[0][k] + dims[1][k]) / 2 for k in ("ccc", "rmse", "pcc", "sagr")}
    names = list(EXPRESSION_NAMES[:num_classes])
    true_cls = labels["expression"].astype(np.int64)
    has_expr = true_cls >= 0
    if has_va.sum() < len(has_va) or has_expr.sum() < len(has_expr):
        result["n_va"], result["n_expression"] = int(has_va.sum()), int(has_expr.sum())
    if "expression" in predictions and has_expr.any():
        pred_cls = predictions["expression"].argmax(axis=-1).astype(np.int64)
        t, p = true_cls[has_expr], pred_cls[has_expr]
        cm = metrics.confusion_matrix(t, p, num_classes)
        result["expression"] = {
            "accuracy": float(metrics.accuracy(t, p)),
            "macro_f1": float(metrics.macro_f1(t, p, num_classes, f1_classes)),
            "confusion": cm.tolist(),
            "class_names": names,
        }
        if f1_classes is not None:
            result["expression"]["f1_classes"] = [names[k] for k in f1_classes]
    else:
        cm = None
    per_class = []
    for k, name in enumerate(names):
        sel = true_cls == k
        row: dict = {"class": name, "n": int(sel.sum())}
        if cm is not None:
            tp = int(cm[k, k])
            predicted = int(cm[:, k].sum())
            precision = tp / predicted if predicted else 0.0
            recall = tp / row["n"] if row["n"] else 0.0
            row.update(precision=precision, recall=recall,
                       f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0)
        sel = sel & has_va
        for dim in ("valence", "arousal"):
            if dim in predictions and sel.any():
                row[f"{dim}_true_mean"] = float(labels[dim][sel].mean())
                row[f"{dim}_pred_mean"] = float(np.clip(predictions[dim][sel], -1, 1).mean())
                row[f"{dim}_rmse"] = float(metrics.rmse(labels[dim][sel], predictions[dim][sel]))
        per_class.append(row)
    result["per_class"] = per_class
    return result


def smoothing_table(labels: dict, predictions: dict, frames, windows, fps: float, num_classes: int,
                    f1_classes=None) -> list[dict]:
    """One row per window (seconds; 0 first: the raw predictions): CCC over all frames, mean per-video CCC and the
    expression scores of the predictions smoothed within each video (`smoothing.smooth_videos`)."""
    from va2att.evaluation import per_video
    from va2att.evaluation.smoothing import smooth_videos

    names = [k for k in ("valence", "arousal") if k in predictions]
    stacked = np.column_stack([predictions[k] for k in names] + ([predictions["expression"]]
                                                                   if "expression" in predictions else []))
    rows = []
    for seconds in [0.0, *sorted(set(windows) - {0.0})]:
        smoothed = smooth_videos(labels["video"], frames, stacked, seconds, fps)
        values = {k: smoothed[:, i] for i, k in enumerate(names)}
        if "expression" in predictions:
            values["expression"] = smoothed[:, len(names):]
        result = score(values, labels, num_classes, f1_classes)
        videos = per_video.video_report(labels["video"], labels, values)
        row = {"seconds": seconds, **{f"{k}_ccc": result[k]["ccc"] for k in names if k in result}}
        row.update({f"video_{k}_ccc": v for k, v in videos.get("mean_video_ccc", {}).items()})
        if "expression" in result:
            row.update(expression_accuracy=result["expression"]["accuracy"], macro_f1=result["expression"]["macro_f1"])
        rows.append(row)
    return rows


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` found: `metrics` (the JSON-ready `score`), and the flip-averaged `predictions`
    and the `labels` of the split, as NumPy arrays keyed by output name."""

    metrics: dict
    predictions: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]


def evaluate(model, data: DataConfig, split: str, classes: int, *, seed: int = 0, cache_dir=None,
             log=print, prepared=None, smooth=(), fps: float = 30.0) -> Evaluation:
    """Flip-averaged scores of `model` (an `InferenceModel`) on `split` of the data `data` names.

    Resolves the data (generating or preparing it when needed; `prepared`: the prepared folder(s) to read
    instead, e.g. where the model's training run prepared them), streams the split's centre crops and
    their mirrors in file order, averages the two predictions, keeps the first `classes` expression
    probabilities (7: AffectNet-7 scored with an 8-class model) and scores the whole split at once.
    `smooth`: windows in seconds; on a video data set the metrics get a `smoothing` table
    (`smoothing_table`, frames at `fps` per second). Raises ValueError when `smooth` is given for data
    without videos.
    """
    from va2att.data.pipeline import make_dataset, prepared_dirs
    from va2att.data.preparation import layout_of, load_report
    from va2att.data.source import resolve_data
    from va2att.evaluation import per_video

    data = dataclasses.replace(data, cache=False)  # one pass: nothing to cache
    prepared = prepared or resolve_data(data, cache_dir=cache_dir, log=log)
    reports = [load_report(d) for d in prepared_dirs(prepared)]
    videos = any(getattr(layout_of(r), "videos", False) for r in reports)
    if smooth and not videos:
        raise ValueError("smoothing over time needs a video data set (a layout with videos, e.g. Aff-Wild2)")
    dataset = make_dataset(prepared, split, data, training=False, num_classes=classes, seed=seed, flip_pairs=True,
                           with_video=videos)
    import tensorflow as tf

    try:
        predictions, labels = predict_split(model, dataset)
    except tf.errors.DataLossError as error:  # a truncated or corrupted shard: name it
        from va2att.data.pipeline import reading_error

        raise reading_error(prepared, error) from None
    if "expression" in predictions:
        predictions["expression"] = predictions["expression"][:, :classes]
    annotated = sorted({k for r in reports for k in r.get("expression_classes", range(classes)) if k < classes})
    f1 = None if annotated == list(range(classes)) else annotated
    result = score(predictions, labels, classes, f1)
    if "video" in labels:
        result.update(per_video.video_report(labels["video"], labels, predictions))
    if smooth:
        result["smoothing"] = {"fps": fps, "rows": smoothing_table(labels, predictions, labels["frame"], smooth, fps,
                                                                   classes, f1)}
    return Evaluation(result, predictions, labels)


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown_report(result: dict, title: str, meta: dict) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {k}: `{v}`" for k, v in meta.items()] + [f"- faces: {result['n']}", "",
                                                             "Flip-averaged predictions (centre crop and its mirror).",
                                                             ""]
    dims = [d for d in ("valence", "arousal", "mean") if d in result]
    if dims:
        lines += ["| | CCC | RMSE | PCC | SAGR |", "|---|---|---|---|---|"]
        lines += [f"| {d} | " + " | ".join(_fmt(result[d][m]) for m in ("ccc", "rmse", "pcc", "sagr")) + " |"
                  for d in dims]
        lines.append("")
    if "n_va" in result:
        lines += [f"Faces with valence/arousal: {result['n_va']}; with an expression label: {result['n_expression']}.",
                  ""]
    if "expression" in result:
        e = result["expression"]
        over = f" (over {', '.join(e['f1_classes'])})" if "f1_classes" in e else ""
        lines += [f"Expression accuracy **{e['accuracy']:.3f}**, macro-F1 **{e['macro_f1']:.3f}**{over}.", ""]
    if result.get("worst_videos"):
        mean = result["mean_video_ccc"]
        lines += [f"## Videos ({result['videos']})", "",
                  f"Mean per-video CCC: valence {mean['valence']:.3f}, arousal {mean['arousal']:.3f}. Worst videos:", "",
                  "| video | frames | CCC V | CCC A | mean |", "|---|---|---|---|---|"]
        lines += [f"| {r['video']} | {r['frames']} | {r['valence_ccc']:.3f} | {r['arousal_ccc']:.3f} | "
                  f"{r['mean_ccc']:.3f} |" for r in result["worst_videos"]]
        lines.append("")
    if result.get("smoothing"):
        lines += _smoothing_lines(result["smoothing"])
    cols = [c for c in ("n", "precision", "recall", "f1", "valence_true_mean", "valence_pred_mean", "valence_rmse",
                        "arousal_true_mean", "arousal_pred_mean", "arousal_rmse")
            if any(c in row for row in result["per_class"])]
    lines += ["## Per class", "", "| class | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += ["| " + row["class"] + " | " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |"
              for row in result["per_class"]]
    return "\n".join(lines) + "\n"


def _smoothing_lines(smoothing: dict) -> list[str]:
    """The report's table of `smoothing_table` rows."""
    columns = [("valence_ccc", "CCC V"), ("arousal_ccc", "CCC A"), ("video_valence_ccc", "per-video CCC V"),
               ("video_arousal_ccc", "per-video CCC A"), ("expression_accuracy", "accuracy"), ("macro_f1", "macro-F1")]
    columns = [(key, title) for key, title in columns if any(key in row for row in smoothing["rows"])]
    lines = ["## Smoothing over time", "",
             (f"Causal mean of each video's predictions over the last S seconds (frames at {smoothing['fps']:g} per "
              "second); S = 0 is the raw predictions."), "",
             "| S (s) | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {row['seconds']:g} | " + " | ".join(_fmt(row.get(key, "")) for key, _ in columns) + " |"
              for row in smoothing["rows"]]
    return lines + [""]
