"""The paper's plateau schedule: a monitored signal that falls when predictions improve, guards against noise, a floor."""

import keras
import numpy as np
import pytest

from va2att.config import ModelConfig, TrainConfig
from va2att.model.losses import compile_args
from va2att.model.metrics import metric_args
from va2att.training.callbacks import LearningRateControl
from va2att.training.schedules import PlateauRule, schedule_signal

RNG = np.random.default_rng(0)
N = 512
TRUE_V, TRUE_A = RNG.uniform(-1, 1, N).astype("float32"), RNG.uniform(-1, 1, N).astype("float32")
EXPR = RNG.integers(0, 8, N)
# Fixed imperfect predictions: noise plus a few gross errors (outliers for Tukey).
PRED_V = TRUE_V + RNG.normal(0, 0.4, N).astype("float32") + (RNG.random(N) < 0.05) * 1.5
PRED_A = TRUE_A + RNG.normal(0, 0.3, N).astype("float32")
PROBS = np.full((N, 8), 1 / 8, "float32")


def validation_logs(model_cfg: ModelConfig, k: float) -> dict:
    """Keras validation logs of the project's objective and metrics for the predictions made k times more accurate."""
    names = ("valence", "arousal", "expression")
    inputs = [keras.Input((d,), name=f"{name}_in") for name, d in zip(names, (1, 1, 8))]
    model = keras.Model(inputs, {name: keras.layers.Identity(name=name)(x) for name, x in zip(names, inputs)})
    model.compile(**metric_args(model_cfg), **compile_args(model_cfg))
    preds = [(TRUE_V - (TRUE_V - PRED_V) / k)[:, None], (TRUE_A - (TRUE_A - PRED_A) / k)[:, None], PROBS]
    labels = {"valence": TRUE_V, "arousal": TRUE_A, "expression": EXPR}
    logs = model.evaluate(preds, labels, batch_size=128, verbose=0, return_dict=True)
    return {f"val_{key}": value for key, value in logs.items()}


def test_the_monitored_signal_falls_when_the_same_predictions_are_made_more_accurate():
    logs = [validation_logs(ModelConfig(), k) for k in (1, 2, 4)]
    ccc = [schedule_signal(x, "ccc") for x in logs]
    assert ccc[0] > ccc[1] > ccc[2] > 0
    # The default Tukey form's validation objective falls too (it is comparable across epochs) ...
    loss = [schedule_signal(x, "val_loss") for x in logs]
    assert loss[0] > loss[1] > loss[2]
    # ... while the scaled form's regression terms do not move: "the loss did not drop" would be noise.
    scaled = [validation_logs(ModelConfig(tukey_form="scaled"), k) for k in (1, 4)]
    assert scaled[1]["val_valence_loss"] == pytest.approx(scaled[0]["val_valence_loss"], rel=0.02)
    assert logs[2]["val_valence_loss"] < 0.2 * logs[0]["val_valence_loss"]


def count_cuts(values, **kwargs):
    rule = PlateauRule(**kwargs)
    return [epoch for epoch, v in enumerate(values, 1) if rule.update(epoch, v).cut]


@pytest.mark.parametrize("spike", [+0.08, -0.08], ids=["worse", "better"])
@pytest.mark.parametrize("at", [2, 4, 7])
def test_one_noisy_epoch_cuts_at_most_once(spike, at):
    improving = [0.6 * 0.85**e for e in range(10)]
    values = list(improving)
    values[at] += spike
    assert len(count_cuts(values)) <= 1
    assert count_cuts(improving) == []


def test_small_improvements_and_a_flat_signal_cut_after_patience_and_cooldown():
    assert count_cuts([0.5, 0.499, 0.4985, 0.498, 0.4975, 0.497]) == [2, 4, 6]  # < 1% is not a drop
    assert count_cuts([0.5] * 7, patience=2, cooldown=0) == [3, 5, 7]
    assert count_cuts([0.5, 0.4, 0.45, 0.3], min_delta=0.0) == [3]


class _Recorder:
    def __init__(self):
        self.lines = []

    def __call__(self, line):
        self.lines.append(line)


def run_callback(train_cfg: TrainConfig, values: list[float], state=None, steps_per_epoch=2000, start_step=0):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=train_cfg.lr), loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(start_step)  # a resumed run restores the optimizer's step count
    log = _Recorder()
    control = LearningRateControl(train_cfg, state=state, log=log)
    control.set_model(model)
    rates, all_logs = [], []
    for epoch, v in enumerate(values):
        model.optimizer.iterations.assign_add(steps_per_epoch)
        logs = {"val_valence_ccc": 1 - v, "val_arousal_ccc": 1 - v, "val_loss": 1.0}
        control.on_epoch_end(epoch, logs)
        rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
        all_logs.append(logs)
    return rates, all_logs, log.lines, control


def test_the_learning_rate_floor_holds_and_every_cut_is_logged_with_its_values():
    rates, logs, lines, _ = run_callback(TrainConfig(), [0.5] * 10)
    assert min(rates) == pytest.approx(1e-5, rel=1e-4)  # two cuts from 1e-3, never below the floor
    cuts = [line for line in lines if "->" in line]
    assert len(cuts) == 2 and all("1 - mean validation CCC 0.5000" in line for line in cuts)
    assert all("kept at 1e-05: the learning rate is at its floor" in line for line in lines if line not in cuts)
    assert [x["lr"] for x in logs][:3] == pytest.approx([1e-3, 1e-3, 1e-4], rel=1e-4)  # the rate each epoch used
    assert all(x["schedule_signal"] == pytest.approx(0.5) for x in logs)
    rates, _, _, _ = run_callback(TrainConfig(min_lr=0.0), [0.5] * 10)
    assert min(rates) < 1e-6


def test_no_cut_before_min_steps_since_the_start_or_the_last_cut():
    values = [0.5, 0.4, 0.45, 0.45, 0.45, 0.45, 0.45, 0.45]
    # 300 steps an epoch, 1,000 needed: the first cut can come at epoch 4 (1,200 steps), the next at epoch 8.
    rates, _, lines, _ = run_callback(TrainConfig(), values, steps_per_epoch=300)
    assert rates == pytest.approx([1e-3] * 3 + [1e-4] * 4 + [1e-5], rel=1e-4)
    assert "kept at 0.001: 900 steps since the start, fewer than 1000" in lines[0]
    rates, _, _, _ = run_callback(TrainConfig(), values, steps_per_epoch=10)  # a small data set: no cut in 10 epochs
    assert rates == pytest.approx([1e-3] * len(values))


def test_the_rule_resumes_from_its_saved_state():
    values = [0.5, 0.4, 0.41, 0.3, 0.29, 0.35, 0.2]
    whole, _, _, _ = run_callback(TrainConfig(), values)
    first, _, _, control = run_callback(TrainConfig(), values[:4])
    rest, _, _, _ = run_callback(TrainConfig(lr=first[-1]), values[4:], state=dict(control.state), start_step=4 * 2000)
    assert min(whole) < 1e-3
    # The second half starts at epoch 1 again but compares with the saved best and cooldown.
    assert first + rest == pytest.approx(whole)
    # A state written by an older version (best_val_loss) starts the rule afresh instead of failing.
    PlateauRule(state={"best_val_loss": 1.0, "wait": 0}).update(1, 0.5)
