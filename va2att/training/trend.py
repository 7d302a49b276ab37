"""Whether a finished run was still learning: validation CCC still rising over its last epochs.

The paper's recipe is 10 epochs. On AffectNet that is about 11,000 optimiser steps; on a small set
(3,000 faces are 110 steps at batch 256) valence is often still rising at the last epoch
(docs/reproducing.md). `still_rising` finds the targets that were, from the run's history, so that
`train.py` can say so and print the command that trains the same run on.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
from collections.abc import Sequence

import numpy as np

from va2att.config import TrainConfig

TARGETS = ("valence", "arousal")
WINDOW = 3  # last epochs whose trend is read
MIN_RISE = 0.02  # CCC gained over the window by the least-squares line through it


@dataclasses.dataclass(frozen=True)
class Rise:
    """One target's validation CCC over the last epochs of a run, still rising."""

    target: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]

    def describe(self) -> str:
        values = ", ".join(f"{v:.3f}" for v in self.values)
        return f"{self.target} {values} (epochs {self.epochs[0]}-{self.epochs[-1]})"


def still_rising(history: Sequence[dict], window: int = WINDOW, min_rise: float = MIN_RISE) -> list[Rise]:
    """The targets whose validation CCC was still rising when the run stopped.

    A target counts when, over its last `window` epochs, the least-squares line gains at least
    `min_rise` and the last epoch is its best so far (a curve that peaked earlier and fell back is
    noise or over-fitting, not a run cut short). Rows without the target's `val_<target>_ccc`
    (another head, or a row of NaN) are skipped.

    Args:
        history: the run's per-epoch rows (`state.json`'s "history", as in history.csv), in epoch order.
        window: int >= 2, epochs read at the end.
        min_rise: float, CCC the trend must gain over the window.

    Returns:
        list of `Rise`, in `TARGETS` order; empty when nothing was rising or the run is shorter than `window`.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2. Received: window={window}")
    rising = []
    for target in TARGETS:
        key = f"val_{target}_ccc"
        rows = [(int(row["epoch"]), float(row[key])) for row in history if row.get(key) is not None]
        rows = [(epoch, value) for epoch, value in rows if not math.isnan(value)]
        if len(rows) < window:
            continue
        epochs, values = zip(*rows[-window:])
        slope = np.polyfit(np.arange(window), values, 1)[0]  # least-squares line through the last epochs
        if slope * (window - 1) >= min_rise and values[-1] >= max(value for _, value in rows):
            rising.append(Rise(target, epochs, values))
    return rising


def train_on_advice(history: Sequence[dict], run_dir, epochs_done: int) -> str | None:
    """A note for the end of train.py when validation CCC was still rising, with the command that trains
    the same run on by half as many epochs again (to the paper's 10 at least); None when nothing was rising."""
    rising = still_rising(history)
    if not rising:
        return None
    more = max(TrainConfig().epochs, epochs_done + max(1, epochs_done // 2))
    return (
        f"Validation CCC was still rising at the last epoch: {'; '.join(r.describe() for r in rising)}.\n"
        f"More epochs may help. To train this run on to epoch {more} (it resumes after epoch {epochs_done} "
        f"and exports the new best model):\n"
        f"  python train.py --resume {shlex.quote(str(run_dir))} --epochs {more}"
    )
