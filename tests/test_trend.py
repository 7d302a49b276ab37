"""`va2att.training.trend`: a run still learning at its last epoch is recognised, and only such a run."""

import math

import pytest

from va2att.training.trend import still_rising, train_on_advice


def history(valence, arousal=None):
    arousal = arousal or [0.9] * len(valence)
    return [{"epoch": i + 1, "val_valence_ccc": v, "val_arousal_ccc": a, "loss": 1.0}
            for i, (v, a) in enumerate(zip(valence, arousal))]


def test_a_target_still_climbing_at_the_last_epoch_is_named_with_its_last_values():
    rising = still_rising(history([0.0, 0.1, 0.3, 0.6, 0.64, 0.75, 0.79]))
    assert [r.target for r in rising] == ["valence"]
    assert rising[0].epochs == (5, 6, 7)
    assert rising[0].values == (0.64, 0.75, 0.79)


def test_flat_noisy_or_falling_curves_are_not_rising():
    assert still_rising(history([0.90, 0.93, 0.92, 0.93, 0.935])) == []  # a plateau: gains under the threshold
    assert still_rising(history([0.5, 0.8, 0.7, 0.75])) == []  # the best epoch came earlier
    assert still_rising(history([0.9, 0.8, 0.7])) == []
    assert still_rising(history([0.1, 0.5])) == []  # shorter than the window


def test_both_targets_and_rows_without_a_figure():
    rows = history([0.2, 0.4, 0.6], [0.3, 0.5, 0.7])
    assert [r.target for r in still_rising(rows)] == ["valence", "arousal"]
    rows = [{"epoch": 1, "val_valence_ccc": math.nan}] + history([0.2, 0.4, 0.6])[0:3]
    assert [r.values for r in still_rising(rows)] == [(0.2, 0.4, 0.6)]
    single = [{"epoch": e, "val_arousal_ccc": v} for e, v in ((1, 0.1), (2, 0.3), (3, 0.5))]  # a single-arousal run
    assert [r.target for r in still_rising(single)] == ["arousal"]


def test_the_window_and_threshold_are_arguments():
    rows = history([0.50, 0.505, 0.51, 0.515])  # 0.01 over the last three epochs, 0.015 over four
    assert still_rising(rows) == []
    assert [r.target for r in still_rising(rows, window=4, min_rise=0.012)] == ["valence"]
    assert still_rising(rows, window=4) == []
    with pytest.raises(ValueError, match="window must be at least 2"):
        still_rising(rows, window=1)


def test_the_advice_names_the_command_that_trains_the_run_on():
    advice = train_on_advice(history([0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]), "runs/my run", 10)
    assert "valence 0.700, 0.750, 0.800 (epochs 8-10)" in advice
    assert advice.splitlines()[-1] == "  python train.py --resume 'runs/my run' --epochs 15"
    assert train_on_advice(history([0.9, 0.9, 0.9]), "runs/x", 3) is None
    assert train_on_advice(history([0.1, 0.2, 0.3]), "runs/x", 3).endswith("--epochs 10")  # at least the paper's 10
