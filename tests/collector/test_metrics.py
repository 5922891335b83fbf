"""The collector's /metrics: requests, latency, records and process metrics, in one process and
summed over several (`edge-monitor serve --workers 2`)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.metrics import Metrics
from monitor.config import Settings
from tests.collector.conftest import auth, batch, record
from tests.collector.served import ServedCollector
from tests.prometheus import Exposition

REQUESTS = "edge_monitor_requests_total"


def test_requests_are_counted_by_route_template_method_and_status_with_their_latency(
    http: httpx.Client, token: str
) -> None:
    http.post(wire.RECORDS_PATH, content=json.dumps(batch([record()])), headers=auth(token))
    http.post(wire.RECORDS_PATH, content=json.dumps(batch([record()])), headers=auth("emn_no"))
    http.get("/healthz")
    http.get("/no/such/route")

    metrics = Exposition(http.get("/metrics").text)

    assert metrics.value(REQUESTS, route="/v1/records", method="POST", status="200") == 1
    assert metrics.value(REQUESTS, route="/v1/records", method="POST", status="401") == 1
    assert metrics.value(REQUESTS, route="/healthz", method="GET", status="200") == 1
    assert metrics.value(REQUESTS, route="unmatched", method="GET", status="404") == 1
    latency = "edge_monitor_request_seconds"
    assert metrics.types[latency] == "histogram"
    assert metrics.value(f"{latency}_count", route="/v1/records", method="POST") == 2
    assert metrics.value(f"{latency}_bucket", route="/v1/records", method="POST", le="+Inf") == 2
    assert metrics.value(f"{latency}_sum", route="/v1/records", method="POST") > 0


def test_process_metrics_and_the_body_budget_are_exposed(http: httpx.Client) -> None:
    metrics = Exposition(http.get("/metrics").text)

    assert metrics.value("process_resident_memory_bytes") > 10 * 1024 * 1024
    assert metrics.value("process_cpu_seconds_total") > 0
    assert metrics.value("process_open_fds") > 0
    assert metrics.value("edge_monitor_body_budget_bytes") > 0
    assert metrics.value("edge_monitor_body_bytes_in_use") == 0


def test_two_apps_in_one_process_count_apart() -> None:
    first, second = Metrics(), Metrics()

    first.records("accepted", 3)
    first.request("/v1/records", 200, "POST", 0.01)

    seen = Exposition(second.render().decode())
    assert seen.value("edge_monitor_records_total", outcome="accepted", reason="") is None
    assert seen.matching(REQUESTS) == []
    counted = Exposition(first.render().decode())
    assert counted.value("edge_monitor_records_total", outcome="accepted", reason="") == 3


@pytest.mark.slow
def test_serve_with_two_workers_shows_n_requests_as_n_in_every_scrape(
    engine: Engine, db_url: str, token: str, tmp_path: Path
) -> None:
    n = 40
    budget = Settings().body_memory_bytes
    with (
        ServedCollector(db_url, tmp_path / "collector.log", workers=2) as served,
        # A new connection for each request, so that the kernel spreads them over both workers.
        httpx.Client(base_url=served.url, headers={"Connection": "close"}, timeout=30) as http,
    ):
        for _ in range(n):
            body = json.dumps(batch([record()]))
            answer = http.post(wire.RECORDS_PATH, content=body, headers=auth(token))
            assert answer.status_code == 200, answer.text
        scrapes = [Exposition(http.get("/metrics").text) for _ in range(8)]

    for metrics in scrapes:
        assert metrics.value(REQUESTS, route="/v1/records", method="POST", status="200") == n
        assert metrics.value("edge_monitor_records_total", outcome="accepted", reason="") == n
        assert (
            metrics.value("edge_monitor_request_seconds_count", route="/v1/records", method="POST")
            == n
        )
        # One sample per live worker process, each with its pid.
        workers = metrics.matching("process_resident_memory_bytes")
        assert len(workers) == 2
        assert all(labels["pid"].isdigit() and value > 0 for labels, value in workers)
        # The body budget is the sum of both workers'.
        assert metrics.value("edge_monitor_body_budget_bytes") == 2 * budget
