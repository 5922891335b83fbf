"""Transport: gzip and headers on the wire, keep-alive, status classes, Retry-After, backoff."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import json
import os
import random
import socket
import threading
import time

import pytest

from monitor import wire
from monitor.sdk.transport import (
    MAX_RETRY_AFTER,
    RETRY_AFTER_JITTER,
    TRANSPORT_ERRORS,
    Backoff,
    Outcome,
    Transport,
    classify,
    parse_retry_after,
    parse_url,
)

from .fakes import Reply, ScriptedCollector, wait_until


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.OK),
        (202, Outcome.OK),
        (204, Outcome.OK),
        (408, Outcome.RETRY),
        (429, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (504, Outcome.RETRY),
        (500, Outcome.SERVER_ERROR),  # retried, then isolated if it is the batch's fault
        (501, Outcome.SERVER_ERROR),
        (505, Outcome.SERVER_ERROR),
        (599, Outcome.SERVER_ERROR),
        (301, Outcome.RETRY),
        (413, Outcome.SPLIT),
        (401, Outcome.AUTH),  # the data is kept: a token being rotated
        (403, Outcome.AUTH),
        (400, Outcome.REJECT),
        (404, Outcome.REJECT),
        (409, Outcome.REJECT),
        (422, Outcome.REJECT),
    ],
)
def test_classify(status: int, outcome: Outcome) -> None:
    assert classify(status) is outcome


def test_every_wire_retryable_status_is_retried() -> None:
    assert all(classify(s) is Outcome.RETRY for s in wire.RETRYABLE_STATUSES)
    assert classify(wire.TOO_LARGE_STATUS) is Outcome.SPLIT


def test_parse_retry_after() -> None:
    now = 1_000_000.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("99999999") == MAX_RETRY_AFTER
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=lambda: now) == 0.0


def test_backoff_full_jitter_bounds() -> None:
    backoff = Backoff(base=0.5, cap=10.0, rng=random.Random(7))
    for attempt in range(12):
        ceiling = min(10.0, 0.5 * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter: spread over the whole range, not clustered at the ceiling.
        assert min(delays) < ceiling * 0.2
        assert max(delays) > ceiling * 0.8
    assert backoff.delay(10_000) <= 10.0  # no overflow for huge attempt numbers


def test_backoff_retry_after_is_a_floor_with_jitter_on_top() -> None:
    backoff = Backoff(base=0.01, cap=0.05, rng=random.Random(1))
    delays = [backoff.delay(a % 5, retry_after=2.0) for a in range(200)]
    assert all(2.0 <= d <= 2.0 * (1 + RETRY_AFTER_JITTER) for d in delays)
    # Nodes turned away together must not all come back in the same instant.
    assert max(delays) - min(delays) > 0.5 * 2.0 * RETRY_AFTER_JITTER
    assert backoff.delay(0, retry_after=0.0) <= 0.01
    big = Backoff(base=100.0, cap=100.0, rng=random.Random(1))
    assert all(big.delay(3, retry_after=0.001) >= 0.001 for _ in range(50))


@pytest.mark.parametrize(
    "url", ["", "ftp://host/", "http://", "not a url", "http://host:notaport/", "//host"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_url(url)


def test_url_path_prefix_is_kept() -> None:
    assert parse_url("https://c.example:8443/monitor/") == (
        "https",
        "c.example",
        8443,
        "/monitor",
    )


def test_post_gzips_and_authenticates(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "emn_secret", gzip_level=6)
    payload = json.dumps(wire.labels_body("pump", [])).encode()
    resp = tp.post(wire.LABELS_PATH, tp.encode(payload))
    assert resp.status == 200
    (req,) = collector.requests
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["authorization"] == "Bearer emn_secret"
    assert gzip.decompress(req.raw) == payload
    assert req.body == {"model": "pump", "labels": []}
    tp.close()


def test_gzip_level_zero_sends_plain_json(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "t", gzip_level=0)
    payload = json.dumps(wire.labels_body("pump", [])).encode()
    tp.post(wire.LABELS_PATH, tp.encode(payload))
    (req,) = collector.requests
    assert "content-encoding" not in req.headers
    assert req.raw == payload
    tp.close()


def test_keep_alive_reuses_one_connection(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "t")
    body = tp.encode(json.dumps(wire.labels_body("pump", [])).encode())
    for _ in range(5):
        assert tp.post(wire.LABELS_PATH, body).status == 200
    assert len({r.client_port for r in collector.requests}) == 1
    tp.close()


def test_server_closing_a_kept_alive_connection_is_survived(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "t")
    body = tp.encode(json.dumps(wire.labels_body("pump", [])).encode())
    assert tp.post(wire.LABELS_PATH, body).status == 200
    # The server drops the reused connection: one immediate retry on a fresh connection.
    collector.push(wire.LABELS_PATH, Reply(drop=True))
    assert tp.post(wire.LABELS_PATH, body).status == 200
    assert len(collector.requests) == 3
    assert len({r.client_port for r in collector.requests}) == 2
    # A fresh connection that fails is not retried here: that is the sender's backoff's job.
    collector.push(wire.LABELS_PATH, Reply(drop=True), Reply(drop=True))
    with pytest.raises(TRANSPORT_ERRORS):
        tp.post(wire.LABELS_PATH, body)
    tp.close()


def test_status_headers_and_error_code(collector: ScriptedCollector) -> None:
    collector.push(wire.LABELS_PATH, Reply(503, headers={"Retry-After": "7"}))
    tp = Transport(collector.url, "t")
    resp = tp.post(wire.LABELS_PATH, tp.encode(b'{"model":"m","labels":[]}'))
    assert resp.status == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.error_code() == "http_503"
    tp.close()


def test_connection_refused_raises_a_transport_error(dead_url: str) -> None:
    tp = Transport(dead_url, "t", timeout=2.0)
    with pytest.raises(TRANSPORT_ERRORS):
        tp.post(wire.LABELS_PATH, b"{}")


def test_abort_breaks_off_a_request_in_flight(collector: ScriptedCollector) -> None:
    collector.push(wire.LABELS_PATH, Reply(hang=5.0))
    tp = Transport(collector.url, "t", timeout=30.0)
    outcome: list[object] = []

    def post() -> None:
        try:
            outcome.append(tp.post(wire.LABELS_PATH, tp.encode(b"{}")))
        except TRANSPORT_ERRORS as exc:
            outcome.append(exc)

    thread = threading.Thread(target=post)
    start = time.monotonic()
    thread.start()
    assert wait_until(lambda: collector.requests)
    tp.abort()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - start < 4.5  # well before the server's 5 s answer
    assert isinstance(outcome[0], TRANSPORT_ERRORS)
    with pytest.raises(TRANSPORT_ERRORS):
        tp.post(wire.LABELS_PATH, b"{}")


# -- GETs: conditional, bounded, never redirected ----------------------------------------------

ASSIGNMENT = "/v1/models/pump/assignment"


def test_get_sends_its_headers_and_takes_a_304_on_the_same_connection(
    collector: ScriptedCollector,
) -> None:
    path = "/prefix" + ASSIGNMENT  # the URL's path prefix is kept
    collector.push(path, Reply(200, headers={"ETag": '"e1"'}, body={"version": "2"}))
    collector.push(path, Reply(304, headers={"ETag": '"e1"'}))
    tp = Transport(collector.url + "/prefix/", "emn_secret", user_agent="probe/1")
    first = tp.get(ASSIGNMENT, max_bytes=1024)
    assert (first.status, first.json(), first.headers["etag"]) == (200, {"version": "2"}, '"e1"')
    assert not first.truncated
    second = tp.get(ASSIGNMENT, headers={"If-None-Match": '"e1"'}, max_bytes=1024)
    assert (second.status, second.body) == (304, b"")
    one, two = collector.requests
    assert one.path == path
    assert "if-none-match" not in one.headers and two.headers["if-none-match"] == '"e1"'
    assert "content-type" not in two.headers and "content-encoding" not in two.headers
    assert two.headers["authorization"] == "Bearer emn_secret"
    assert two.headers["user-agent"] == "probe/1"
    assert one.client_port == two.client_port
    tp.close()


def test_headers_never_replace_the_token(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "emn_secret")
    tp.get(ASSIGNMENT, headers={"Authorization": "Bearer someone-else"})
    assert collector.requests[0].headers["authorization"] == "Bearer emn_secret"
    tp.close()


def test_a_body_declared_longer_than_max_bytes_is_not_read(
    collector: ScriptedCollector,
) -> None:
    collector.push(ASSIGNMENT, Reply(200, body=b"x" * 5000), Reply(200, body=b"y" * 5000))
    tp = Transport(collector.url, "t")
    big = tp.get(ASSIGNMENT, max_bytes=4999)
    assert big.truncated and big.body == b""
    exact = tp.get(ASSIGNMENT, max_bytes=5000)  # on a fresh connection: the old one is spoilt
    assert not exact.truncated and exact.body == b"y" * 5000
    assert len({r.client_port for r in collector.requests}) == 2
    tp.close()


def test_an_undeclared_body_is_cut_at_max_bytes() -> None:
    # A chunked answer has no Content-Length: the limit is enforced while reading.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                with contextlib.suppress(OSError):  # the client hangs up after its limit
                    for _ in range(50):
                        conn.sendall(b"3e8\r\n" + b"z" * 1000 + b"\r\n")
                    conn.sendall(b"0\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        tp = Transport(f"http://127.0.0.1:{port}", "t")
        resp = tp.get(ASSIGNMENT, max_bytes=2500)
        thread.join(10)
    assert resp.status == 200 and resp.truncated and resp.body == b"z" * 2500
    tp.close()


def test_redirects_are_handed_back_not_followed(collector: ScriptedCollector) -> None:
    elsewhere = ScriptedCollector()
    try:
        moved = Reply(302, headers={"Location": elsewhere.url + ASSIGNMENT})
        collector.push(ASSIGNMENT, moved)
        tp = Transport(collector.url, "emn_secret")
        resp = tp.get(ASSIGNMENT)
        assert resp.status == 302 and resp.headers["location"].startswith(elsewhere.url)
        assert elsewhere.requests == []  # the token stayed with the collector
        tp.close()
    finally:
        elsewhere.close()


def test_retry_after_of_a_response() -> None:
    from monitor.sdk.transport import Response

    assert Response(429, {"retry-after": "12"}, b"").retry_after() == 12.0
    assert Response(503, {}, b"").retry_after() is None


def test_a_forked_child_opens_its_own_connection(collector: ScriptedCollector) -> None:
    tp = Transport(collector.url, "t")
    assert tp.get(ASSIGNMENT).status == 200
    parent_port = collector.requests[0].client_port
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status only
        code = 1
        try:
            code = 0 if tp.get(ASSIGNMENT).status == 200 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = collector.requests[1]
    assert child.client_port != parent_port
    # The child closed only its copy: the parent's connection still carries requests.
    assert tp.get(ASSIGNMENT).status == 200
    assert collector.requests[2].client_port == parent_port
    tp.close()
