"""TF Serving REST bodies through the exported SavedModel, and the client against a stand-in server."""

import base64
import contextlib
import http.server
import json
import socket
import threading
import time

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL, write_faces

from va2att.cli import client
from va2att.config import EXPRESSION_NAMES, ModelConfig
from va2att.faces.detection import Detection
from va2att.model.network import build_model
from va2att.serving import export, request
from va2att.serving.signature import IMAGE_INPUT


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(1)
    return build_model(ModelConfig(**TINY_MODEL))


@pytest.fixture(scope="module")
def signatures(model, tmp_path_factory):
    path = export.export_saved_model(model, tmp_path_factory.mktemp("export") / "va2att")
    loaded = tf.saved_model.load(str(path))
    return loaded, loaded.signatures


@pytest.fixture(scope="module")
def faces():
    """Three aligned 56x56 grayscale faces (random pixels are enough for the network)."""
    return np.random.default_rng(0).integers(0, 256, (3, 56, 56)).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(model, faces):
    return model.predict(faces[:, 4:52, 4:52, None].astype("float32"), verbose=0)


def instances_to_inputs(data: dict) -> dict[str, np.ndarray]:
    """What TF Serving makes of a parsed row-format body: `{input name: batched array}` (pixel inputs only)."""
    instances = data["instances"]
    if instances and all(isinstance(i, dict) for i in instances):
        return {name: np.asarray([i[name] for i in instances], dtype=np.float32) for name in instances[0]}
    return {IMAGE_INPUT: np.asarray(instances, dtype=np.float32)}


