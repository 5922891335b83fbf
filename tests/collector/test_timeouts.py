"""Read deadlines: a request's headers and body must arrive in time, and headers stay small;
slow, silent and endless requests are answered 408 (or 431) and their connections closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from tests.collector import rawhttp
from tests.collector.conftest import ADMIN_TOKEN, auth
from tests.collector.served import ServedCollector

HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 2.0


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        header_timeout_seconds=HEADER_TIMEOUT,
        body_timeout_seconds=BODY_TIMEOUT,
        max_header_bytes=16 * 1024,
    )


@pytest.fixture
def url(collector: BackgroundCollector) -> str:
    return collector.url


def requests_counted(url: str) -> dict[tuple[str, str], int]:
    """edge_monitor_requests_total by (route, status)."""
    counted = {}
    for line in httpx.get(url + "/metrics", timeout=30).text.splitlines():
        if line.startswith("edge_monitor_requests_total{"):
            labels, _, value = line.partition("} ")
            route = labels.split('route="')[1].split('"')[0]
            status = labels.split('status="')[1].split('"')[0]
            counted[(route, status)] = int(float(value))
    return counted


def drip_until_answered(sock: socket.socket, pieces: Iterator[bytes]) -> bytes:
    """Send ``pieces`` one by one until the server says something or hangs up."""
    sock.settimeout(0.1)
    received = b""
    for piece in pieces:
        try:
            sock.sendall(piece)
            received = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        break
    sock.settimeout(30)
    return received


def endless(piece: bytes, pause: float, deadline: float = 30.0) -> Iterator[bytes]:
    """``piece`` every ``pause`` seconds; the deadline only bounds a test that would hang."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        yield piece
        time.sleep(pause)


def test_headers_sent_too_slowly_are_answered_408_and_the_connection_closed(url: str) -> None:
    with rawhttp.connect(url) as sock:
        sock.sendall(b"POST /v1/records HTTP/1.1\r\nHost: collector\r\n")
        raw = drip_until_answered(sock, endless(b"X-Slow: a\r\n", 0.05))
        answer = rawhttp.read_answer(sock, raw)

        assert answer.status == 408
        assert answer.json()["error"]["code"] == "request_timeout"
        assert rawhttp.closed_by_peer(sock)
    assert requests_counted(url).get(("(headers)", "408")) == 1


def test_a_connection_that_sends_nothing_is_closed(url: str) -> None:
    with rawhttp.connect(url) as sock:
        assert sock.recv(65536) == b""  # closed, with nothing to answer


def test_a_body_that_stalls_is_answered_408_and_the_connection_closed(url: str, token: str) -> None:
    with rawhttp.connect(url) as sock:
        headers = {**auth(token), "Content-Length": "1000"}
        sock.sendall(rawhttp.head(wire.RECORDS_PATH, headers) + b'{"model": ')
        answer = rawhttp.read_answer(sock)

        assert answer.status == 408
        assert answer.json()["error"]["code"] == "request_timeout"
        assert rawhttp.closed_by_peer(sock)
    counted = requests_counted(url)
    assert counted.get((wire.RECORDS_PATH, "408")) == 1
    assert not [key for key in counted if key[1] in ("499", "500")]


def test_a_body_dripped_byte_by_byte_is_cut_at_the_deadline(url: str, token: str) -> None:
    with rawhttp.connect(url) as sock:
        headers = {**auth(token), "Content-Length": "100000"}  # hours at this pace
        sock.sendall(rawhttp.head(wire.HEARTBEATS_PATH, headers))
        raw = drip_until_answered(sock, endless(b" ", 0.01))
        answer = rawhttp.read_answer(sock, raw)

    assert answer.status == 408


def test_the_rest_of_a_body_refused_early_cannot_hold_the_connection(url: str) -> None:
    with rawhttp.connect(url) as sock:
        headers = {**auth("ema_stranger"), "Content-Length": "100000"}
        sock.sendall(rawhttp.head(wire.LABELS_PATH, headers) + b"[")
        assert rawhttp.read_answer(sock).status == 401
        # The stranger goes on dripping its body; the body deadline still closes the door.
        drip_until_answered(sock, endless(b" ", 0.01))
        assert rawhttp.closed_by_peer(sock)


def test_headers_larger_than_the_limit_are_answered_431(url: str) -> None:
    with rawhttp.connect(url) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: collector\r\n")
        raw = drip_until_answered(sock, endless(b"X-Big: " + b"a" * 32_000 + b"\r\n", 0.0))
        answer = rawhttp.read_answer(sock, raw)

        assert answer.status == 431
        assert answer.json()["error"]["code"] == "headers_too_large"
        assert rawhttp.closed_by_peer(sock)


def test_hundreds_of_slow_connections_are_all_closed_and_the_collector_keeps_answering(
    url: str,
) -> None:
    # Each connection starts its request at once: opening 300 can take longer than the header
    # deadline on a loaded machine, and a connection silent that long is rightly closed unanswered.
    slow = []
    try:
        for _ in range(300):
            slow.append(rawhttp.connect(url))
            slow[-1].sendall(b"POST /v1/records HTTP/1.1\r\nHo")
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        answers = [sock.recv(65536) for sock in slow]
        closed = [rawhttp.closed_by_peer(sock) for sock in slow]
    finally:
        for sock in slow:
            sock.close()

    assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers)
    assert all(closed)


def test_a_prompt_request_sent_in_pieces_is_served(url: str) -> None:
    with rawhttp.connect(url) as sock:
        for piece in (b"GET /healthz HT", b"TP/1.1\r\nHost: coll", b"ector\r\n\r\n"):
            sock.sendall(piece)
            time.sleep(0.01)
        assert rawhttp.read_answer(sock).status == 200


def test_a_keep_alive_connection_may_idle_longer_than_the_header_deadline(url: str) -> None:
    # The header deadline runs from a request's first byte, not from the previous answer.
    with rawhttp.connect(url) as sock:
        sock.sendall(rawhttp.head("/healthz", {}, method="GET"))
        assert rawhttp.read_answer(sock).status == 200
        time.sleep(HEADER_TIMEOUT * 2)
        sock.sendall(rawhttp.head("/healthz", {}, method="GET"))
        assert rawhttp.read_answer(sock).status == 200


def test_edge_monitor_serve_applies_the_same_deadlines(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    env = {"MONITOR_HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT)}
    with (
        ServedCollector(db_url, tmp_path / "collector.log", env) as served,
        rawhttp.connect(served.url) as sock,
    ):
        sock.sendall(b"POST /v1/records HTTP/1.1\r\nHost: collector\r\n")
        raw = drip_until_answered(sock, endless(b"X-Slow: a\r\n", 0.05))

    assert raw.startswith(b"HTTP/1.1 408 ")
