"""The training console: compact epoch lines, a live line only on a terminal, correct plurals."""

import io

from va2att.training.console import EpochConsole, epoch_line, plural

LOGS = {f"{p}{o}_{m}": 0.5 for p in ("", "val_") for o in ("valence", "arousal") for m in ("ccc", "rmse", "pcc", "sagr")}
LOGS.update(loss=1.25, val_loss=1.5, expression_accuracy=0.4, val_expression_accuracy=0.375, lr=1e-3)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_epoch_line_shows_the_few_metrics_that_matter():
    line = epoch_line(3, 10, LOGS, 41.2)
    assert line == "Epoch 3/10 (41 s): loss 1.250, val loss 1.500, val CCC V 0.500 A 0.500, val acc 0.375, lr 0.001"
    assert len(line) < 100 and "rmse" not in line


def test_plural():
    assert [plural(n, "epoch") for n in (0, 1, 2)] == ["0 epochs", "1 epoch", "2 epochs"]


def _epoch(console):
    console.set_params({"steps": 3, "epochs": 2})
    console.on_epoch_begin(0)
    for step in range(3):
        console.on_train_batch_end(step, {"loss": 1.0})
    console.on_test_begin()
    console.log("a message of the trainer")
    console.on_epoch_end(0, dict(LOGS))


def test_not_a_terminal_gets_one_line_per_epoch_and_no_redraws():
    out = io.StringIO()
    _epoch(EpochConsole(2, stream=out))
    assert "\r" not in out.getvalue()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0] == "a message of the trainer"
    assert lines[1].startswith("Epoch 1/2 (") and lines[1].endswith(epoch_line(1, 2, LOGS).split(": ", 1)[1])


def test_a_terminal_gets_a_live_line_that_is_cleared_before_other_lines():
    out = Terminal()
    _epoch(EpochConsole(2, stream=out))
    text = out.getvalue()
    assert "Epoch 1/2: training" in text and "\r" in text
    lines = [line.split("\r")[-1] for line in text.split("\n")]
    assert lines[0] == "a message of the trainer" and lines[1].startswith("Epoch 1/2 (")