def outputs_to_response(outputs: dict) -> dict:
    """What TF Serving answers to a row-format request, given the signature's outputs."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    arrays = {name: value.astype(str) if value.dtype == object else value for name, value in arrays.items()}  # strings: UTF-8
    if len(arrays) == 1:
        return {"predictions": next(iter(arrays.values())).tolist()}
    count = len(next(iter(arrays.values())))
    return {"predictions": [{name: value[i].tolist() for name, value in arrays.items()} for i in range(count)]}


def serve_body(signatures, body: bytes) -> dict:
    """What TF Serving does with a row-format body: parse, batch, run the named signature, answer."""
    data = json.loads(body)
    fn = signatures[data.get("signature_name", "serving_default")]
    if data.get("signature_name") == "serving_bytes":
        blobs = [base64.b64decode(i["image_bytes"]["b64"]) for i in data["instances"]]
        outputs = fn(image_bytes=tf.constant(blobs))
    else:
        outputs = fn(**{k: tf.constant(v) for k, v in instances_to_inputs(data).items()})
    return outputs_to_response({k: v.numpy() for k, v in outputs.items()})


@contextlib.contextmanager
def fake_server(respond, lifetime=60.0):
    """An HTTP server on 127.0.0.1 answering POSTs with `respond(path, body) -> (status, bytes)`.

    It runs in a daemon thread and shuts down when the block ends, or after `lifetime` seconds.
    """
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers.get("Content-Type"), body))
            status, payload = respond(self.path, body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    guard = threading.Timer(lifetime, server.shutdown)
    guard.daemon = True
    guard.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        guard.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_client_body_through_the_saved_model_matches_keras(signatures, faces, expected):
    _, sigs = signatures
    body = request.build_predict_body(request.prepare_faces(faces))
    assert body["signature_name"] == "serving_default" and len(body["instances"]) == 3
    first = body["instances"][0]["image"]
    assert list(body["instances"][0]) == ["image"] and len(first) == 48 and len(first[0]) == 48
    assert first[0][0] == [int(faces[0, 4, 4])]  # whole-number pixels travel as JSON integers
    parsed = json.loads(request.encode_body(body))  # exactly what the server receives
    outputs = sigs["serving_default"](**{k: tf.constant(v) for k, v in instances_to_inputs(parsed).items()})
    for name in expected:
        np.testing.assert_allclose(outputs[name].numpy(), expected[name], atol=1e-5)
    answer = request.parse_predict_response(json.dumps(serve_body(sigs, request.encode_body(body))))
    assert list(answer) == ["valence", "arousal", "expression"]
    for name in expected:
        np.testing.assert_allclose(answer[name], expected[name], atol=1e-5)


def test_bytes_body_through_the_saved_model_matches_keras(signatures, faces, expected):
    _, sigs = signatures
    body = request.build_bytes_body(cv2.imencode(".png", f)[1].tobytes() for f in faces)
    assert body["signature_name"] == "serving_bytes" and set(body["instances"][0]["image_bytes"]) == {"b64"}
    answer = request.parse_predict_response(serve_body(sigs, request.encode_body(body)))
    assert answer["error"].tolist() == ["", "", ""]  # every image decoded
    for name in expected:
        np.testing.assert_allclose(answer[name], expected[name], atol=1e-4)


def test_prepare_faces_and_urls():
    assert request.prepare_faces(np.zeros((2, 56, 56), np.uint8)).shape == (2, 48, 48, 1)
    assert request.prepare_faces(np.zeros((2, 48, 48, 1))).dtype == np.float32
    with pytest.raises(ValueError, match="56, 56"):
        request.prepare_faces(np.zeros((2, 64, 64)))
    with pytest.raises(ValueError):
        request.build_predict_body(np.full((1, 48, 48, 1), np.nan))
    for value in (3.4e38, -1.0, 256.0):  # the server refuses them; the client says so before sending
        with pytest.raises(ValueError, match="from 0 to 255"):
            request.build_predict_body(np.full((1, 48, 48, 1), value, np.float32))
    assert request.predict_url("http://127.0.0.1:8501/", "va2att") == "http://127.0.0.1:8501/v1/models/va2att:predict"
    assert request.predict_url("host:8501", "m", 3) == "http://host:8501/v1/models/m/versions/3:predict"
    fractional = request.build_predict_body(np.full((1, 48, 48, 1), 0.5, np.float32))
    assert fractional["instances"][0]["image"][0][0] == [0.5]


def test_parse_response_formats_and_errors():
    rows = {"predictions": [{"expression": [0.1, 0.9], "valence": [0.5], "arousal": [-0.5]}]}
    out = request.parse_predict_response(json.dumps(rows).encode())
    assert list(out) == ["valence", "arousal", "expression"] and out["expression"].shape == (1, 2)
    assert request.parse_predict_response({"predictions": [[0.25], [0.5]]}, ["valence"])["valence"].shape == (2, 1)
    assert request.parse_predict_response({"outputs": {"valence": [[0.1]]}})["valence"][0, 0] == np.float32(0.1)
    with pytest.raises(request.ServingError, match="TF Serving error: bad input"):
        request.parse_predict_response('{"error": "bad\\n input"}')
    with pytest.raises(request.ServingError, match="not answer with JSON"):
        request.parse_predict_response(b"<html>502 Bad Gateway</html>")
    with pytest.raises(request.ServingError, match="no 'predictions'"):
        request.parse_predict_response({"result": 1})


def _run_client(capsys, *argv):
    status = client.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_client_round_trip_against_a_stand_in_server(signatures, faces, expected, tmp_path, capsys):
    _, sigs = signatures
    paths = write_faces(tmp_path, faces)
    with fake_server(lambda path, body: (200, json.dumps(serve_body(sigs, body)).encode())) as (url, received):
        status, out, err = _run_client(capsys, *paths, "--aligned", "--url", url, "--timeout", "20")
        assert status == 0, err
        status_json, out_json, _ = _run_client(capsys, *paths, "--aligned", "--url", url, "--json")
    assert status_json == 0
    # ONE predict request per invocation, for all faces (besides the small query of the model's provenance)
    received = [r for r in received if json.loads(r[2]).get("signature_name") != "provenance"]
    assert len(received) == 2
    path, content_type, body = received[0]
    assert path == "/v1/models/va2att:predict" and content_type == "application/json"
    assert len(json.loads(body)["instances"]) == 3
    lines = out.strip().splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        label = EXPRESSION_NAMES[int(np.argmax(expected["expression"][i]))]
        assert line.startswith(f"{paths[i]}  face 1  valence {expected['valence'][i, 0]:+.3f}")
        assert f"arousal {expected['arousal'][i, 0]:+.3f}" in line and f"expression {label} (" in line
    records = [json.loads(line) for line in out_json.strip().splitlines()]
    for i, record in enumerate(records):
        assert record["image"] == paths[i]
        np.testing.assert_allclose(record["valence"], expected["valence"][i, 0], atol=1e-5)
        np.testing.assert_allclose(record["expression"], expected["expression"][i], atol=1e-5)


def test_client_reports_a_refused_connection(faces, tmp_path, capsys):
    paths = write_faces(tmp_path, faces[:1])
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    status, out, err = _run_client(capsys, *paths, "--aligned", "--url", f"http://127.0.0.1:{port}")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "connection refused" in err and f"127.0.0.1:{port}" in err


def test_client_reports_a_tf_serving_error_body(faces, tmp_path, capsys):
    paths = write_faces(tmp_path, faces[:1])
    message = 'Failed to process element: 0 key: image of \'instances\' list. Error: Invalid argument: JSON object: does not have named input: image'
    with fake_server(lambda path, body: (400, json.dumps({"error": message}).encode())) as (url, _):
        status, out, err = _run_client(capsys, *paths, "--aligned", "--url", url)
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and "HTTP 400" in err and "does not have named input: image" in err


def test_client_reports_a_timeout(faces, tmp_path, capsys):
    paths = write_faces(tmp_path, faces[:1])

    def slow(path, body):
        time.sleep(1.5)
        return 200, b'{"predictions": []}'

    with fake_server(slow) as (url, _):
        started = time.monotonic()
        status, _, err = _run_client(capsys, *paths, "--aligned", "--url", url, "--timeout", "0.3")
    assert status == 1 and "timed out" in err and err.count("\n") == 1
    assert time.monotonic() - started < 10


def test_client_reports_a_wrong_number_of_answers(faces, tmp_path, capsys):
    paths = write_faces(tmp_path, faces[:2])
    answer = json.dumps({"predictions": [{"valence": [0.0], "arousal": [0.0]}]}).encode()
    with fake_server(lambda path, body: (200, answer)) as (url, _):
        status, _, err = _run_client(capsys, *paths, "--aligned", "--url", url)
    assert status == 1 and "2 were sent" in err


def test_client_arguments_and_missing_files(tmp_path, capsys):
    status, _, err = _run_client(capsys, str(tmp_path / "missing.jpg"))
    assert status == 2 and "no such file" in err
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    status, _, err = _run_client(capsys, str(tmp_path / "broken.jpg"), "--aligned")
    assert status == 1 and "skipped" in err and "no face to send" in err


def test_client_grpc_needs_the_extra(faces, tmp_path, capsys, monkeypatch):
    # Without tensorflow-serving-api (installed or not here): None in sys.modules makes its import fail.
    import sys

    for name in ["tensorflow_serving", "tensorflow_serving.apis",
                 *(m for m in list(sys.modules) if m.startswith("tensorflow_serving."))]:
        monkeypatch.setitem(sys.modules, name, None)
    paths = write_faces(tmp_path, faces[:1])
    status, _, err = _run_client(capsys, *paths, "--aligned", "--grpc", "127.0.0.1:8500")
    assert status == 1 and "pip install 'va2att[grpc]'" in err and err.count("\n") == 1


class StubDetector:
    """Stands in for MTCNN: one face whose eyes, nose and mouth sit where the template puts them."""

    def detect(self, image):
        points = np.array([[19, 22], [37, 22], [28, 32.5], [20.5, 42.5], [35.5, 42.5]]) * 2 + 10
        return [Detection((10.0, 10.0, 112.0, 112.0), points, 0.99)]


def test_find_faces_detects_and_aligns(tmp_path):
    photo = np.random.default_rng(2).integers(0, 256, (140, 150, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    images, where = client.find_faces([tmp_path / "photo.png"], detector=StubDetector())
    assert images.shape == (1, 48, 48, 1) and images.dtype == np.float32
    assert where[0].index == 0 and where[0].box == (10.0, 10.0, 112.0, 112.0)


class FailsOnSmallPictures(StubDetector):
    """A detector that fails on one picture (a ValueError from inside detection or alignment)."""

    def detect(self, image):
        if image.height < 100:
            raise ValueError("cannot search this picture")
        return super().detect(image)


def test_find_faces_skips_an_image_that_fails_and_keeps_the_others(tmp_path):
    rng = np.random.default_rng(2)
    cv2.imwrite(str(tmp_path / "small.png"), rng.integers(0, 256, (60, 60, 3)).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "photo.png"), rng.integers(0, 256, (140, 150, 3)).astype(np.uint8))
    logged = []
    images, where = client.find_faces([tmp_path / "small.png", tmp_path / "photo.png"],
                                      detector=FailsOnSmallPictures(), log=logged.append)
    assert len(images) == 1 and where[0].path == str(tmp_path / "photo.png")
    assert logged == [f"{tmp_path / 'small.png'}: skipped (cannot search this picture)"]


def test_client_warns_when_the_served_model_learnt_synthetic_faces(signatures, faces, tmp_path, capsys):
    _, sigs = signatures
    paths = write_faces(tmp_path, faces)
    record = {"data": {"kind": "synthetic", "name": "the built-in synthetic demo set (drawn faces)"}}

    def answer(path, body):
        if json.loads(body).get("signature_name") == "provenance":  # what the export's provenance signature says
            return 200, json.dumps({"outputs": {"provenance": json.dumps(record)}}).encode()
        return 200, json.dumps(serve_body(sigs, body)).encode()

    with fake_server(answer) as (url, _):
        status, _, err = _run_client(capsys, *paths, "--aligned", "--url", url)
    assert status == 0 and "synthetic demo set" in err and "mean nothing" in err
