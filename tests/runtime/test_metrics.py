"""``edge serve``'s /metrics: predictions, their latency, errors by code, the SDK's drops and
spool, process metrics."""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

from monitor.demo_model import DemoFiles
from monitor.runtime import EdgeRuntime
from monitor.runtime.server import PredictionServer, make_server, serve_in_thread
from monitor.sdk import Monitor
from tests.prometheus import scrape


def post(srv: PredictionServer, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request("POST", "/predict", body=body)
        answer = conn.getresponse()
        answer.read()
        return answer.status
    finally:
        conn.close()


def test_metrics_count_predictions_errors_and_the_sdk_spool(
    demo: DemoFiles, rows: list[dict[str, Any]], dead_url: str, tmp_path: Path
) -> None:
    # The collector is down: kept records wait in the spool; sampling drops about half.
    monitor = Monitor(
        dead_url, "emn_x", "pump-failure", "1",
        spool_dir=tmp_path / "spool", heartbeat_interval=None, sample_rate=0.5,
    )  # fmt: skip
    runtime = EdgeRuntime(demo.model, monitor=monitor)
    server = make_server(runtime, "127.0.0.1", 0)
    thread = serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        for i, row in enumerate(rows[:20]):
            body = json.dumps({"features": row, "request_id": f"r-{i}"}).encode()
            assert post(server, body) == 200
        assert post(server, b"{not json") == 400
        assert post(server, json.dumps({"features": {}, "extra": 1}).encode()) == 422
        deadline = time.monotonic() + 30
        metrics = scrape(url)
        while not metrics.value("edge_monitor_sdk_spool_bytes", model_version="1"):
            assert time.monotonic() < deadline, "the spool never held the kept records"
            time.sleep(0.05)
            metrics = scrape(url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        runtime.close()
        monitor.close(0.1)

    assert metrics.value("edge_monitor_predictions_total", model_version="1") == 20
    assert metrics.value("edge_monitor_prediction_seconds_count") == 20
    assert metrics.value("edge_monitor_prediction_seconds_bucket", le="+Inf") == 20
    assert metrics.value("edge_monitor_prediction_errors_total", code="bad_request") == 1
    assert metrics.value("edge_monitor_prediction_errors_total", code="unknown_field") == 1
    sampled_out = metrics.value(
        "edge_monitor_sdk_dropped_total", model_version="1", reason="sampled_out"
    )
    assert sampled_out is not None and 0 < sampled_out < 20
    assert metrics.value("edge_monitor_sdk_logged_total", model_version="1") == 20
    assert metrics.value("edge_monitor_sdk_spool_records", model_version="1") == 20 - sampled_out
    assert metrics.value("process_resident_memory_bytes") > 0


def test_a_runtime_without_a_monitor_has_no_sdk_figures(
    runtime: EdgeRuntime, rows: list[dict[str, Any]]
) -> None:
    server = make_server(runtime, "127.0.0.1", 0)
    thread = serve_in_thread(server)
    try:
        assert post(server, json.dumps({"features": rows[0]}).encode()) == 200
        metrics = scrape(f"http://127.0.0.1:{server.server_address[1]}/metrics")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

    assert metrics.value("edge_monitor_predictions_total", model_version="1") == 1
    assert metrics.matching("edge_monitor_sdk_dropped_total") == []
