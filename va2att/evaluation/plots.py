"""Figures written as PNG files: the valence-arousal circumplex, a confusion matrix, training curves.

Matplotlib runs on its Agg backend through an explicit `Figure` (no pyplot state, no display
needed), and every PNG is written under a temporary name in the target folder and then renamed,
so a reader never sees a half-written file.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from va2att.util.fileio import atomic_path

# Affect words at their angles (degrees, counter-clockwise from "pleasant") on Russell's circumplex
# (Russell 1980, "A circumplex model of affect", Table/Fig. 2; angles rounded). Valence is the
# horizontal axis, arousal the vertical one. Near-synonyms at almost the same angle are left out.
CIRCUMPLEX_WORDS: tuple[tuple[str, float], ...] = (
    ("happy", 8.0),
    ("delighted", 25.0),
    ("excited", 49.0),
    ("astonished", 70.0),
    ("angry", 100.0),
    ("afraid", 117.0),
    ("annoyed", 123.0),
    ("distressed", 138.0),
    ("miserable", 189.0),
    ("sad", 208.0),
    ("bored", 241.0),
    ("tired", 268.0),
    ("calm", 316.0),
    ("content", 324.0),
    ("pleased", 352.0),
)

_WORD_RADIUS = 0.92  # where the words sit, inside the unit circle
_MAX_POINT_LABELS = 60  # beyond this many points, per-point labels are not drawn
_MAX_TRUTH_LINES = 200  # beyond this many faces with truth: densities of truth and predictions, no lines
_MAX_SCATTER = 2000  # beyond this many faces without truth: a density instead of dots


def save_figure(fig: Figure, path) -> Path:
    """Render `fig` to `path` as PNG under a temporary name in the same folder, then rename it."""
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi, bbox_inches="tight")
    return Path(path)


def _flat(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers. Received: {name} with {np.sum(~np.isfinite(array))} non-finite value(s).")
    return array


def circumplex(
    path,
    valence,
    arousal,
    true_valence=None,
    true_arousal=None,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> Path:
    """Plot faces on the valence-arousal plane with the unit circle, the quadrant axes and affect words.

    Args:
        path: str or Path, the PNG to write.
        valence, arousal: array-like of N predicted values in [-1, 1] (values outside are drawn
            where they fall; the axes extend a little beyond the circle).
        true_valence, true_arousal: optional array-like of N ground-truth values. Up to 200 faces,
            each truth is a hollow marker joined to its prediction by a thin line; beyond that, a
            density (hexbin) of the truth beside a density of the predictions.
        labels: optional N strings written next to the predicted points (skipped above 60 points).
        title: str, the figure title.

    Returns:
        The Path written.
    """
    return save_figure(circumplex_figure(valence, arousal, true_valence, true_arousal, labels, title), path)


def _circumplex_frame(ax, limit: float) -> None:
    """Unit circle, quadrant axes and Russell's affect words (on a light box, readable over data)."""
    theta = np.linspace(0.0, 2.0 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), color="0.6", lw=1.0, zorder=1)
    ax.axhline(0.0, color="0.6", lw=0.8, zorder=1)
    ax.axvline(0.0, color="0.6", lw=0.8, zorder=1)
    for word, degrees in CIRCUMPLEX_WORDS:
        rad = math.radians(degrees)
        x, y = _WORD_RADIUS * math.cos(rad), _WORD_RADIUS * math.sin(rad)
        ax.text(x, y, word, fontsize=8, color="0.3", ha="center", va="center", zorder=7,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.7})
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel("valence")
    ax.set_ylabel("arousal")


