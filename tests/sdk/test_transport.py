"""Transport: gzip and headers on the wire, keep-alive, status classes, Retry-After, backoff."""

from __future__ import annotations

import email.utils
import gzip
import json
import random
import threading
import time

import pytest

from monitor import wire
from monitor.sdk.transport import (
    MAX_RETRY_AFTER,
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
        (500, Outcome.RETRY),  # not in wire.RETRYABLE_STATUSES: retried by choice
        (501, Outcome.RETRY),
        (301, Outcome.RETRY),
        (413, Outcome.SPLIT),
        (400, Outcome.REJECT),
        (401, Outcome.REJECT),
        (403, Outcome.REJECT),
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


def test_backoff_retry_after_is_a_floor() -> None:
    backoff = Backoff(base=0.01, cap=0.05, rng=random.Random(1))
    assert all(backoff.delay(a, retry_after=2.0) == 2.0 for a in range(5))
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
