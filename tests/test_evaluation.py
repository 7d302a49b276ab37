"""va2att.evaluation.evaluate.evaluate: flip averaging over the whole split, expression cut to the scored classes."""

import numpy as np
import pytest
from conftest import Probe

from va2att.config import DataConfig
from va2att.data import pipeline
from va2att.evaluation.evaluate import evaluate
from va2att.model import metrics


@pytest.mark.parametrize("classes", [8, 7])
def test_evaluate_scores_flip_averaged_predictions_of_the_whole_split(prepared, classes):
    data = DataConfig(data=str(prepared), batch_size=5)
    found = evaluate(Probe(), data, "validation", classes)

    batches = list(pipeline.make_dataset(prepared, "validation", data, training=False, num_classes=classes))
    crops = np.concatenate([x.numpy() for x, _, _ in batches])
    truth = {name: np.concatenate([y[name].numpy().reshape(-1) for _, y, _ in batches]) for name in Probe.outputs}
    probe = Probe()
    plain, mirrored = probe(crops), probe(crops[:, :, ::-1])
    averaged = {name: (plain[name] + mirrored[name]) / 2.0 for name in Probe.outputs}

    assert found.metrics["n"] == len(crops) == pipeline.count_examples(prepared, "validation", classes)
    np.testing.assert_allclose(found.predictions["valence"], averaged["valence"][:, 0], atol=1e-6)
    assert found.predictions["expression"].shape == (len(crops), classes)
    np.testing.assert_array_equal(found.labels["expression"], truth["expression"])
    for name in ("valence", "arousal"):
        assert found.metrics[name]["ccc"] == pytest.approx(metrics.ccc(truth[name], averaged[name]), abs=1e-6)
        assert found.metrics[name]["sagr"] == pytest.approx(metrics.sagr(truth[name], averaged[name]), abs=1e-6)
    predicted = averaged["expression"][:, :classes].argmax(axis=1)
    expression = found.metrics["expression"]
    assert expression["accuracy"] == pytest.approx(metrics.accuracy(truth["expression"], predicted))
    assert np.array_equal(expression["confusion"], metrics.confusion_matrix(truth["expression"], predicted, classes))
    assert len(expression["class_names"]) == classes == len(found.metrics["per_class"])
    for k, row in enumerate(found.metrics["per_class"]):
        true_k, predicted_k = truth["expression"] == k, predicted == k
        assert row["n"] == true_k.sum()
        if predicted_k.any():
            assert row["precision"] == pytest.approx((true_k & predicted_k).sum() / predicted_k.sum())
