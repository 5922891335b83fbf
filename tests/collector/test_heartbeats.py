"""POST /v1/heartbeats: a node's SDK counters and runtime telemetry are kept per node."""

from __future__ import annotations

import time

import httpx
from sqlalchemy import Engine

from monitor import wire
from monitor.storage.heartbeats import latest_heartbeat
from monitor.storage.nodes import get_node
from tests.collector.conftest import MODEL, auth


def test_a_heartbeat_is_stored_and_marks_the_node_alive(
    http: httpx.Client, token: str, engine: Engine
) -> None:
    sdk = {"logged": 10, "delivered": 8, "dropped": {"queue_full": 2}, "spool_records": 0}
    body = {
        "ts": time.time(),
        "model": MODEL,
        "model_version": "7",
        "sdk": sdk,
        "runtime": {"p95_ms": 3.1},
    }

    answer = http.post(wire.HEARTBEATS_PATH, json=body, headers=auth(token))

    assert answer.status_code == 204
    with engine.connect() as conn:
        node = get_node(conn, "node-1")
        beat = latest_heartbeat(conn, node.id)
    assert node.last_heartbeat_at is not None
    assert beat is not None
    assert beat.sdk == sdk
    assert beat.runtime == {"p95_ms": 3.1}
    assert beat.model_version_id is not None


def test_a_heartbeat_with_a_bad_shape_is_refused(http: httpx.Client, token: str) -> None:
    answer = http.post(wire.HEARTBEATS_PATH, json={"sdk": [1, 2]}, headers=auth(token))

    assert answer.status_code == 422
    assert answer.json()["error"]["details"][0]["field"] == "sdk"


def test_a_heartbeat_needs_a_valid_token(http: httpx.Client, token: str) -> None:
    answer = http.post(wire.HEARTBEATS_PATH, json={"sdk": {}}, headers=auth("emn_nope"))

    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_token"
