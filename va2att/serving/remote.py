"""Calls to a TF Serving instance that serves the exported va2att model, over REST or gRPC.

`post_predict(url, body, deadline)` sends one predict body (`va2att.serving.request`) and parses the
answer; `served_provenance(url, deadline)` asks the same server where its model comes from;
`predict_grpc(target, model, images, timeout)` makes the predict call over gRPC (the optional extra
`va2att[grpc]`). The command-line client is `va2att.cli.client` (`python -m va2att.serving.client`).

What every call promises, whatever the server does:

- one `Deadline` bounds everything a caller does (connecting, sending, reading, and the calls after
  the first): a server that trickles its answer, or answers the first call at once and trickles the
  next, cannot hold the caller past it;
- every answer is read with a bound (`MAX_ANSWER_BYTES`, `MAX_ERROR_BYTES`, `MAX_PROVENANCE_BYTES`;
  gRPC: its receive limit), so a server cannot make the caller hold more than that in memory;
- redirects are not followed (a 3xx answer is an error naming where it points): the address given is
  the one called, checked as `va2att.serving.request.predict_url` checks it (http or https only);
- every failure is a `ServingError` with a one-line message, and an answer that does not fit the
  served outputs (`va2att.serving.signature`) is one too.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from urllib.parse import urlsplit

import numpy as np

from va2att.serving.request import (
    ServingError,
    check_answer,
    encode_body,
    error_message,
    parse_predict_response,
)
from va2att.serving.signature import IMAGE_INPUT, SERVING_DEFAULT, order_outputs

MAX_ANSWER_BYTES = 64 * 2**20  # a predict answer: about 200 bytes a face, so some 300,000 faces
MAX_ERROR_BYTES = 64 * 2**10  # an error answer: TF Serving's message, kept for the one line printed
MAX_PROVENANCE_BYTES = 2**20  # the provenance signature's answer (a few hundred bytes of JSON)
_READ_CHUNK = 2**16
_JOIN_AFTER_CANCEL = 10.0  # seconds to wait for the exchange's thread once its socket is shut down


class Deadline:
    """A point in time, `seconds` from now, that a whole exchange (several calls) must end by."""

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() <= 0.0


def _deadline(timeout: float | Deadline) -> Deadline:
    return timeout if isinstance(timeout, Deadline) else Deadline(timeout)


def post_predict(url: str, body: dict, timeout: float | Deadline, count: int | None = None) -> dict[str, np.ndarray]:
    """POST one predict body to a TF Serving REST endpoint and parse the answer.

    Args:
        url: the predict endpoint (`va2att.serving.request.predict_url`).
        body: the request body (`build_predict_body` or `build_bytes_body`).
        timeout: seconds, or a `Deadline` shared with other calls: the whole exchange ends by then.
        count: the faces sent; when given, the answer is checked against it and the served outputs.

    Raises ServingError with a one-line message for HTTP errors (TF Serving's `{"error": ...}` text
    included), redirects, refused or failed connections, timeouts, answers over `MAX_ANSWER_BYTES` and
    answers of the wrong shape.
    """
    payload = post_json(url, encode_body(body), _deadline(timeout), MAX_ANSWER_BYTES)
    return parse_predict_response(payload, count=count)


def served_provenance(url: str, timeout: float | Deadline) -> dict | None:
    """The `provenance` record of the model that a REST predict `url` serves (`va2att.serving.provenance`).

    None when the server does not answer it with a record (an export made before provenance existed
    answers an HTTP error; an answer of another shape is no record either). Raises ServingError when the
    deadline passes or the server cannot be reached, as `post_predict` does.
    """
    body = json.dumps({"signature_name": "provenance", "inputs": {}}).encode()
    try:
        payload = post_json(url, body, _deadline(timeout), MAX_PROVENANCE_BYTES)
    except _HTTPStatusError:
        return None
    try:
        answer = json.loads(payload)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        text = outputs.get("provenance") if isinstance(outputs, dict) else outputs
        record = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class _HTTPStatusError(ServingError):
    """The server answered with an HTTP status other than 200."""


def post_json(url: str, body: bytes, deadline: Deadline, max_bytes: int) -> bytes:
    """POST `body` (JSON) to `url` and return the answer's bytes (at most `max_bytes`), all by `deadline`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServingError(f"Cannot call {url!r}: only http:// and https:// addresses with a host are supported")
    if deadline.expired():
        raise ServingError(_failure_message(url, TimeoutError(), deadline))
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=deadline.remaining())
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def exchange():
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        limit = max_bytes if response.status == 200 else MAX_ERROR_BYTES
        return response.status, response.getheader("Location"), _read_bounded(response, limit)

    try:
        status, location, payload = _within(exchange, deadline, lambda: _shut_down(connection))
    except (OSError, http.client.HTTPException, _AnswerTooLarge) as error:
        raise ServingError(_failure_message(url, error, deadline)) from None
    finally:
        connection.close()
    if 300 <= status < 400:
        raise _HTTPStatusError(f"TF Serving at {url} answered HTTP {status}, a redirect to {location or '?'}: the "
                               "client does not follow redirects; give the final address with --url")
    if status != 200:
        detail = error_message(payload) or " ".join(payload.decode("utf-8", "replace").split())[:200]
        raise _HTTPStatusError(f"TF Serving at {url} answered HTTP {status}: {detail or http.client.responses.get(status, '')}")
    return payload


class _AnswerTooLarge(Exception):
    def __init__(self, limit: int):
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


