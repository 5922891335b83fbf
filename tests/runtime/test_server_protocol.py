"""Every request to ``edge serve``'s server gets an answer in the envelope, however the client
behaves: a body shorter than its Content-Length, a stalled or trickling client, a request line
or method the server does not speak. Slow clients are cut off at the request deadline, so
none holds a thread for long (the deadline here is 0.5 s; sockets wait at most 10 s for
progress)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.runtime import EdgeRuntime
from monitor.runtime.server import PredictionServer, make_server, serve_in_thread

DEADLINE = 0.5


@pytest.fixture
def server(runtime: EdgeRuntime) -> Iterator[PredictionServer]:
    srv = make_server(runtime, "127.0.0.1", 0, request_timeout=DEADLINE)
    thread = serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def connect(srv: PredictionServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.server_address[1]), timeout=10)


def answer(sock: socket.socket) -> tuple[int, dict[str, Any], str | None]:
    """(status, JSON body, Connection header) of the one answer on ``sock``."""
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    return resp.status, json.loads(resp.read()), resp.getheader("Connection")


def head(length: int) -> bytes:
    return (
        b"POST /predict HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


def still_serves(srv: PredictionServer, row: dict[str, Any]) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request("POST", "/predict", body=json.dumps({"features": row}).encode())
        return conn.getresponse().status == 200
    finally:
        conn.close()


def test_a_body_shorter_than_its_content_length_is_a_400_once_the_client_stops(
    server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    body = json.dumps({"features": rows[0]}).encode()  # valid JSON, but not all that was declared
    with connect(server) as sock:
        sock.sendall(head(len(body) + 50) + body)
        sock.shutdown(socket.SHUT_WR)
        status, payload, connection = answer(sock)
    assert (status, payload["error"]["code"]) == (400, "bad_request")
    assert payload["error"]["details"][0] == {
        "field": "body",
        "code": "incomplete_body",
        "message": "shorter than declared",
    }
    assert connection == "close"
    assert runtime.telemetry()["errors"] == {"incomplete_body": 1}
    assert still_serves(server, rows[1])


def test_a_body_that_stops_arriving_is_a_408_at_the_request_deadline(
    server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    body = json.dumps({"features": rows[0]}).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body) + 50) + body)  # and then nothing, connection held open
        status, payload, connection = answer(sock)
    assert (status, payload["error"]["code"]) == (408, "request_timeout")
    assert payload["error"]["details"][0]["field"] == "body"
    assert connection == "close"
    assert runtime.telemetry()["errors"] == {"request_timeout": 1}
    assert still_serves(server, rows[1])


def trickle(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send ``data`` a byte at a time, each well within any per-read timeout."""
    try:
        for i in range(len(data)):
            if stop.wait(0.02):
                return
            sock.send(data[i : i + 1])
    except OSError:  # the server closed the connection: what the test waits for
        return


@pytest.mark.parametrize("part", ["body", "request"])
def test_a_client_trickling_its_request_is_cut_off_at_the_deadline(
    part: str, server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    # 20,000 bytes at 50 per second would take minutes: only the deadline ends it in time.
    body = json.dumps({"features": rows[0], "request_id": "r" * 100}).encode() + b" " * 20_000
    stop = threading.Event()
    with connect(server) as sock:
        if part == "body":
            sock.sendall(head(len(body)))
            data = body
        else:  # the request line and headers themselves
            data = head(len(body)) + body
        sender = threading.Thread(target=trickle, args=(sock, data, stop))
        sender.start()
        try:
            status, payload, connection = answer(sock)
        finally:
            stop.set()
            sender.join(10)
    assert (status, payload["error"]["code"]) == (408, "request_timeout")
    assert payload["error"]["details"][0]["field"] == part
    assert connection == "close"
    assert runtime.telemetry()["errors"] == {"request_timeout": 1}
    assert still_serves(server, rows[1])


def test_headers_that_stop_arriving_are_a_408(
    server: PredictionServer, rows: list[dict[str, Any]]
) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: edge\r\n")  # no blank line: headers go on
        status, payload, _ = answer(sock)
    assert (status, payload["error"]["code"]) == (408, "request_timeout")
    assert still_serves(server, rows[0])


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"POST /predict HTTP/9.9\r\n\r\n", 505, "http_version_not_supported"),
        (b"BREW /predict HTTP/1.1\r\nHost: edge\r\n\r\n", 501, "not_implemented"),
        (b"GET /" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "request_uri_too_long"),
    ],
    ids=["request line", "version", "method", "uri too long"],
)
def test_protocol_errors_are_answered_in_the_envelope(
    request_bytes: bytes,
    status: int,
    code: str,
    server: PredictionServer,
    runtime: EdgeRuntime,
    rows: list[dict[str, Any]],
) -> None:
    with connect(server) as sock:
        sock.sendall(request_bytes)
        got, payload, connection = answer(sock)
    assert (got, set(payload), payload["error"]["code"]) == (status, {"error"}, code)
    assert set(payload["error"]) == {"code", "message", "details"}
    assert connection == "close"
    assert runtime.telemetry()["errors"] == {code: 1}
    assert still_serves(server, rows[0])


def test_keep_alive_requests_after_a_slow_one_keep_their_idle_timeout(
    server: PredictionServer, rows: list[dict[str, Any]]
) -> None:
    # A request whose body came in two parts shortens the socket's timeout to the deadline;
    # the next request on the connection must not inherit it (it waits the idle timeout).
    body = json.dumps({"features": rows[0]}).encode()
    with connect(server) as sock:
        sock.sendall(head(len(body)))
        threading.Event().wait(DEADLINE / 5)
        sock.sendall(body)
        assert answer(sock)[0] == 200
        threading.Event().wait(DEADLINE * 2)  # idle past the deadline, within the idle timeout
        sock.sendall(head(len(body)) + body)
        assert answer(sock)[0] == 200
