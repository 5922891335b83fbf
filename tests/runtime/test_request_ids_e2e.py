"""A request id (or feature value) the wire cannot carry is refused at ``POST /predict`` with
422, so it never reaches the SDK, and the node's later predictions are all stored by a real
collector (SQLite and PostgreSQL: PostgreSQL text refuses a NUL, which once stalled the node's
whole queue behind one record)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.runtime import EdgeRuntime, VersionedMonitors
from monitor.runtime.server import PredictionServer, make_server, serve_in_thread
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.tables import records

MODEL = "pump-failure"


@pytest.fixture
def node_token(engine: Engine) -> str:
    with begin_write(engine) as conn:
        model = models.add_model(conn, MODEL)
        node, token = nodes.add_node(conn, "edge-1", group_name="line-a", site="plant-1")
        nodes.grant_model(conn, node.id, model.id)
    return token


@pytest.fixture
def edge(
    engine: Engine, db_url: str, node_token: str, demo: Any, tmp_path: Path
) -> Iterator[PredictionServer]:
    """``edge serve``'s server logging through the SDK to a real collector on loopback."""
    settings = Settings(database_url=db_url, data_dir=tmp_path / "collector")
    with BackgroundCollector(settings) as collector:
        monitors = VersionedMonitors(
            collector.url,
            node_token,
            MODEL,
            spool_root=tmp_path / "spool",
            flush_interval=0.05,
            heartbeat_interval=None,
        )
        runtime = EdgeRuntime(demo.model, monitor=monitors)
        server = make_server(runtime, "127.0.0.1", 0)
        thread = serve_in_thread(server)
        try:
            yield server
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)
            runtime.close(timeout=10)


def post(server: PredictionServer, payload: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request("POST", "/predict", body=json.dumps(payload).encode())
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def stored_request_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(records.c.request_id)).scalars())


def test_unsendable_ids_are_refused_and_later_predictions_are_stored(
    edge: PredictionServer, engine: Engine, rows: list[dict[str, Any]]
) -> None:
    refused = {
        "request_id": ["evil\x00id", "evil\ud800id", "x" * 129, ""],
        "features.machine_type": ["pump\x00", "\udfffpump"],
        "features.rpm": [2**53 + 1],
    }
    for request_id in refused["request_id"]:
        status, body = post(edge, {"features": rows[0], "request_id": request_id})
        assert status == 422, request_id
        assert body["error"]["details"][0]["field"] == "request_id"
    for feature in ("machine_type", "rpm"):
        for value in refused[f"features.{feature}"]:
            status, body = post(edge, {"features": {**rows[0], feature: value}})
            assert status == 422, value
            assert body["error"]["details"][0]["field"] == f"features.{feature}"

    served = set()
    for i, row in enumerate(rows[1:11]):
        status, body = post(edge, {"features": row, "request_id": f"later-{i}"})
        assert status == 200
        served.add(body["request_id"])
    assert served == {f"later-{i}" for i in range(10)}

    deadline = time.monotonic() + 30
    while stored_request_ids(engine) != served and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored_request_ids(engine) == served
