"""The served outputs are described once (`va2att.serving.signature.SERVED_OUTPUTS`): a new output is one entry.

A network with a fourth output, `dominance` (a score like valence and arousal), is exported, loaded,
answered over REST, printed by the client and reported by the Predictor, predict's table and CSV and the
annotated picture, with no other change than its entry in the description.
"""

import csv
import io
import json

import cv2
import keras
import numpy as np
import pytest

from va2att.cli import client
from va2att.cli import predict as predict_cli
from va2att.faces.detection import Detection
from va2att.prediction.annotate import face_label
from va2att.prediction.csv_rows import CsvWriter
from va2att.prediction.predictor import Predictor
from va2att.serving import export, loading, signature
from va2att.serving.request import parse_predict_response
from va2att.serving.signature import SCORE, ServedOutput


@pytest.fixture
def dominance(monkeypatch):
    """The description with one more output: the only change a new output needs besides its head."""
    monkeypatch.setattr(signature, "SERVED_OUTPUTS", (*signature.SERVED_OUTPUTS, ServedOutput("dominance", SCORE, "D")))


def four_output_model(extra="dominance", width=1):
    keras.utils.set_random_seed(3)
    image = keras.Input((48, 48, 1), name="image")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 5, strides=4)(keras.layers.Rescaling(1 / 255)(image)))
    outputs = {name: keras.layers.Dense(1, activation="tanh", name=name)(x) for name in ("valence", "arousal")}
    outputs["expression"] = keras.layers.Dense(8, activation="softmax", name="expression")(x)
    outputs[extra] = keras.layers.Dense(width, activation="tanh", name=extra)(x)
    return keras.Model(image, outputs)


class OneFace:
    """Stands in for MTCNN: one face whose five points sit where the alignment template puts them."""

    def detect(self, image):
        points = np.array([[19, 22], [37, 22], [28, 32.5], [20.5, 42.5], [35.5, 42.5]]) * 2 + 10
        return [Detection((10.0, 10.0, 112.0, 112.0), points, 0.99)]


def test_a_new_score_output_is_one_entry_in_the_description(dominance, tmp_path, capsys):
    path = export.export_saved_model(four_output_model(), tmp_path / "va2att")
    meta = json.loads((path / export.METADATA_FILE).read_text())
    assert meta["served_outputs"]["dominance"]["kind"] == SCORE and meta["outputs"]["dominance"] == [None, 1]

    model = loading.load_inference_model(path)
    assert model.outputs == ("valence", "arousal", "expression", "dominance")
    empty = model(np.zeros((0, 48, 48, 1), np.float32))
    assert {name: value.shape for name, value in empty.items()} == {
        "valence": (0, 1), "arousal": (0, 1), "expression": (0, 8), "dominance": (0, 1)}

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(2).integers(0, 256, (140, 150, 3)).astype(np.uint8))
    (face,) = Predictor(path, detector=OneFace()).predict(photo)
    assert list(face.scores) == ["valence", "arousal", "dominance"] and -1 <= face.scores["dominance"] <= 1
    assert face.to_dict()["dominance"] == face.scores["dominance"]
    assert f"D {face.scores['dominance']:+.2f}" in face_label(face)

    (result,) = Predictor(path, detector=OneFace()).predict_many([photo])
    table = predict_cli.format_table([result])
    assert table.splitlines()[0].split()[-2:] == ["dominance", "expression"]
    assert f"{face.scores['dominance']:+.3f}" in table
    text = io.StringIO()
    CsvWriter(text, ()).write(result)
    (row,) = csv.DictReader(io.StringIO(text.getvalue()))
    assert float(row["dominance"]) == pytest.approx(face.scores["dominance"], abs=1e-4)

    answer = {"predictions": [{"valence": [0.1], "arousal": [0.2], "dominance": [-0.3], "expression": [0.125] * 8}]}
    outputs = parse_predict_response(json.dumps(answer), count=1)
    assert list(outputs) == ["valence", "arousal", "expression", "dominance"]
    line = client.format_face(client.Face("photo.png", 0, None), outputs, 0)
    assert line.endswith("dominance -0.300") and "expression Neutral (0.12)" in line
    assert client._face_json(client.Face("photo.png", 0, None), outputs, 0)["dominance"] == pytest.approx(-0.3)


def test_an_unknown_output_is_refused_by_the_export_until_it_is_described(tmp_path):
    with pytest.raises(ValueError, match="dominance is not a served output"):
        export.export_saved_model(four_output_model(), tmp_path / "va2att")


def test_an_empty_batch_has_each_outputs_own_width(tmp_path):
    # A .keras model may carry an output va2att does not serve; its width comes from the model, not a guess.
    four_output_model("landmarks", width=10).save(tmp_path / "model.keras")
    model = loading.load_inference_model(tmp_path / "model.keras")
    empty = model(np.zeros((0, 48, 48, 1), np.float32))
    assert empty["landmarks"].shape == (0, 10) and empty["expression"].shape == (0, 8)
    assert model(np.zeros((2, 48, 48, 1), np.float32))["landmarks"].shape == (2, 10)
