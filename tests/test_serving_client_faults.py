"""The serving client against hostile servers and bad arguments: one line, the right exit status, on time."""

import contextlib
import json
import socket
import threading
import time

import cv2
import numpy as np
import pytest

from va2att.cli import client
from va2att.serving import request


@pytest.fixture
def face(tmp_path):
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), np.random.default_rng(0).integers(0, 256, (56, 56), dtype=np.uint8))
    return str(path)


GOOD_ROW = {"valence": [0.25], "arousal": [-0.5], "expression": [0.1, 0.6, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]}


def http_answer(body: bytes, status: str = "200 OK", headers: str = "Content-Type: application/json\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body


@contextlib.contextmanager
def raw_server(answer):
    """A one-connection-at-a-time TCP server on 127.0.0.1. After reading each whole request it calls
    `answer(conn, stop)`, or `answer[signature_name](conn, stop)` when `answer` is a dict, which writes whatever
    it likes. Yields (base URL, the signature names requested)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()
    received = []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError, ValueError):
                    body = read_request(conn)
                    name = json.loads(body or b"{}").get("signature_name", "serving_default")
                    received.append(name)
                    (answer[name] if isinstance(answer, dict) else answer)(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join(10)
        server.close()


def read_request(conn) -> bytes:
    """Read one whole HTTP request (headers and `Content-Length` body) and return its body: a server that
    closed with request bytes unread would make the kernel reset the connection, whatever it answered."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return b""
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            break
        body += chunk
    return body


def send(body):
    return lambda conn, stop: conn.sendall(http_answer(body if isinstance(body, bytes) else json.dumps(body).encode()))


def no_call_threads_left() -> bool:
    return not [t for t in threading.enumerate() if t.name == "va2att-serving-call"]


def run(capsys, *args):
    status = client.main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_timeout_is_a_deadline_for_a_server_that_trickles_its_answer(face, capsys):
    def trickle(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        while not stop.is_set():  # one byte every 0.2 s: no single read ever times out
            conn.sendall(b" ")
            time.sleep(0.2)

    with raw_server(trickle) as (url, _):
        started = time.monotonic()
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "1.5")
        elapsed = time.monotonic() - started
    assert status == 1 and out == "" and "within 1.5 s (timed out)" in err and err.count("\n") == 1
    assert elapsed < 5
    assert no_call_threads_left()  # the call's socket was shut down and its thread joined


def test_an_answer_that_breaks_off_is_one_line(face, capsys):
    def cut(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"pred")

    with raw_server(cut) as (url, _):
        status, _, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "5")
    assert status == 1 and "broke off" in err and "IncompleteRead" in err and err.count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--timeout", "nan"], "--timeout must be a positive number"),
    (["--timeout", "inf"], "--timeout must be a positive number"),
    (["--timeout", "-1"], "--timeout must be a positive number"),
    (["--url", "file:///etc/passwd"], "only http:// and https://"),
    (["--url", "ftp://127.0.0.1:21"], "only http:// and https://"),
    (["--url", "http://[::1"], "Malformed server URL"),
    (["--url", "http://127.0.0.1:port"], "Malformed server URL"),
    (["--url", "http://"], "names no host"),
])
def test_bad_arguments_are_refused_before_anything_is_sent(face, capsys, args, message):
    status, out, err = run(capsys, face, "--aligned", *args)
    assert status == 2 and out == "" and message in err and err.count("\n") == 1


def test_the_model_name_is_quoted_into_the_path():
    url = request.predict_url("127.0.0.1:8501", "va2att/../x?y#z", 3)
    assert url == "http://127.0.0.1:8501/v1/models/va2att%2F..%2Fx%3Fy%23z/versions/3:predict"
    assert request.predict_url("https://h/", "va2att") == "https://h/v1/models/va2att:predict"


# === Answers the client must not trust ===


def test_the_deadline_covers_the_provenance_question_and_the_predictions_are_printed(face, capsys):
    def trickle(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
        while not stop.is_set():
            conn.sendall(b" ")
            time.sleep(0.2)

    answers = {"serving_default": send({"predictions": [GOOD_ROW]}), "provenance": trickle}
    with raw_server(answers) as (url, received):
        started = time.monotonic()
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "1.5")
        elapsed = time.monotonic() - started
    assert received == ["serving_default", "provenance"]
    assert status == 0 and "valence +0.250" in out and "expression Happy (0.60)" in out
    assert err.count("\n") == 1 and "provenance is unknown" in err and "within 1.5 s (timed out)" in err
    assert elapsed < 20  # a trickling server held the client for minutes before
    assert no_call_threads_left()


