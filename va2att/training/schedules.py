"""The learning-rate schedules, in one place: `LearningRateSchedule` applies the configured one
(`train.schedule`: "plateau", the paper's; "step", at `train.step_epochs`; "constant") after each
epoch; `va2att.training.callbacks.LearningRateControl` only hands it the epoch's logs and sets the
rate it decides.

The plateau rule of the paper's schedule: "when the loss did not drop, the learning rate was divided by 10".

What "the loss" is matters. With Tukey's biweight the residuals are divided by a scale measured
on the same batch, so the validation objective hardly moves when predictions get better, and
the expression cross-entropy dominates the sum; a rule watching it cuts on noise. The default
signal is therefore `1 - mean validation CCC` (`monitor="ccc"`): it falls exactly when the
predictions that are reported and selected on get better. `monitor="val_loss"` watches the
validation objective as Keras reports it.

Guards against cutting on noise, each a field of `TrainConfig`:
- `min_delta`: a value counts as a drop only when it is below `best * (1 - min_delta)`;
- `patience`: epochs without a drop before a cut;
- `cooldown`: epochs after a cut in which nothing is counted (the new rate gets time to act);
- `min_steps`: optimizer steps that must have run since the start or the last cut. The paper's
  patience of one epoch was one AffectNet epoch, about 1,100 steps at batch 256; on a small data
  set an epoch is a dozen steps, and validation figures after so few steps are mostly noise, so
  the default keeps the paper's horizon in steps (1,000) instead of in passes over the data;
- `min_lr`: the rate is never cut below this floor.
After a cut the reference is the value of the epoch that caused it, so one noisy epoch (too
good or too bad) causes at most one cut.

`PlateauRule` and `LearningRateSchedule` are plain Python with a JSON-ready state, so they resume
with the run.
"""

from __future__ import annotations

import dataclasses
import math


def mean_validation_ccc(logs: dict) -> float | None:
    """Mean of the validation CCCs in Keras logs (`val_valence_ccc`, `val_arousal_ccc`)."""
    values = [float(v) for k, v in logs.items() if k.startswith("val_") and k.endswith("_ccc")]
    return sum(values) / len(values) if values else None


def schedule_signal(logs: dict, monitor: str) -> float | None:
    """The monitored value of one epoch's logs (lower is better), or None when it is not there."""
    if monitor == "ccc":
        ccc = mean_validation_ccc(logs)
        return None if ccc is None or not math.isfinite(ccc) else 1.0 - ccc
    if monitor == "val_loss":
        value = logs.get("val_loss")
        return None if value is None or not math.isfinite(float(value)) else float(value)
    raise ValueError(f"Unknown plateau monitor {monitor!r}: allowed values are 'ccc', 'val_loss'.")


@dataclasses.dataclass
class Decision:
    """What the rule decided after one epoch, and why (for the log)."""

    cut: bool
    value: float | None
    best: float | None
    best_epoch: int | None
    reason: str
    held: bool = False  # a cut was due but the floor or `min_steps` held it back


def _dropped(value: float, best: float | None, min_delta: float) -> bool:
    """True when `value` improves on `best` by more than the relative `min_delta` (lower is better)."""
    if best is None:
        return True
    return value < best * (1.0 - min_delta) if best > 0 else value < best


