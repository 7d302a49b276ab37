"""Training callbacks whose state survives an interrupted run.

`LearningRateControl` sets the learning rate the schedule decides after each epoch
(`va2att.training.schedules`: the paper's plateau rule, or fixed epochs). `RunCheckpoint` commits each
finished epoch: model and optimizer weights, the best model by mean validation
CCC, `history.csv`, and last `state.json`, the record a resumed run starts from.
Every file is written to a temporary name and renamed, so a killed process
leaves the previous epoch's checkpoint intact.
"""

from __future__ import annotations

import csv
import io

import keras

from va2att.config import TrainConfig
from va2att.run_dir import RunDir
from va2att.training.schedules import LearningRateSchedule, mean_validation_ccc
from va2att.util import fileio


class StopBetweenSteps(keras.callbacks.Callback):
    """Raises a Ctrl-C that `va2att.util.interrupt.deferred_interrupt` recorded at the end of a training or
    validation step, never inside one: pressed while a step's graph function was failing in TensorFlow (the
    pipeline's end-of-data error, which Keras catches), it would otherwise reach `fit` as pybind11's
    RuntimeError instead of a KeyboardInterrupt. Not at an epoch's end: the epoch's checkpoint is written
    then, and a Ctrl-C during it is raised at the next step."""

    def __init__(self, interrupt):
        super().__init__()
        self.interrupt = interrupt

    def on_train_batch_end(self, batch, logs=None):
        self.interrupt.check()

    def on_test_batch_end(self, batch, logs=None):
        self.interrupt.check()


class LearningRateControl(keras.callbacks.Callback):
    """Applies the configured schedule (`va2att.training.schedules.LearningRateSchedule`) after each epoch.

    Adds to each epoch's logs `lr` (the rate the epoch was trained with) and, for the plateau
    schedule, `schedule_signal` (the monitored value); logs every cut with the values behind it."""

    def __init__(self, cfg: TrainConfig, state: dict | None = None, log=print):
        super().__init__()
        self.schedule = LearningRateSchedule(cfg, state)
        self.log = log

    @property
    def state(self) -> dict:
        return self.schedule.state

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        logs["lr"] = lr  # the rate this epoch was trained with
        change = self.schedule.after_epoch(epoch + 1, logs, lr, int(keras.ops.convert_to_numpy(optimizer.iterations)))
        if change.signal is not None:
            logs["schedule_signal"] = change.signal
        if change.message:
            self.log(change.message)
        if change.new_lr is not None:
            optimizer.learning_rate.assign(change.new_lr)


class DataEpoch(keras.callbacks.Callback):
    """Set the epoch variable the training pipeline seeds its order and augmentation with
    (`va2att.data.pipeline.make_dataset(..., epoch=variable)`) before each epoch starts."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def history_csv(history: list[dict]) -> str:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return out.getvalue()


class RunCheckpoint(keras.callbacks.Callback):
    """Commit every finished epoch to the run folder; `state.json` is written last."""

    def __init__(self, run: RunDir, lr_control: LearningRateControl, state: dict | None = None,
                 chief: bool = True, log=print):
        super().__init__()
        self.run = run
        self.lr_control = lr_control
        self.chief = chief
        self.log = log
        self.state = dict(state or {"epoch": 0, "checkpoint": None, "best_mean_ccc": None, "best_epoch": None,
                                    "history": []})

    def on_train_begin(self, logs=None):
        if self.chief and self.state["history"]:
            fileio.write_text(self.run.history, history_csv(self.state["history"]))

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}}
        score = mean_validation_ccc(logs)
        state = dict(self.state)
        state["history"] = [h for h in state["history"] if h["epoch"] <= epoch] + [record]
        improved = score is not None and (state["best_mean_ccc"] is None or score > state["best_mean_ccc"])
        if improved:
            state["best_mean_ccc"], state["best_epoch"] = score, epoch + 1
        state.update(epoch=epoch + 1, checkpoint=self.run.checkpoint(epoch + 1).name, lr_control=self.lr_control.state,
                     lr=float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)), interrupted=False)
        if self.chief:  # the other workers hold the same weights and write nothing
            if improved or score is None:
                self._save_model(self.run.best)
            with fileio.atomic_path(self.run.checkpoint(epoch + 1)) as tmp:
                self.model.save_weights(tmp)
            fileio.write_text(self.run.history, history_csv(state["history"]))
            fileio.write_json(self.run.state, state)  # the commit point of the epoch
        self.state = state
        if improved and self.chief:
            self.log(f"Epoch {epoch + 1}: mean validation CCC {score:.4f} (best so far), saved {self.run.best}")

    def _save_model(self, path):
        from va2att.training.distribute import unsynchronized_batch_norm

        with fileio.atomic_path(path) as tmp, unsynchronized_batch_norm(self.model):
            self.model.save(tmp)
