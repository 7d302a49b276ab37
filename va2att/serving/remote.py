"""Calls to a TF Serving instance that serves the exported va2att model, over REST or gRPC.

`post_predict(url, body, timeout)` sends one predict body (`va2att.serving.request`) and parses the
answer; `predict_grpc(target, model, images, timeout)` makes the same call over gRPC (the optional
extra `va2att[grpc]`). Every failure is a `ServingError` with a one-line message; `within_deadline`
bounds a whole exchange (connecting, sending, reading), so a server that trickles its answer cannot
hold the caller. The command-line client is `va2att.cli.client` (`python -m va2att.serving.client`).
"""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.error
import urllib.request

import numpy as np

from va2att.serving.request import (
    ServingError,
    encode_body,
    error_message,
    parse_predict_response,
)
from va2att.serving.signature import IMAGE_INPUT, SERVING_DEFAULT, order_outputs


def post_predict(url: str, body: dict, timeout: float) -> dict[str, np.ndarray]:
    """POST one predict body to a TF Serving REST endpoint and parse the answer.

    Raises ServingError with a one-line message for HTTP errors (TF Serving's `{"error": ...}`
    text included), refused or failed connections, timeouts and malformed answers.
    """
    request = urllib.request.Request(
        url, data=encode_body(body), method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        payload = within_deadline(lambda: _post(request, timeout), timeout)
    except urllib.error.HTTPError as error:
        try:
            raw = error.read()
        except (OSError, ValueError):
            raw = b""
        finally:
            error.close()
        detail = error_message(raw) or " ".join(raw.decode("utf-8", "replace").split())[:200] or error.reason
        raise ServingError(f"TF Serving at {url} answered HTTP {error.code}: {detail}") from None
    except urllib.error.URLError as error:
        raise ServingError(_connection_message(url, error.reason, timeout)) from None
    except TimeoutError:
        raise ServingError(_connection_message(url, TimeoutError(), timeout)) from None
    except ConnectionError as error:
        raise ServingError(_connection_message(url, error, timeout)) from None
    except (http.client.HTTPException, OSError) as error:  # a cut answer (IncompleteRead), a reset
        raise ServingError(f"The answer of TF Serving at {url} broke off: {type(error).__name__}: {error}") from None
    return parse_predict_response(payload)


def _post(request, timeout: float) -> bytes:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def within_deadline(call, seconds: float):
    """`call()`'s result, or TimeoutError once `seconds` have passed in all (connecting, sending and
    reading included: a server that trickles its answer cannot hold the client longer)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=run, daemon=True)  # left behind on a timeout; its socket times out too
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TimeoutError(f"no complete answer within {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _connection_message(url: str, reason, timeout: float) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"Cannot connect to TF Serving at {url}: connection refused (is the server running? see docs/serving.md)"
    if isinstance(reason, TimeoutError):
        return f"No answer from TF Serving at {url} within {timeout:g} s (timed out)"
    if isinstance(reason, socket.gaierror):
        return f"Cannot resolve the TF Serving host in {url}: {reason.strerror or reason}"
    text = getattr(reason, "strerror", None) or str(reason)
    return f"Cannot reach TF Serving at {url}: {text}"


def predict_grpc(
    target: str, model: str, images: np.ndarray, timeout: float, signature: str = SERVING_DEFAULT
) -> dict[str, np.ndarray]:
    """One gRPC Predict call (`tensorflow-serving-api`, the optional extra `va2att[grpc]`)."""
    try:
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        raise ServingError(
            "--grpc needs the optional gRPC extra: pip install 'va2att[grpc]' (installs tensorflow-serving-api)"
        ) from None
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    request.inputs[IMAGE_INPUT].CopyFrom(tf.make_tensor_proto(np.asarray(images, np.float32)))
    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(f"Cannot connect to TF Serving gRPC at {target}: {error.details()}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(f"No answer from TF Serving gRPC at {target} within {timeout:g} s (timed out)") from None
            raise ServingError(f"TF Serving gRPC at {target} answered {code.name}: {error.details()}") from None
    return order_outputs({name: tf.make_ndarray(proto).astype(np.float32) for name, proto in response.outputs.items()})
