"""The gRPC client (`predict_grpc`, `va2att.cli.client --grpc`) against TF Serving's PredictionService,
served in-process on 127.0.0.1 and answering with an exported SavedModel, as TF Serving does."""

import json
import socket
import threading
from concurrent import futures

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import TINY_MODEL, write_faces
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from va2att.cli import client
from va2att.config import EXPRESSION_NAMES, ModelConfig
from va2att.model.network import build_model
from va2att.run_dir import MODEL_NAME
from va2att.serving import export
from va2att.serving.remote import predict_grpc
from va2att.serving.request import ServingError, prepare_faces
from va2att.serving.signature import IMAGE_INPUT, OUTPUT_ORDER, SERVING_DEFAULT


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny network exported as TF Serving loads it (`RUN_DIR/export/va2att/1`), then loaded."""
    keras.utils.set_random_seed(1)
    model = build_model(ModelConfig(**TINY_MODEL))
    path = export.export_saved_model(model, tmp_path_factory.mktemp("export") / MODEL_NAME)
    return tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def faces():
    """Three aligned 56x56 grayscale faces (random pixels are enough for the network)."""
    return np.random.default_rng(0).integers(0, 256, (3, 56, 56)).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(saved_model, faces):
    """What the export's `serving_default` itself answers for the faces, called directly."""
    outputs = saved_model.signatures[SERVING_DEFAULT](**{IMAGE_INPUT: tf.constant(prepare_faces(faces))})
    return {name: value.numpy() for name, value in outputs.items()}


def answer_like_tf_serving(saved_model):
    """A Predict handler that does what TF Serving does with a request: find the model by name and the
    signature by key, check the inputs against the signature, run it, answer every output as a tensor."""

    def predict(request, context):
        if request.model_spec.name != MODEL_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({request.model_spec.name})")
        key = request.model_spec.signature_name or SERVING_DEFAULT
        if key not in saved_model.signatures:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{key}" not found.')
        signature = saved_model.signatures[key]
        specs = signature.structured_input_signature[1]
        if set(request.inputs) != set(specs):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"input size does not match signature: {sorted(request.inputs)} != {sorted(specs)}")
        inputs = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
        for name, value in inputs.items():
            if tf.as_dtype(value.dtype) != specs[name].dtype or not specs[name].shape.is_compatible_with(value.shape):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name}: {value.dtype} {value.shape} does not fit {specs[name]}")
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        for name, value in signature(**{k: tf.constant(v) for k, v in inputs.items()}).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return response

    return predict


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's PredictionService; `Predict` is handed to `answer(request, context)`, requests are kept."""

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def Predict(self, request, context):  # the gRPC method's own name
        self.requests.append(request)
        return self.answer(request, context)


@pytest.fixture()
def serve():
    """`serve(answer) -> (target "127.0.0.1:PORT", service)`: a gRPC server in this process, stopped
    (with its worker threads) when the test ends, whatever happened in it."""
    threads_before = set(threading.enumerate())
    running = []

    def start(answer):
        pool = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="prediction-service")
        server = grpc.server(pool)
        service = PredictionService(answer)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
        running.append((server, pool))
        port = server.add_insecure_port("127.0.0.1:0")
        assert port, "no free port on 127.0.0.1"
        server.start()
        return f"127.0.0.1:{port}", service

    yield start
    for server, pool in running:
        server.stop(grace=None).wait(timeout=30)  # cancels RPCs in flight: a held handler returns
        pool.shutdown(wait=True)
    left = [t for t in threading.enumerate() if t not in threads_before]
    for thread in left:
        thread.join(timeout=10)
    assert not [t.name for t in left if t.is_alive()], "the gRPC server left threads running"


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago and has no listener now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_client(capsys, *argv):
    status = client.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_grpc_answers_what_the_saved_model_answers(saved_model, faces, expected, serve):
    target, service = serve(answer_like_tf_serving(saved_model))
    answer = predict_grpc(target, MODEL_NAME, prepare_faces(faces), timeout=60)
    assert list(answer) == list(OUTPUT_ORDER)  # the client's order, whatever order the server gives
    for name, value in expected.items():
        assert answer[name].dtype == np.float32 and answer[name].shape == value.shape
        np.testing.assert_array_equal(answer[name], value)
    # The request names what TF Serving looks up: the model, the signature key, its input.
    (request,) = service.requests
    assert request.model_spec.name == MODEL_NAME == client.DEFAULT_MODEL
    assert request.model_spec.signature_name == SERVING_DEFAULT
    assert not request.model_spec.HasField("version")  # the newest version served
    signature_inputs = saved_model.signatures[SERVING_DEFAULT].structured_input_signature[1]
    assert list(request.inputs) == list(signature_inputs) == [IMAGE_INPUT]
    sent = tf.make_ndarray(request.inputs[IMAGE_INPUT])
    assert sent.dtype == np.float32 and signature_inputs[IMAGE_INPUT].shape.is_compatible_with(sent.shape)
    np.testing.assert_array_equal(sent, prepare_faces(faces))