def circumplex_figure(valence, arousal, true_valence=None, true_arousal=None, labels=None, title: str = "") -> Figure:
    """The figure `circumplex` writes (see there), e.g. for TensorBoard."""
    v = _flat(valence, "valence")
    a = _flat(arousal, "arousal")
    if v.shape != a.shape:
        raise ValueError(f"valence and arousal must have the same length. Received: {v.size} and {a.size}.")
    has_truth = true_valence is not None and true_arousal is not None
    tv = ta = np.zeros(0)
    if has_truth:
        tv = _flat(true_valence, "true_valence")
        ta = _flat(true_arousal, "true_arousal")
        if tv.shape != v.shape or ta.shape != v.shape:
            raise ValueError(
                f"true values must match the predictions in length. Received: {tv.size}, {ta.size} for {v.size} predictions."
            )
    if labels is not None and len(labels) != v.size:
        raise ValueError(f"labels must have one entry per point. Received: {len(labels)} labels for {v.size} points.")
    values = np.concatenate([v, a, tv, ta])
    limit = max(1.1, float(np.max(np.abs(values))) + 0.05) if values.size else 1.1

    if v.size > (_MAX_TRUTH_LINES if has_truth else _MAX_SCATTER):
        panels = [("true", tv, ta, "Greens"), ("predicted", v, a, "Blues")] if has_truth else [
            ("predicted", v, a, "Blues")]
        fig = Figure(figsize=(6.5 * len(panels), 6.8), dpi=100)
        for index, (name, x, y, cmap) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), index + 1)
            ax.hexbin(x, y, gridsize=36, extent=(-limit, limit, -limit, limit), cmap=cmap, mincnt=1, bins="log",
                      zorder=2)
            _circumplex_frame(ax, limit)
            ax.set_title(f"{name}: density of {v.size} faces (log scale)", fontsize=10)
        fig.suptitle(title or f"{v.size} faces on the valence-arousal circumplex")
        return fig

    fig = Figure(figsize=(7, 7), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    if has_truth:
        segments = np.stack([np.stack([tv, ta], axis=1), np.stack([v, a], axis=1)], axis=1)
        ax.add_collection(LineCollection(segments, colors="0.7", linewidths=0.6, zorder=3))
        ax.scatter(tv, ta, s=30, facecolors="none", edgecolors="tab:green", alpha=0.85, label="true", zorder=4)
    ax.scatter(v, a, s=30, color="tab:blue", alpha=0.85, label="predicted", zorder=5)
    if labels is not None and v.size <= _MAX_POINT_LABELS:
        for x, y, text in zip(v, a, labels):
            ax.annotate(str(text), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7, zorder=6)
    _circumplex_frame(ax, limit)
    ax.set_title(title or f"{v.size} face(s) on the valence-arousal circumplex")
    if has_truth or v.size:
        ax.legend(loc="lower right", fontsize=8)
    return fig


def confusion_matrix(path, matrix, class_names: Sequence[str], title: str = "") -> Path:
    """Draw a confusion matrix: colours are row-normalised (recall per true class), cells show counts.

    Args:
        path: str or Path, the PNG to write.
        matrix: array-like K×K of counts, rows = true class, columns = predicted class.
        class_names: K strings.
        title: str, the figure title.

    Returns:
        The Path written.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"matrix must be {k}x{k} to match class_names. Received: shape {counts.shape}.")
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)

    side = max(5.0, 0.7 * k + 2.5)
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    integer_counts = np.all(counts == np.round(counts))
    for i in range(k):
        for j in range(k):
            text = f"{int(counts[i, j])}" if integer_counts else f"{counts[i, j]:.3g}"
            colour = "white" if normalised[i, j] > 0.5 else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    total = counts.sum()
    accuracy = np.trace(counts) / total if total > 0 else float("nan")
    ax.set_title(title or f"Confusion matrix (accuracy {accuracy:.3f}, n={int(total)})")
    return save_figure(fig, path)


# Panels of `training_curves`: (title, {metric column without the "val_" prefix, in plotting order}).
_CURVE_PANELS = (
    ("loss", ("loss",)),
    ("valence CCC", ("valence_ccc", "ccc_valence", "valence_CCC")),
    ("arousal CCC", ("arousal_ccc", "ccc_arousal", "arousal_CCC")),
)


def _read_history(history_csv) -> dict[str, list[float]]:
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key is None:
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = float("nan")
            columns.setdefault(key.strip(), []).append(number)
    return columns


def _panel_columns(columns: dict[str, list[float]]):
    """Group columns into panels: loss, valence CCC, arousal CCC, then other per-output losses."""
    panels = []
    used: set[str] = set()
    for title, names in _CURVE_PANELS:
        found = [n for n in names if n in columns or f"val_{n}" in columns]
        if not found:
            # any column mentioning both the output and "ccc", e.g. "valence_concordance_ccc"
            word = title.split()[0]
            found = sorted({c.removeprefix("val_") for c in columns if word in c.lower() and "ccc" in c.lower()})
        series = []
        for name in found[:1] if title == "loss" else found:
            for col in (name, f"val_{name}"):
                if col in columns and col not in used:
                    series.append(col)
                    used.add(col)
        if series:
            panels.append((title, series))
    extra_losses = sorted(
        c for c in columns if c not in used and c.removeprefix("val_").endswith("_loss")
    )
    if extra_losses:
        panels.append(("per-output loss", extra_losses))
        used.update(extra_losses)
    return panels


def epoch_axis(columns: dict[str, list[float]]) -> np.ndarray:
    """The epochs of a history (its `epoch` column, removed from `columns`): history.csv numbers them
    from 1 already; without the column, rows are numbered 1, 2, ..."""
    epochs = columns.pop("epoch", None)
    n = max((len(v) for v in columns.values()), default=0)
    return np.asarray(epochs, dtype=np.float64) if epochs is not None else np.arange(1, n + 1, dtype=np.float64)


def training_curves(path, history_csv) -> Path:
    """Plot loss and valence/arousal CCC per epoch from a Keras `CSVLogger` file.

    Train and validation columns (`x` and `val_x`) share a panel. Only columns that exist are
    drawn: a history without CCC columns gives just the loss panel (plus per-output losses if
    logged). The epoch axis is the `epoch` column as written (history.csv counts from 1) or the row number.

    Args:
        path: str or Path, the PNG to write.
        history_csv: str or Path of the CSV file.

    Returns:
        The Path written.
    """
    columns = _read_history(history_csv)
    x = epoch_axis(columns)
    n = x.size
    panels = _panel_columns(columns)
    if not panels:
        raise ValueError(f"{history_csv} has no loss or CCC columns. Received columns: {sorted(columns)}.")

    fig = Figure(figsize=(5.0 * len(panels), 4.0), dpi=100)
    for index, (title, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), index + 1)
        bases = list(dict.fromkeys(col.removeprefix("val_") for col in series))
        for col in series:
            values = np.asarray(columns[col], dtype=np.float64)
            base = col.removeprefix("val_")
            style = "--" if col.startswith("val_") else "-"
            label = ("val " if col.startswith("val_") else "train ") + base
            colour = f"C{bases.index(base) % 10}"
            ax.plot(x[: values.size], values, style, color=colour, marker="o", markersize=3, label=label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Training history ({Path(history_csv).name}, {n} epoch(s))")
    return save_figure(fig, path)
