"""Per-node rate limit: a token bucket per node token; 429 with Retry-After past the burst,
other nodes and operators unaffected, and the SDK's own pace never limited by the defaults."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.ratelimit import RateLimiter
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.sdk import Monitor
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, batch, record, stored
from tests.collector.test_pressure import add_node
from tests.collector.test_timeouts import requests_counted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)

    assert [limiter.wait("node") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait("node") == pytest.approx(0.5)  # the next token comes in 1/2 s
    clock.now += 0.5
    assert limiter.wait("node") == 0.0
    assert limiter.wait("node") > 0


def test_a_refused_request_takes_no_token() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    limiter.wait("node")

    for _ in range(10):
        assert limiter.wait("node") > 0
    clock.now += 1.0
    assert limiter.wait("node") == 0.0


def test_each_node_has_its_own_bucket() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, clock=Clock())

    assert limiter.wait("node-1") == 0.0
    assert limiter.wait("node-1") > 0
    assert limiter.wait("node-2") == 0.0


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(rate=0.0, burst=1, clock=Clock())

    assert all(limiter.wait("node") == 0.0 for _ in range(1000))


@pytest.fixture
def strict_collector(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[BackgroundCollector]:
    settings = Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        rate_limit_per_second=0.01,  # one token per 100 s: nothing refills during the test
        rate_limit_burst=3,
    )
    with BackgroundCollector(settings) as running:
        yield running


def heartbeat(url: str, token: str) -> httpx.Response:
    body = {"ts": time.time(), "sdk": {}}
    return httpx.post(url + wire.HEARTBEATS_PATH, json=body, headers=auth(token), timeout=30)


def test_a_node_past_its_burst_is_answered_429_with_retry_after(
    strict_collector: BackgroundCollector, token: str, engine: Engine
) -> None:
    url = strict_collector.url
    answers = [heartbeat(url, token) for _ in range(4)]

    assert [a.status_code for a in answers] == [204, 204, 204, 429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    # Records and labels share the node's bucket.
    records = httpx.post(url + wire.RECORDS_PATH, json=batch([record()]), headers=auth(token))
    labels = httpx.post(
        url + wire.LABELS_PATH,
        json={"model": MODEL, "labels": [{"request_id": "r-1", "label": "ok"}]},
        headers=auth(token),
    )
    assert (records.status_code, labels.status_code) == (429, 429)
    # Another node, and an operator's bulk labels, are not held back by it.
    assert heartbeat(url, add_node(engine, "node-2")).status_code == 204
    bulk = httpx.post(
        url + wire.LABELS_PATH,
        json={"model": MODEL, "labels": [{"request_id": "r-1", "label": "ok"}]},
        headers=auth(ADMIN_TOKEN),
    )
    assert bulk.status_code == 200


def test_a_stranger_is_told_401_not_429(strict_collector: BackgroundCollector) -> None:
    answers = [heartbeat(strict_collector.url, "ema_stranger") for _ in range(5)]

    assert {a.status_code for a in answers} == {401}


def test_a_node_draining_a_backlog_with_the_sdk_defaults_is_never_limited(
    collector: BackgroundCollector, token: str, engine: Engine, tmp_path: Path
) -> None:
    # The defaults, with the whole backlog logged at once: the sender ships full batches
    # back to back, as fast as the collector answers, which is the SDK's fastest pace.
    monitor = Monitor(collector.url, token, MODEL, "1", spool_dir=tmp_path / "spool")
    try:
        for i in range(25_000):
            monitor.log({"temperature": 70.0 + i % 7, "rpm": 1450}, "ok", request_id=f"r-{i}")
            monitor.log_label(f"r-{i}", "ok")
        monitor.heartbeat()
        flushed = monitor.flush(timeout=300)
        delivered = monitor.stats()["delivered"]
        # Logged at once, the backlog overflows the in-memory queue; flush() tells exactly that.
        assert flushed is (monitor.stats()["dropped"]["queue_full"] == 0)
    finally:
        monitor.close()

    counted = requests_counted(collector.url)
    assert not [key for key in counted if key[1] == "429"]
    assert counted[(wire.RECORDS_PATH, "200")] >= 20  # it did go at full pace
    assert stored(engine)["records"] == delivered > 0