class PlateauRule:
    """Decides, epoch by epoch, whether to divide the learning rate.

    The state holds `best` (the lowest value since the last cut, or the value that caused it) and
    its epoch, the epochs waited, and the cooldown epochs left.

    Args:
        patience: int. Epochs without a drop before a cut (0 is treated as 1).
        min_delta: float. Relative improvement that counts as a drop.
        cooldown: int. Epochs after a cut that are not counted.
        min_steps: int. Optimizer steps since the start or the last cut before a cut is allowed.
        state: dict or None. A previous `state` to resume from.
    """

    def __init__(self, patience: int = 1, min_delta: float = 0.01, cooldown: int = 1, min_steps: int = 0,
                 state: dict | None = None):
        self.patience = max(int(patience), 1)
        self.min_delta = float(min_delta)
        self.cooldown = int(cooldown)
        self.min_steps = int(min_steps)
        fresh = {"best": None, "best_epoch": None, "wait": 0, "cooldown_left": 0, "last_cut_step": 0}
        self.state = {**fresh, **{k: v for k, v in (state or {}).items() if k in fresh}}

    def update(self, epoch: int, value: float | None, can_cut: bool = True, step: int | None = None) -> Decision:
        """Record `value` of (1-based) `epoch`; `can_cut` is False when the rate is at its floor; `step` is
        the optimizer's step count at the end of the epoch (None: `min_steps` is not applied)."""
        s = self.state
        if value is None:
            return Decision(False, None, s["best"], s["best_epoch"], "no value to monitor")
        if _dropped(value, s["best"], self.min_delta):
            s.update(best=float(value), best_epoch=int(epoch), wait=0)
            s["cooldown_left"] = max(s["cooldown_left"] - 1, 0)
            return Decision(False, value, s["best"], s["best_epoch"], "dropped")
        if s["cooldown_left"] > 0:
            s["cooldown_left"] -= 1
            return Decision(False, value, s["best"], s["best_epoch"], "cooldown after a cut")
        s["wait"] += 1
        if s["wait"] < self.patience:
            return Decision(False, value, s["best"], s["best_epoch"], f"waiting ({s['wait']}/{self.patience})")
        s["wait"] = 0
        if not can_cut:
            return Decision(False, value, s["best"], s["best_epoch"], "the learning rate is at its floor", held=True)
        if step is not None and step - s["last_cut_step"] < self.min_steps:
            since = "the last cut" if s["last_cut_step"] else "the start"
            return Decision(False, value, s["best"], s["best_epoch"],
                            f"{step - s['last_cut_step']} steps since {since}, fewer than {self.min_steps}", held=True)
        decision = Decision(True, value, s["best"], s["best_epoch"], "did not drop")
        # The new rate starts from this epoch's level: later epochs are compared with it, so one
        # lucky epoch before the cut cannot cause a second cut.
        s.update(best=float(value), best_epoch=int(epoch), cooldown_left=self.cooldown,
                 last_cut_step=int(step if step is not None else s["last_cut_step"]))
        return decision


@dataclasses.dataclass(frozen=True)
class RateChange:
    """What the schedule decided after one epoch: the new rate (None: unchanged), the line to log (None:
    nothing to say) and the monitored value (plateau schedule)."""

    new_lr: float | None = None
    message: str | None = None
    signal: float | None = None


class LearningRateSchedule:
    """The configured schedule (`TrainConfig.schedule`, its factor, floor and rules), epoch by epoch.

    Args:
        cfg: TrainConfig.
        state: dict or None. A previous `state` (the plateau rule's) to resume from.
    """

    def __init__(self, cfg, state: dict | None = None):
        self.cfg = cfg
        self.plateau = PlateauRule(cfg.plateau_patience, cfg.plateau_min_delta, cfg.plateau_cooldown,
                                   cfg.plateau_min_steps, state)

    @property
    def state(self) -> dict:
        return self.plateau.state

    def after_epoch(self, epoch: int, logs: dict, lr: float, step: int) -> RateChange:
        """The change after (1-based) `epoch`, trained at rate `lr`, with the optimizer at `step`."""
        if self.cfg.schedule == "plateau":
            return self._plateau(epoch, logs, lr, step)
        if self.cfg.schedule == "step" and epoch in self.cfg.step_epochs:
            new_lr = lr * self.cfg.lr_factor
            return RateChange(new_lr, f"Epoch {epoch}: learning rate {lr:.3g} -> {new_lr:.3g} (step schedule)")
        return RateChange()

    def _plateau(self, epoch: int, logs: dict, lr: float, step: int) -> RateChange:
        cfg = self.cfg
        value = schedule_signal(logs, cfg.plateau_monitor)
        floor = max(cfg.min_lr, 0.0)
        decision = self.plateau.update(epoch, value, can_cut=lr * cfg.lr_factor >= floor * (1 - 1e-3), step=step)
        if not (decision.cut or decision.held):
            return RateChange(signal=value)
        name = "1 - mean validation CCC" if cfg.plateau_monitor == "ccc" else "validation loss"
        why = (f"Epoch {epoch}: {name} {decision.value:.4f} did not drop by {cfg.plateau_min_delta:.0%} "
               f"below {decision.best:.4f} (epoch {decision.best_epoch})")
        if decision.held:
            return RateChange(None, f"{why}; learning rate kept at {lr:.3g}: {decision.reason}", value)
        new_lr = max(lr * cfg.lr_factor, floor)
        return RateChange(new_lr, f"{why}: learning rate {lr:.3g} -> {new_lr:.3g}", value)
