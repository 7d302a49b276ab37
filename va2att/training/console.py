"""What training prints: one compact line per epoch, and a live progress line on a terminal.

Keras's progress bar shows every logged metric (32 for the 2Att-2Mt head, about 800 characters)
and, redirected to a file, writes every redraw. `EpochConsole` shows the few that matter — loss,
validation loss, valence and arousal CCC, expression accuracy, learning rate — once per epoch
(history.csv and TensorBoard keep the rest). On a terminal it redraws one short line in place
during the epoch; anything else the trainer prints goes through `EpochConsole.log`, which clears
that line first, so no message is glued to a half-drawn bar.

Also: `plural(n, word)` ("1 epoch", "2 epochs") for every count the tools print.
"""

from __future__ import annotations

import sys
import time

import keras

# (label, log keys tried in order) of the epoch line; a missing key is left out.
EPOCH_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("loss", ("loss",)),
    ("val loss", ("val_loss",)),
    ("val CCC V", ("val_valence_ccc",)),
    ("A", ("val_arousal_ccc",)),
    ("val acc", ("val_expression_accuracy",)),
)
_REDRAW_SECONDS = 0.2


def plural(count: int, word: str, many: str | None = None) -> str:
    """`1 epoch`, `2 epochs`, `0 epochs` (or the given plural form)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def epoch_line(epoch: int, epochs: int, logs: dict, seconds: float | None = None) -> str:
    """`Epoch 3/10 (41 s): loss 0.812, val loss 0.790, val CCC V 0.512 A 0.433, val acc 0.412, lr 0.001`."""
    parts = []
    for label, keys in EPOCH_FIELDS:
        key = next((k for k in keys if k in logs), None)
        if key is not None:
            parts.append(f"{label} {float(logs[key]):.3f}")
    if "lr" in logs:
        parts.append(f"lr {float(logs['lr']):.3g}")
    took = f" ({seconds:.0f} s)" if seconds is not None else ""
    text = ", ".join(parts).replace(", A ", " A ")
    return f"Epoch {epoch}/{epochs}{took}: {text}"


class EpochConsole(keras.callbacks.Callback):
    """Print `epoch_line` at the end of every epoch; with `live`, a one-line progress display during it.

    Args:
        epochs: int, the planned number of epochs (for "Epoch 3/10").
        live: bool or None, redraw a progress line during the epoch; None = when the stream is a terminal.
        stream: a text stream, default `sys.stdout`.
    """

    def __init__(self, epochs: int, live: bool | None = None, stream=None):
        super().__init__()
        self.epochs = epochs
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else bool(live)
        self._drawn = 0
        self._last_draw = 0.0
        self._epoch = 0
        self._start = 0.0

    # === Printing ===

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0

    def log(self, message: str) -> None:
        """Print a line of the trainer's own (clears a live progress line first)."""
        self.clear()
        print(message, file=self.stream, flush=True)

    def wrap(self, log):
        """`log` with the live line cleared before each call."""
        def wrapped(*args, **kwargs):
            self.clear()
            return log(*args, **kwargs)

        return wrapped

    def _draw(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self.live or (not force and now - self._last_draw < _REDRAW_SECONDS):
            return
        self._last_draw = now
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)

    # === Callback ===

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._start = time.monotonic()
        self._draw(f"Epoch {self._epoch}/{self.epochs}: training", force=True)

    def on_train_batch_end(self, batch, logs=None):
        steps = (self.params or {}).get("steps")
        of = f"/{steps}" if steps else ""
        loss = (logs or {}).get("loss")
        shown = f", loss {float(loss):.4f}" if loss is not None else ""
        self._draw(f"Epoch {self._epoch}/{self.epochs}: step {batch + 1}{of}{shown}")

    def on_test_begin(self, logs=None):
        self._draw(f"Epoch {self._epoch}/{self.epochs}: validating", force=True)

    def on_epoch_end(self, epoch, logs=None):
        self.log(epoch_line(epoch + 1, self.epochs, logs or {}, time.monotonic() - self._start))

    def on_train_end(self, logs=None):
        self.clear()
