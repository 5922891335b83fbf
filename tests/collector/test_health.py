"""Liveness, readiness, metrics, the OpenAPI document and unknown routes."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.storage import migrations
from tests.collector.conftest import auth, batch, record
from tests.prometheus import Exposition


def test_healthz_and_readyz_answer(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "revision": migrations.head()}


def test_readyz_fails_on_a_database_that_is_not_at_head(settings: Settings) -> None:
    with BackgroundCollector(settings) as collector:
        answer = httpx.get(f"{collector.url}/readyz")

    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "schema_out_of_date"
    assert "edge-monitor db upgrade" in error["message"]


def test_metrics_count_records_by_outcome(http: httpx.Client, token: str) -> None:
    body = batch([record(), record(), record(ts="bad")])
    http.post(wire.RECORDS_PATH, content=json.dumps(body), headers=auth(token))
    http.post(wire.RECORDS_PATH, content=json.dumps(body), headers=auth(token))

    metrics = Exposition(http.get("/metrics").text)

    records = "edge_monitor_records_total"
    assert metrics.value(records, outcome="accepted", reason="") == 2
    assert metrics.value(records, outcome="duplicate", reason="") == 2
    assert metrics.value(records, outcome="rejected", reason="invalid_type") == 2
    requests = "edge_monitor_requests_total"
    assert metrics.value(requests, route="/v1/records", method="POST", status="200") == 2
    assert metrics.value("edge_monitor_batch_seconds_count") == 2


def test_the_openapi_document_lists_every_route(http: httpx.Client) -> None:
    paths = http.get("/openapi.json").json()["paths"]

    for path in (wire.RECORDS_PATH, wire.LABELS_PATH, wire.HEARTBEATS_PATH, "/readyz"):
        assert path in paths
    assert http.get("/docs").status_code == 200


def test_unknown_routes_use_the_error_envelope(http: httpx.Client) -> None:
    answer = http.get("/v1/nothing-here")

    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_every_answer_is_json_even_for_a_wrong_method(http: httpx.Client, engine: Engine) -> None:
    answer = http.get(wire.RECORDS_PATH)

    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "method_not_allowed"


def test_readyz_is_not_ready_while_the_database_does_not_answer(tmp_path: Path) -> None:
    # A listening socket that never speaks PostgreSQL's protocol: connecting hangs until the
    # engine's connect timeout, and readiness must say so instead of hanging or answering ready.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{port}/test", data_dir=tmp_path
    )
    try:
        with BackgroundCollector(settings) as collector:
            answer = httpx.get(f"{collector.url}/readyz", timeout=60)
    finally:
        silent.close()

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"]