def _read_bounded(response: http.client.HTTPResponse, limit: int) -> bytes:
    """The whole body of `response`, or `_AnswerTooLarge` as soon as it exceeds `limit` bytes."""
    length = response.getheader("Content-Length")
    if length is not None and length.strip().isdigit():
        if int(length) > limit:
            raise _AnswerTooLarge(limit)
        return response.read()  # exactly Content-Length bytes, or IncompleteRead
    chunks, size = [], 0
    while chunk := response.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _AnswerTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _shut_down(connection: http.client.HTTPConnection) -> None:
    """Wake the thread blocked on `connection`'s socket: its next (or current) read fails at once."""
    sock = connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _within(call, deadline: Deadline, cancel):
    """`call()`'s result, or TimeoutError once `deadline` passes; then `cancel()` ends the call and its thread
    is joined, so nothing is left running."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome["error"] = error

    worker = threading.Thread(target=run, name="va2att-serving-call", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        cancel()
        worker.join(_JOIN_AFTER_CANCEL)
        raise TimeoutError(f"no complete answer within {deadline.seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _failure_message(url: str, error: BaseException, deadline: Deadline) -> str:
    if isinstance(error, _AnswerTooLarge):
        return (f"The answer of TF Serving at {url} is larger than {error.limit} bytes, the most the client reads; "
                "send fewer faces per call")
    if isinstance(error, ConnectionRefusedError):
        return f"Cannot connect to TF Serving at {url}: connection refused (is the server running? see docs/serving.md)"
    if isinstance(error, TimeoutError) or deadline.expired():
        return f"No answer from TF Serving at {url} within {deadline.seconds:g} s (timed out)"
    if isinstance(error, socket.gaierror):
        return f"Cannot resolve the TF Serving host in {url}: {error.strerror or error}"
    if isinstance(error, (http.client.HTTPException, ConnectionError)):  # a cut answer (IncompleteRead), a reset
        return f"The answer of TF Serving at {url} broke off: {type(error).__name__}: {error}"
    return f"Cannot reach TF Serving at {url}: {getattr(error, 'strerror', None) or error}"


def predict_grpc(
    target: str, model: str, images: np.ndarray, timeout: float | Deadline, signature: str = SERVING_DEFAULT,
    version: int | None = None,
) -> dict[str, np.ndarray]:
    """One gRPC Predict call (`tensorflow-serving-api`, the optional extra `va2att[grpc]`) to `version` of
    `model` (None: the newest served).

    `timeout` (seconds, or a `Deadline` shared with other calls) is gRPC's deadline for the whole call; the
    answer is read up to `MAX_ANSWER_BYTES` and checked against the images sent and the served outputs,
    as `post_predict` does."""
    import tensorflow as tf

    request = _grpc_request(model, signature, version)
    request.inputs[IMAGE_INPUT].CopyFrom(tf.make_tensor_proto(np.asarray(images, np.float32)))
    outputs = _grpc_predict(target, request, _deadline(timeout))
    numeric = {name: value if value.dtype == object else value.astype(np.float32) for name, value in outputs.items()}
    return check_answer(order_outputs(numeric), len(images))


def grpc_provenance(target: str, model: str, timeout: float | Deadline, version: int | None = None) -> dict | None:
    """The `provenance` record of the model served over gRPC at `target`, as `served_provenance` asks it over
    REST: None when the model has no such signature or answers something that is no record."""
    request = _grpc_request(model, "provenance", version)
    try:
        outputs = _grpc_predict(target, request, _deadline(timeout), missing_ok=True)
    except _NoSuchSignature:
        return None
    value = outputs.get("provenance")
    try:
        text = value.reshape(-1)[0] if value is not None and value.size == 1 else None
        record = json.loads(text) if isinstance(text, (str, bytes)) else None
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class _NoSuchSignature(ServingError):
    """The served model has no signature of the asked name."""


def _grpc_request(model: str, signature: str, version: int | None):
    try:
        from tensorflow_serving.apis import predict_pb2
    except ImportError:
        raise ServingError(
            "--grpc needs the optional gRPC extra: pip install 'va2att[grpc]' (installs tensorflow-serving-api)"
        ) from None
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    return request


def _grpc_predict(target: str, request, deadline: Deadline, missing_ok: bool = False) -> dict[str, np.ndarray]:
    """Send one PredictRequest within `deadline`; its outputs as arrays. Every failure is one ServingError line."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    timeout = deadline.remaining()
    if timeout <= 0:
        raise ServingError(f"No answer from TF Serving gRPC at {target} within {deadline.seconds:g} s (timed out)")
    options = [("grpc.max_receive_message_length", MAX_ANSWER_BYTES)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ServingError(f"Cannot connect to TF Serving gRPC at {target}: {error.details()}") from None
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ServingError(f"No answer from TF Serving gRPC at {target} within {deadline.seconds:g} s "
                                   "(timed out)") from None
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise ServingError(f"The answer of TF Serving gRPC at {target} is larger than {MAX_ANSWER_BYTES} "
                                   "bytes, the most the client reads; send fewer faces per call") from None
            if missing_ok and code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                                       grpc.StatusCode.INVALID_ARGUMENT):
                raise _NoSuchSignature(error.details()) from None
            raise ServingError(f"TF Serving gRPC at {target} answered {code.name}: {error.details()}") from None
    try:
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}
    except (TypeError, ValueError) as error:
        raise ServingError(f"TF Serving gRPC at {target} answered tensors that cannot be read: {error}") from None
