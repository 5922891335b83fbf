"""``edge serve``'s HTTP server on a real loopback port: answers, the bad-input table, counting."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.runtime import EdgeRuntime
from monitor.runtime.server import MAX_BODY_BYTES, PredictionServer, make_server, serve_in_thread

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(runtime: EdgeRuntime) -> Iterator[PredictionServer]:
    srv = make_server(runtime, "127.0.0.1", 0)
    thread = serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def call(
    srv: PredictionServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def predict(srv: PredictionServer, payload: Any) -> tuple[int, Any]:
    return call(srv, "POST", "/predict", json.dumps(payload).encode())


def test_a_valid_request_gets_its_prediction(
    server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    status, body = predict(server, {"features": rows[0], "request_id": "req-1"})
    assert status == 200
    expected = runtime.predict(rows[0])
    assert body == {
        "request_id": "req-1",
        "prediction": expected.label,
        "probabilities": pytest.approx(expected.probabilities, abs=1e-6),
        "model_version": "1",
        "latency_ms": pytest.approx(body["latency_ms"]),
    }
    status, body = predict(server, {"features": {**rows[1], "temperature_c": 900.0}})
    assert status == 200 and len(body["request_id"]) == 32
    assert body["warnings"] == [
        {
            "field": "features.temperature_c",
            "code": "out_of_range",
            "message": "900.0 is outside [-40, 200]; served as is",
        }
    ]


def row0(rows: list[dict[str, Any]], **changes: Any) -> bytes:
    features = dict(rows[0])
    for key, value in changes.items():
        if value is KeyError:
            features.pop(key)
        else:
            features[key] = value
    return json.dumps({"features": features}).encode()


# name -> (body maker, headers, status, error code, first detail field, counted as)
BAD = {
    "malformed JSON": (
        lambda r: b'{"features": {',
        None,
        400,
        "bad_request",
        "body",
        "bad_request",
    ),
    "not UTF-8": (
        lambda r: b'{"features": "\xff"}',
        None,
        400,
        "bad_request",
        "body",
        "bad_request",
    ),
    "body not an object": (
        lambda r: b"[1, 2]",
        None,
        422,
        "validation_failed",
        "body",
        "not_an_object",
    ),
    "no features": (
        lambda r: b'{"request_id": "x"}',
        None,
        422,
        "validation_failed",
        "features",
        "missing_field",
    ),
    "unknown field": (
        lambda r: json.dumps({"features": r[0], "extra": 1}).encode(),
        None,
        422,
        "validation_failed",
        "extra",
        "unknown_field",
    ),
    "features not an object": (
        lambda r: b'{"features": [1, 2]}',
        None,
        422,
        "validation_failed",
        "features",
        "not_an_object",
    ),
    "missing feature": (
        lambda r: row0(r, rpm=KeyError),
        None,
        422,
        "validation_failed",
        "features.rpm",
        "missing_feature",
    ),
    "wrong type": (
        lambda r: row0(r, load_pct="high"),
        None,
        422,
        "validation_failed",
        "features.load_pct",
        "invalid_type",
    ),
    "unknown feature": (
        lambda r: row0(r, colour="red"),
        None,
        422,
        "validation_failed",
        "features.colour",
        "unknown_feature",
    ),
    "infinity": (
        lambda r: row0(r, rpm=float("inf")),  # json.dumps writes Infinity, json.loads reads it
        None,
        422,
        "validation_failed",
        "features.rpm",
        "invalid_value",
    ),
    "bad request id": (
        lambda r: json.dumps({"features": r[0], "request_id": 5}).encode(),
        None,
        422,
        "validation_failed",
        "request_id",
        "invalid_type",
    ),
    # float32 overflow: served before as NaN probabilities, and the NaN answer could not be
    # encoded, so the connection dropped without a response.
    "number beyond float32": (
        lambda r: row0(r, rpm=1e308),
        None,
        422,
        "validation_failed",
        "features.rpm",
        "invalid_value",
    ),
    "integer beyond any float": (
        lambda r: row0(r, rpm=10**400),
        None,
        422,
        "validation_failed",
        "features.rpm",
        "invalid_value",
    ),
    "integer of 5000 digits": (  # more than Python's JSON parser reads
        lambda r: b'{"features": {"rpm": ' + b"7" * 5000 + b"}}",
        None,
        400,
        "bad_request",
        "body",
        "bad_request",
    ),
    "nested too deeply": (
        lambda r: b'{"features": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        None,
        400,
        "bad_request",
        "body",
        "bad_request",
    ),
    # Request ids the wire cannot carry: the SDK would queue a record the collector refuses.
    "request id with NUL": (
        lambda r: json.dumps({"features": r[0], "request_id": "evil\u0000id"}).encode(),
        None,
        422,
        "validation_failed",
        "request_id",
        "invalid_value",
    ),
    "request id with a lone surrogate": (
        lambda r: json.dumps({"features": r[0], "request_id": "evil\ud800id"}).encode(),
        None,
        422,
        "validation_failed",
        "request_id",
        "invalid_value",
    ),
    "request id too long": (
        lambda r: json.dumps({"features": r[0], "request_id": "x" * 129}).encode(),
        None,
        422,
        "validation_failed",
        "request_id",
        "invalid_value",
    ),
    "empty request id": (
        lambda r: json.dumps({"features": r[0], "request_id": ""}).encode(),
        None,
        422,
        "validation_failed",
        "request_id",
        "invalid_value",
    ),
    "category with NUL": (  # an unknown category is served and logged: it must travel
        lambda r: row0(r, machine_type="pump\u0000"),
        None,
        422,
        "validation_failed",
        "features.machine_type",
        "invalid_value",
    ),
    "oversized body": (
        lambda r: b" " * (MAX_BODY_BYTES + 1),
        None,
        413,
        "payload_too_large",
        "body",
        "payload_too_large",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_gets_an_exact_error_and_is_counted(
    case: str, server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    make, headers, status, code, field, counted = BAD[case]
    got_status, body = call(server, "POST", "/predict", make(rows), headers)
    assert got_status == status
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["error"]["details"][0]["field"] == field
    assert body["error"]["details"][0]["code"] == counted
    # The server keeps serving, and the failure is in the telemetry.
    ok_status, _ = predict(server, {"features": rows[1]})
    assert ok_status == 200
    t = runtime.telemetry()
    assert t["errors"] == {counted: 1} and t["errors_total"] == 1 and t["rows"] == 1


def test_protocol_errors(server: PredictionServer, rows: list[dict[str, Any]]) -> None:
    assert call(server, "GET", "/nope")[0] == 404
    status, body = call(server, "GET", "/predict")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")
    assert call(server, "POST", "/elsewhere", b"{}")[0] == 404
    # No Content-Length: http.client sends chunked for an iterable body.
    status, body = call(
        server, "POST", "/predict", iter([b'{"features": {}}']), {"Transfer-Encoding": "chunked"}
    )
    assert (status, body["error"]["code"]) == (411, "length_required")
    assert predict(server, {"features": rows[0]})[0] == 200


def test_healthz_reports_the_model_and_its_telemetry(
    server: PredictionServer, rows: list[dict[str, Any]]
) -> None:
    predict(server, {"features": rows[0]})
    predict(server, {"features": {"rpm": 1}})
    status, body = call(server, "GET", "/healthz")
    assert status == 200
    assert (body["status"], body["model"], body["model_version"]) == ("ok", "pump-failure", "1")
    t = body["telemetry"]
    assert t["calls"] == 2 and t["rows"] == 1 and t["errors"] == {"missing_feature": 1}
    assert t["latency_ms"]["window"] == 1


def test_keep_alive_clients_in_parallel(
    server: PredictionServer, runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    failures: list[Any] = []

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        for i in range(50):  # one connection, many requests
            body = json.dumps({"features": rows[k * 50 + i]}).encode()
            conn.request("POST", "/predict", body=body)
            resp = conn.getresponse()
            data = json.loads(resp.read())
            if resp.status != 200:
                failures.append(data)
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert runtime.telemetry()["rows"] == 200


def test_the_edge_serve_command(rows: list[dict[str, Any]]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "edge", "serve", "--port", "0", "--poll-interval", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "MONITOR_LOG_LEVEL": "WARNING"},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving pump-failure 1 on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/predict", body=json.dumps({"features": rows[0]}).encode())
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["model_version"] == "1"
        conn.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr


def test_edge_serve_usage_errors_are_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_NODE_TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "edge", "serve", "--collector", "http://x"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2  # a usage error (README: Exit codes and errors)
    assert result.stderr.strip() == (
        "edge-monitor: error: --collector needs this node's token: --token-file PATH or "
        "MONITOR_NODE_TOKEN"
    )
    result = subprocess.run(
        [sys.executable, "-m", "monitor", "edge", "serve", "--model", "/nonexistent.onnx"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent" in lines[0]