@pytest.mark.parametrize("provenance", [
    {"data": "x"}, {"outputs": 5}, {"outputs": {"provenance": "not json"}}, {"outputs": {"provenance": "[1]"}},
    {"outputs": {"provenance": 7}}, "[" * 200_000 + "]" * 200_000, {"error": "signature not found"}])
def test_a_provenance_answer_of_any_shape_leaves_the_predictions_standing(face, capsys, provenance):
    body = provenance.encode() if isinstance(provenance, str) else json.dumps(provenance).encode()
    status_line = "400 Bad Request" if "error" in provenance else "200 OK"
    answers = {"serving_default": send({"predictions": [GOOD_ROW]}),
               "provenance": lambda conn, stop: conn.sendall(http_answer(body, status_line))}
    with raw_server(answers) as (url, _):
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "10")
    assert status == 0 and "valence +0.250" in out and err == ""


def _rows(row, n=1):
    return json.dumps({"predictions": [row] * n}).encode()


@pytest.mark.parametrize(("answer", "message"), [
    (_rows({**GOOD_ROW, "expression": []}), "expression: expected [1, K]"),
    (_rows({**GOOD_ROW, "valence": []}), "valence: expected [1, 1]"),
    (json.dumps({"outputs": {"valence": 0.5, "arousal": 0.5, "expression": 0.5}}).encode(), "expected [1, 1]"),
    (json.dumps({"predictions": [GOOD_ROW, {"valence": [0.1], "expression": [1.0]}]}).encode(), "prediction 1 has"),
    (json.dumps({"predictions": [{**GOOD_ROW, "valence": ["high"]}]}).encode(), "valence is not an array of float32"),
    (json.dumps({"predictions": [{**GOOD_ROW, "expression": [0.5, [0.5]]}]}).encode(), "expression is not an array"),
    (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    (json.dumps({"predictions": [{"logits": [0.1, 0.9], "score": [0.5]}]}).encode(), "none of ['valence'"),
    (json.dumps({"predictions": {"valence": [0.5]}}).encode(), "'predictions' is not a list"),
    (json.dumps({"predictions": [GOOD_ROW] * 2}).encode(), "1 were sent"),
])
def test_an_answer_of_the_wrong_shape_is_one_line(face, capsys, answer, message):
    with raw_server({"serving_default": send(answer)}) as (url, _):
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "10")
    assert status == 1 and out == "" and message in err and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:21/x", "file:///etc/passwd", "http://127.0.0.1:{port}/v1/x"])
def test_redirects_are_not_followed(face, capsys, target):
    with raw_server({"serving_default": send({"predictions": [GOOD_ROW]})}) as (elsewhere, received):
        target = target.format(port=elsewhere.rsplit(":", 1)[1])
        redirect = lambda conn, stop: conn.sendall(http_answer(b"", "302 Found", f"Location: {target}\r\n"))
        with raw_server({"serving_default": redirect}) as (url, _):
            status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "10")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "HTTP 302" in err and target in err and "does not follow redirects" in err
    assert received == []  # the address it points to was never called


@pytest.mark.parametrize("framing", ["content-length", "until-closed"])
def test_an_answer_larger_than_the_cap_is_refused_as_it_is_read(face, capsys, monkeypatch, framing):
    from va2att.serving import remote

    monkeypatch.setattr(remote, "MAX_ANSWER_BYTES", 4096)  # the mechanism, at a size a test can send
    body = json.dumps({"predictions": [GOOD_ROW], "padding": "x" * 50_000}).encode()

    def big(conn, stop):
        if framing == "content-length":
            conn.sendall(http_answer(body))
        else:  # no Content-Length: the body ends when the server closes the connection
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)

    with raw_server({"serving_default": big}) as (url, _):
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "10")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "larger than 4096 bytes" in err and "fewer faces" in err


def test_an_error_answer_is_read_up_to_its_own_cap(face, capsys):
    huge_error = json.dumps({"error": "x" * 200_000}).encode()
    answer = lambda conn, stop: conn.sendall(http_answer(huge_error, "500 Internal Server Error"))
    with raw_server({"serving_default": answer}) as (url, _):
        status, _, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "10")
    assert status == 1 and "larger than 65536 bytes" in err and err.count("\n") == 1


def test_ctrl_c_while_waiting_for_the_server_is_one_line(face, spawn):
    import os
    import signal
    import subprocess
    import sys

    def hold(conn, stop):  # accept the request, answer nothing
        while not stop.is_set():
            time.sleep(0.05)

    with raw_server(hold) as (url, received):
        proc = spawn([sys.executable, "-m", "va2att.serving.client", face, "--aligned", "--url", url, "--timeout", "60"],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not received and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received, "the client never reached the server"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and out == "" and err.strip() == "interrupted: nothing was printed for the faces"
