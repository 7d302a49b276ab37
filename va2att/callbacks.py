"""Training callbacks whose state survives an interrupted run.

`LearningRateControl` divides the learning rate when the validation loss stops
falling (the paper's recipe) or at fixed epochs. `RunCheckpoint` commits each
finished epoch: model and optimizer weights, the best model by mean validation
CCC, `history.csv`, and last `state.json`, the record a resumed run starts from.
Every file is written to a temporary name and renamed, so a killed process
leaves the previous epoch's checkpoint intact.
"""

from __future__ import annotations

import csv
import io
import math

import keras

from va2att import fileio
from va2att.config import TrainConfig
from va2att.run_dir import RunDir


def mean_validation_ccc(logs: dict) -> float | None:
    """Mean of the validation CCCs in Keras logs (`val_valence_ccc`, `val_arousal_ccc`)."""
    values = [float(v) for k, v in logs.items() if k.startswith("val_") and k.endswith("_ccc")]
    return sum(values) / len(values) if values else None


class LearningRateControl(keras.callbacks.Callback):
    """Plateau (lr x factor when val_loss has not fallen for `patience` epochs) or step schedule."""

    def __init__(self, cfg: TrainConfig, state: dict | None = None, log=print):
        super().__init__()
        self.cfg = cfg
        self.log = log
        self.state = dict(state or {"best_val_loss": math.inf, "wait": 0})

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        optimizer = self.model.optimizer
        lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        logs["lr"] = lr  # the rate this epoch was trained with
        reduce = False
        if self.cfg.schedule == "plateau" and "val_loss" in logs:
            val_loss = float(logs["val_loss"])
            if val_loss < self.state["best_val_loss"] - 1e-6:
                self.state = {"best_val_loss": val_loss, "wait": 0}
            else:
                self.state["wait"] += 1
                if self.state["wait"] >= max(self.cfg.plateau_patience, 1):
                    reduce = True
                    self.state["wait"] = 0
        elif self.cfg.schedule == "step":
            reduce = (epoch + 1) in self.cfg.step_epochs
        if reduce:
            optimizer.learning_rate.assign(lr * self.cfg.lr_factor)
            self.log(f"Epoch {epoch + 1}: learning rate {lr:.3g} -> {lr * self.cfg.lr_factor:.3g}")


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
        from va2att.distribute import unsynchronized_batch_norm

        with fileio.atomic_path(path) as tmp, unsynchronized_batch_norm(self.model):
            self.model.save(tmp)
