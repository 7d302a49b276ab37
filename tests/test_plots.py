"""Figures: each function writes a readable PNG atomically and validates its inputs."""

import numpy as np
import pytest
from matplotlib import image as mpimg

from va2att.config import EXPRESSION_NAMES
from va2att.evaluation import plots


def _check_png(path):
    assert path.is_file()
    pixels = mpimg.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 0.01  # something was drawn
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]  # no temporary file left behind


def test_circumplex_predictions_only(tmp_path):
    rng = np.random.default_rng(0)
    out = plots.circumplex(tmp_path / "sub" / "va.png", rng.uniform(-1, 1, 12), rng.uniform(-1, 1, 12),
                           labels=[f"face {i}" for i in range(12)], title="demo")
    assert out == tmp_path / "sub" / "va.png"
    _check_png(out)


def test_circumplex_with_truth_and_many_points(tmp_path):
    rng = np.random.default_rng(1)
    n = 3000
    out = plots.circumplex(tmp_path / "va.png", rng.uniform(-1, 1, n), rng.uniform(-1, 1, n),
                           true_valence=rng.uniform(-1, 1, n), true_arousal=rng.uniform(-1, 1, (n, 1)))
    _check_png(out)


def test_circumplex_empty_and_overwrite(tmp_path):
    path = tmp_path / "va.png"
    path.write_bytes(b"old")
    plots.circumplex(path, [], [])
    _check_png(path)


def test_circumplex_rejects_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        plots.circumplex(tmp_path / "x.png", [0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="labels"):
        plots.circumplex(tmp_path / "x.png", [0.1], [0.3], labels=["a", "b"])
    with pytest.raises(ValueError, match="finite"):
        plots.circumplex(tmp_path / "x.png", [np.nan], [0.3])
    assert not list(tmp_path.iterdir())


def test_confusion_matrix(tmp_path):
    rng = np.random.default_rng(2)
    k = len(EXPRESSION_NAMES)
    counts = rng.integers(0, 60, (k, k))
    counts[3] = 0  # a class with no examples must not divide by zero
    _check_png(plots.confusion_matrix(tmp_path / "cm.png", counts, EXPRESSION_NAMES, title="cm"))
    with pytest.raises(ValueError, match="8x8"):
        plots.confusion_matrix(tmp_path / "bad.png", np.ones((7, 7)), EXPRESSION_NAMES)


def test_training_curves_full_history(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text(
        "epoch,arousal_ccc,arousal_loss,expression_loss,learning_rate,loss,"
        "val_arousal_ccc,val_arousal_loss,val_loss,val_valence_ccc,valence_ccc,valence_loss\n"
        "0,0.1,0.5,1.9,0.001,1.2,0.05,0.6,1.3,0.2,0.15,0.4\n"
        "1,0.2,0.4,1.7,0.001,1.0,0.1,0.5,1.1,0.3,0.25,0.3\n"
        "2,0.3,0.35,1.6,0.0001,0.9,0.2,0.45,1.0,0.35,0.3,0.25\n"
    )
    panels = plots._panel_columns(plots._read_history(csv))
    titles = [title for title, _ in panels]
    assert titles[:3] == ["loss", "valence CCC", "arousal CCC"]
    assert panels[0][1] == ["loss", "val_loss"]
    _check_png(plots.training_curves(tmp_path / "curves.png", csv))


def test_training_curves_loss_only(tmp_path):
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss\n0,1.0\n1,0.8\n")
    _check_png(plots.training_curves(tmp_path / "curves.png", csv))
    bad = tmp_path / "bad.csv"
    bad.write_text("epoch,learning_rate\n0,0.1\n")
    with pytest.raises(ValueError, match="no loss or CCC"):
        plots.training_curves(tmp_path / "bad.png", bad)


def test_training_curves_epoch_axis_is_history_csv_epochs(tmp_path):
    """history.csv numbers epochs from 1: a 10-epoch run is drawn over 1..10, not 2..11."""
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss\n" + "".join(f"{e},{1.0 / e}\n" for e in range(1, 11)))
    columns = plots._read_history(csv)
    assert plots.epoch_axis(columns).tolist() == list(range(1, 11))
    assert plots.epoch_axis({"loss": [1.0, 0.5]}).tolist() == [1, 2]


def test_circumplex_of_many_faces_draws_densities_not_a_tangle(tmp_path):
    from matplotlib.collections import LineCollection, PolyCollection

    rng = np.random.default_rng(0)
    truth = rng.uniform(-1, 1, (2, 1000))
    predicted = np.clip(truth + rng.normal(0, 0.2, truth.shape), -1, 1)
    fig = plots.circumplex_figure(predicted[0], predicted[1], truth[0], truth[1])
    assert len([ax for ax in fig.axes if ax.get_xlabel() == "valence"]) == 2  # truth beside predictions
    collections = [c for ax in fig.axes for c in ax.collections]
    assert not any(isinstance(c, LineCollection) for c in collections)
    assert any(isinstance(c, PolyCollection) for c in collections)  # hexbin
    few = plots.circumplex_figure(predicted[0][:20], predicted[1][:20], truth[0][:20], truth[1][:20])
    assert any(isinstance(c, LineCollection) for ax in few.axes for c in ax.collections)  # arrows for a few
    _check_png(plots.circumplex(tmp_path / "many.png", predicted[0], predicted[1], truth[0], truth[1]))
