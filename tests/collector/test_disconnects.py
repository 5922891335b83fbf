"""A client that goes away mid-body is no error of the collector's: no traceback, no 500, and
it is counted under its own status (499)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import httpx
import pytest

from monitor import wire
from monitor.collector.server import BackgroundCollector
from tests.collector import rawhttp
from tests.collector.conftest import auth
from tests.collector.test_pressure import metric, wait_for
from tests.collector.test_timeouts import requests_counted


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every log record, uvicorn's included (its loggers do not propagate to the root)."""
    caplog.set_level(logging.DEBUG)
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        uvicorn_logger.removeHandler(caplog.handler)


def wait_for_count(url: str, key: tuple[str, str]) -> dict[tuple[str, str], int]:
    end = time.monotonic() + 30  # bounds a test that would hang; not a speed limit
    while True:
        counted = requests_counted(url)
        if key in counted or time.monotonic() > end:
            return counted
        time.sleep(0.02)


@pytest.mark.parametrize("path", [wire.RECORDS_PATH, wire.HEARTBEATS_PATH, wire.LABELS_PATH])
@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_that_disconnects_mid_body_is_counted_499_without_a_traceback(
    collector: BackgroundCollector,
    token: str,
    logs: pytest.LogCaptureFixture,
    path: str,
    how: str,
) -> None:
    sock = rawhttp.connect(collector.url)
    sock.sendall(rawhttp.head(path, {**auth(token), "Content-Length": "100000"}))
    sock.sendall(b'{"model": "pump-failure", "records": [' + b" " * 1000)
    # Once the body's share of the budget is held, the collector is reading the body.
    wait_for(
        lambda: metric(collector.url, "edge_monitor_body_bytes_in_use") == 100_000,
        "the collector reads the body",
    )
    if how == "reset":
        rawhttp.reset(sock)
    else:
        sock.close()

    counted = wait_for_count(collector.url, (path, "499"))

    assert counted.get((path, "499")) == 1
    assert not [key for key in counted if key[1] == "500"]
    assert metric(collector.url, "edge_monitor_body_bytes_in_use") == 0  # its share is back
    assert not [r for r in logs.records if r.levelno >= logging.ERROR]
    assert not [r for r in logs.records if "unhandled error" in r.getMessage()]
    # The collector goes on serving.
    assert httpx.get(collector.url + "/healthz", timeout=30).status_code == 200
