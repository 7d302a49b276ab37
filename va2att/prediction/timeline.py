"""Valence and arousal over time, one line per track: predict's `--timeline FILE.png`.

`Timeline.add(result)` takes a video's results one by one; `draw(path)` writes one block of three
panels per video: valence over time, arousal over time (one colour per track; with smoothing the
smoothed line is drawn bold over the raw values), and a strip per track coloured by its most probable
expression. A frame in which a followed face was not found breaks the track's line. The axes read
in words as well as numbers (pleasant / unpleasant, excited / calm), and time is in seconds, or in
minutes:seconds past 90 seconds.

Memory: each track keeps at most `MAX_POINTS` points; when a track has more (a long video), pairs of
neighbouring points are merged into their mean, halving its resolution, so a track of any length
costs the same and the picture still shows the whole video.
"""

from __future__ import annotations

import numpy as np

from va2att.prediction.results import ImageResult

MAX_POINTS = 4096  # points kept per track; beyond, neighbours are merged
MAX_VIDEOS = 8  # videos drawn in one picture (the first ones; a note names how many more there were)
_COLUMNS = ("time", "valence", "arousal", "valence_smoothed", "arousal_smoothed", "expression")
_WORDS = {"valence": ("pleasant", "unpleasant"), "arousal": ("excited", "calm")}


class _Series:
    """A track's points (time, V, A, smoothed V, smoothed A, expression index), NaN where not found."""

    def __init__(self):
        self.points = np.full((MAX_POINTS, len(_COLUMNS)), np.nan)
        self.size = 0

    def append(self, row) -> None:
        if self.size == MAX_POINTS:
            self._halve()
        self.points[self.size] = row
        self.size += 1

    def _halve(self) -> None:
        pairs = self.points[: self.size - self.size % 2].reshape(-1, 2, len(_COLUMNS))
        seen = np.isfinite(pairs)
        merged = np.where(seen.any(axis=1), np.nansum(pairs, axis=1) / np.maximum(seen.sum(axis=1), 1), np.nan)
        merged[:, 0] = pairs[:, 0, 0]  # a merged point is at the first point's time
        merged[:, -1] = np.where(np.isfinite(pairs[:, 0, -1]), pairs[:, 0, -1], pairs[:, 1, -1])  # an index, not a mean
        tail = self.points[self.size - 1] if self.size % 2 else None
        self.size = len(merged)
        self.points[: self.size] = merged
        if tail is not None:
            self.points[self.size] = tail
            self.size += 1
        self.points[self.size:] = np.nan

    def view(self) -> np.ndarray:
        return self.points[: self.size]


class Timeline:
    """Valence and arousal of every track of every video, kept for `draw` (see the module's docstring).

    Args:
        class_names: the model's expression class names (`Predictor.class_names`).
    """

    def __init__(self, class_names=()):
        self.class_names = tuple(class_names)
        self._videos: dict[str, dict[int, _Series]] = {}
        self.smoothed = False

    def add(self, result: ImageResult) -> None:
        """Keep one result's faces (photos, unreadable frames and frames without a time are left out)."""
        if result.frame is None or result.time is None or result.error is not None:
            return
        tracks = self._videos.setdefault(result.source, {})
        for face in result.faces:
            if face.track is None:
                continue
            smoothed = face.smoothed_scores
            self.smoothed = self.smoothed or bool(smoothed)
            probabilities = face.smoothed_probabilities or face.probabilities
            expression = max(range(len(probabilities)), key=list(probabilities.values()).__getitem__) \
                if probabilities else np.nan
            tracks.setdefault(face.track, _Series()).append(
                (result.time, _value(face.scores, "valence"), _value(face.scores, "arousal"),
                 _value(smoothed, "valence"), _value(smoothed, "arousal"), expression))
        for track in result.lost_tracks:
            if track in tracks:
                tracks[track].append((result.time, *[np.nan] * (len(_COLUMNS) - 1)))

    def series(self) -> dict[str, dict[int, np.ndarray]]:
        """Per video and track, the kept points: columns `_COLUMNS`."""
        return {video: {track: s.view() for track, s in sorted(tracks.items())} for video, tracks in self._videos.items()}

    def draw(self, path, title: str | None = None):
        """Write the picture to `path` (PNG); the Path written."""
        from va2att.evaluation.plots import save_figure

        return save_figure(timeline_figure(self.series(), self.class_names, self.smoothed, title), path)


def _value(values: dict, name: str) -> float:
    value = values.get(name)
    return np.nan if value is None else float(value)


