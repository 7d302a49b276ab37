"""The serving client against hostile servers and bad arguments: one line, the right exit status, on time."""

import contextlib
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


def read_request(conn):
    """Read one whole HTTP request (headers and `Content-Length` body): a server that closed with
    request bytes unread would make the kernel reset the connection, whatever it answered."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(1 << 16)
        if not chunk:
            return
        body += chunk


@contextlib.contextmanager
def raw_server(answer):
    """A one-connection-at-a-time TCP server; `answer(conn)` writes whatever it likes after the request."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError):
                    read_request(conn)
                    answer(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        server.close()


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

    with raw_server(trickle) as url:
        started = time.monotonic()
        status, out, err = run(capsys, face, "--aligned", "--url", url, "--timeout", "1.5")
        elapsed = time.monotonic() - started
    assert status == 1 and out == "" and "within 1.5 s (timed out)" in err and err.count("\n") == 1
    assert elapsed < 5


def test_an_answer_that_breaks_off_is_one_line(face, capsys):
    def cut(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"pred")

    with raw_server(cut) as url:
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