def test_client_prints_one_line_per_face_over_grpc(saved_model, faces, expected, serve, tmp_path, capsys):
    target, service = serve(answer_like_tf_serving(saved_model))
    paths = write_faces(tmp_path, faces)
    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target, "--timeout", "60")
    assert status == 0, err
    lines = out.splitlines()
    assert len(lines) == len(faces)
    for i, line in enumerate(lines):
        probabilities = expected["expression"][i]
        label = EXPRESSION_NAMES[int(np.argmax(probabilities))]
        assert line == (f"{paths[i]}  face 1  valence {expected['valence'][i, 0]:+.3f}  "
                        f"arousal {expected['arousal'][i, 0]:+.3f}  expression {label} ({probabilities.max():.2f})")
    predictions = [r for r in service.requests if r.model_spec.signature_name == SERVING_DEFAULT]
    assert len(predictions) == 1  # all faces in one request (the other asks for the provenance)

    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target, "--timeout", "60", "--json")
    assert status == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["image"] for r in records] == paths
    for i, record in enumerate(records):
        np.testing.assert_allclose(record["valence"], expected["valence"][i, 0], rtol=1e-6)
        np.testing.assert_allclose(record["arousal"], expected["arousal"][i, 0], rtol=1e-6)
        np.testing.assert_allclose(record["expression"], expected["expression"][i], rtol=1e-6)


def test_client_reports_a_server_that_is_not_running(faces, tmp_path, capsys):
    target = f"127.0.0.1:{free_port()}"
    paths = write_faces(tmp_path, faces[:1])
    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target, "--timeout", "60")
    assert status == 1 and out == ""
    assert err.count("\n") == 1 and f"Cannot connect to TF Serving gRPC at {target}" in err


def test_a_slow_server_ends_at_the_deadline(faces, serve):
    seen = {}

    def hold(request, context):
        """Never answers: waits until the call ends (the client's deadline, or the server stopping)."""
        seen["deadline"] = context.time_remaining()
        ended = threading.Event()
        if context.add_callback(ended.set):
            ended.wait(60)
        context.abort(grpc.StatusCode.INTERNAL, "the call outlived its deadline")

    target, _ = serve(hold)
    with pytest.raises(ServingError) as error:
        predict_grpc(target, MODEL_NAME, prepare_faces(faces[:1]), timeout=1)
    assert str(error.value) == f"No answer from TF Serving gRPC at {target} within 1 s (timed out)"
    # The client's timeout travels as the call's deadline (without one the server sees years left).
    # A server too busy to reach the handler before the deadline never calls it, which also shows one.
    assert seen.get("deadline", 0.0) < 1.5


def test_client_reports_the_servers_error_in_one_line(saved_model, faces, serve, tmp_path, capsys):
    message = "input size does not match signature: 1!=2 len({image}) != len({image,extra})"

    def refuse(request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)

    target, _ = serve(refuse)
    paths = write_faces(tmp_path, faces[:1])
    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target)
    assert status == 1 and out == ""
    assert err == f"error: TF Serving gRPC at {target} answered INVALID_ARGUMENT: {message}\n"

    # A model name the server does not serve: TF Serving's NOT_FOUND, also in one line.
    target, _ = serve(answer_like_tf_serving(saved_model))
    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target, "--model", "other")
    assert status == 1 and out == ""
    assert err == f"error: TF Serving gRPC at {target} answered NOT_FOUND: Servable not found for request: Latest(other)\n"


def test_client_reports_a_wrong_number_of_answers_over_grpc(faces, serve, tmp_path, capsys):
    def one_answer(request, context):
        response = predict_pb2.PredictResponse()
        for name in ("valence", "arousal"):
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.zeros((1, 1), np.float32)))
        return response

    target, _ = serve(one_answer)
    paths = write_faces(tmp_path, faces[:2])
    status, out, err = run_client(capsys, *paths, "--aligned", "--grpc", target)
    assert status == 1 and out == "" and "2 were sent" in err and err.count("\n") == 1


def test_the_version_asked_for_is_the_version_the_request_names(saved_model, faces, serve, tmp_path, capsys):
    target, service = serve(answer_like_tf_serving(saved_model))
    status, out, _ = run_client(capsys, *write_faces(tmp_path, faces), "--aligned", "--grpc", target, "--version", "3")
    assert status == 0 and out.count("\n") == len(faces)
    assert [r.model_spec.version.value for r in service.requests] == [3, 3]  # the prediction and the provenance


def test_a_model_trained_on_drawn_faces_is_named_over_grpc_too(faces, serve, tmp_path, tmp_path_factory, capsys,
                                                               monkeypatch):
    from va2att.serving import provenance

    monkeypatch.setattr(provenance, "_warned", set())  # the warning is once per model and process
    keras.utils.set_random_seed(2)
    model = build_model(ModelConfig(**TINY_MODEL))
    record = {"data": {"kind": "synthetic", "name": "the demo set", "training_faces": 6000}}
    path = export.export_saved_model(model, tmp_path_factory.mktemp("export") / MODEL_NAME, provenance=record)
    target, service = serve(answer_like_tf_serving(tf.saved_model.load(str(path))))
    status, out, err = run_client(capsys, *write_faces(tmp_path, faces), "--aligned", "--grpc", target)
    assert status == 0 and out.count("\n") == len(faces)
    assert "was trained on the demo set (6000 faces)" in err
    assert [r.model_spec.signature_name for r in service.requests] == [SERVING_DEFAULT, "provenance"]