def timeline_figure(videos: dict[str, dict[int, np.ndarray]], class_names, smoothed: bool, title: str | None = None):
    """A matplotlib Figure of `Timeline.series()` (see the module's docstring)."""
    from matplotlib.figure import Figure

    shown = list(videos.items())[:MAX_VIDEOS] or [("no video", {})]
    figure = Figure(figsize=(11, 5.6 * len(shown)), dpi=100, layout="constrained")
    sections = figure.subfigures(len(shown), 1, squeeze=False)[:, 0]
    for section, (video, tracks) in zip(sections, shown):
        _draw_video(section, video, tracks, class_names, smoothed)
    hidden = len(videos) - len(shown)
    if title or hidden > 0:
        figure.suptitle((title or "") + (f" (first {len(shown)} videos of {len(videos)})" if hidden > 0 else ""))
    return figure


def _draw_video(section, video: str, tracks: dict[int, np.ndarray], class_names, smoothed: bool) -> None:
    from pathlib import Path

    axes = section.subplots(3, 1, sharex=True, height_ratios=[3, 3, 0.5 + 0.35 * max(1, len(tracks))])
    colours = [f"C{k % 10}" for k in range(len(tracks))]
    for ax, (column, name) in zip(axes[:2], ((1, "valence"), (2, "arousal"))):
        ax.axhspan(0, 1, color="#e8f4ea" if name == "valence" else "#fbeee0", zorder=0)
        ax.axhline(0, color="0.5", linewidth=0.8, zorder=1)
        for colour, (track, points) in zip(colours, tracks.items()):
            times = points[:, 0]
            if smoothed:
                ax.plot(times, points[:, column], color=colour, linewidth=0.8, alpha=0.35)
                ax.plot(times, points[:, column + 2], color=colour, linewidth=2.2, label=f"track {track}")
            else:
                ax.plot(times, points[:, column], color=colour, linewidth=1.6, marker=".", markersize=3,
                        label=f"track {track}")
        high, low = _WORDS[name]
        ax.set_ylim(-1.05, 1.05)
        ax.set_yticks([-1, -0.5, 0, 0.5, 1], [f"-1 {low}", "-0.5", "0", "0.5", f"1 {high}"])
        ax.set_ylabel(name + (" (bold: smoothed)" if smoothed else ""))
        ax.grid(axis="x", color="0.9")
    if tracks:
        axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    _expression_strip(axes[2], tracks, class_names)
    axes[2].set_xlabel("time (min:s)" if _long(tracks) else "time (s)")
    if _long(tracks):
        from matplotlib.ticker import FuncFormatter

        axes[2].xaxis.set_major_formatter(FuncFormatter(lambda t, _: f"{int(t // 60)}:{int(t % 60):02d}"))
    section.suptitle(Path(video).name, fontsize="large", x=0.02, ha="left")


def _long(tracks) -> bool:
    return any(len(p) and np.nanmax(p[:, 0]) > 90 for p in tracks.values())


def _expression_strip(ax, tracks: dict[int, np.ndarray], class_names) -> None:
    """One band per track, each stretch of time coloured by the track's most probable expression."""
    ax.set_yticks(range(len(tracks)), [f"track {t}" for t in tracks])
    ax.set_ylim(-0.6, max(1, len(tracks)) - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel("expression", rotation=0, ha="right", va="center")
    used = set()
    for row, points in enumerate(tracks.values()):
        times, index = points[:, 0], points[:, -1]
        if len(times) < 1:
            continue
        step = np.median(np.diff(times)) if len(times) > 1 else 1.0
        ends = np.append(np.minimum(times[1:], times[:-1] + 3 * step), times[-1] + step)
        runs: dict[int, list] = {}  # expression -> (start, length) of each stretch of time it held
        for t, e, i in zip(times, ends, index):
            if not np.isfinite(i):
                continue
            spans = runs.setdefault(int(i), [])
            if spans and abs(spans[-1][0] + spans[-1][1] - t) < 1e-9:  # continues the stretch before
                spans[-1] = (spans[-1][0], e - spans[-1][0])
            else:
                spans.append((t, e - t))
        for k, spans in runs.items():
            ax.broken_barh(spans, (row - 0.35, 0.7), color=_expression_colour(k), linewidth=0)
            used.add(k)
    names = [(k, class_names[k] if k < len(class_names) else str(k)) for k in sorted(used)]
    if names:
        from matplotlib.patches import Patch

        ax.legend([Patch(color=_expression_colour(k)) for k, _ in names], [n for _, n in names], loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")


def _expression_colour(index: int):
    from matplotlib import colormaps

    return colormaps["Set2"](index % 8)  # not the tracks' colours (C0, C1, ...)
