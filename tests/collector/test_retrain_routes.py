"""The retrain admin routes on a real collector: define a webhook hook, trigger it by hand, the
worker's job sends the signed request to a loopback receiver, and the pipeline reports the
version it registered through the result route (both databases)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import Engine

from monitor.alerts import signing
from monitor.collector.routes.retrains import RunStatus
from monitor.config import Settings
from monitor.jobs import retrain as job
from monitor.storage import registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model
from tests.collector.conftest import ADMIN_TOKEN, MODEL

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class _Pipeline(BaseHTTPRequestHandler):
    """An external training pipeline: it takes the request and answers 202 at once."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers.items()), body))
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def pipeline() -> Iterator[str]:
    _Pipeline.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pipeline)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/train"
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    # Loopback is refused unless allowed: the pipeline here listens on 127.0.0.1.
    return Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        webhook_allowed_networks=["127.0.0.1/32"],
    )


@pytest.fixture(autouse=True)
def no_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    # The promotion gate is another module's: here a produced run stays produced.
    monkeypatch.setattr(job, "PROMOTION", "tests.no_such_promotion_module")


@pytest.fixture
def model(engine: Engine) -> None:
    with begin_write(engine) as conn:
        model_id = add_model(conn, MODEL).id
        registry.register_version(conn, model_id, "1", artifact=b"onnx-1", card=None)
        registry.promote(conn, model_id, "1")


def register(engine: Engine, version: str) -> None:
    with begin_write(engine) as conn:
        model_id = retrains.list_hooks(conn)[0].model_id
        registry.register_version(conn, model_id, version, artifact=b"onnx", card=None)


def put_webhook(http: httpx.Client, url: str, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "kind": "webhook", "url": url, "timeout": "2h", **extra}
    return http.put("/v1/admin/retrain/hooks/pipeline", json=body, headers=ADMIN)


def test_a_webhook_hook_is_triggered_sent_signed_and_its_result_reported(
    http: httpx.Client, engine: Engine, settings: Settings, model: None, pipeline: str
) -> None:
    created = put_webhook(http, pipeline, cooldown="0")
    assert created.status_code == 200, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    listed = http.get("/v1/admin/retrain/hooks", headers=ADMIN).json()["hooks"]
    assert [(h["name"], h["kind"], h["timeout_seconds"]) for h in listed] == [
        ("pipeline", "webhook", 7200.0)
    ]
    assert listed[0]["config"] == {"url": pipeline, "secret_set": True}

    queued = http.post("/v1/admin/retrain/hooks/pipeline/runs", headers=ADMIN)
    assert queued.status_code == 202
    run = queued.json()
    assert (run["status"], run["trigger"], run["hook"], run["in_flight"]) == (
        "queued",
        "manual",
        "pipeline",
        True,
    )
    again = http.post("/v1/admin/retrain/hooks/pipeline/runs", headers=ADMIN)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "retrain_in_flight")

    # The worker's job sends the signed request; the run then waits for the pipeline.
    assert job.run_queued(engine, settings) == 1
    ((headers, body),) = _Pipeline.received
    assert signing.verify(secret, headers, body) == f"msg_retrain_run_{run['id']}"
    request = json.loads(body)
    assert request["type"] == "retrain.requested"
    assert request["data"]["run_id"] == run["id"]
    assert request["data"]["report"]["path"] == f"/v1/admin/retrain/runs/{run['id']}/result"
    assert secret not in body.decode()
    waiting = http.get(f"/v1/admin/retrain/runs/{run['id']}", headers=ADMIN).json()
    assert (waiting["status"], waiting["details"]["awaiting_result"]) == ("running", True)

    # The pipeline registered version 2, then reports it.
    path = request["data"]["report"]["path"]
    unknown = http.post(path, json={"status": "produced", "version": "2"}, headers=ADMIN)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_version")
    register(engine, "2")
    reported = http.post(path, json={"status": "produced", "version": "2"}, headers=ADMIN)
    assert reported.status_code == 200, reported.text
    done = reported.json()
    assert (done["status"], done["version"]) == ("produced", "2")
    assert "pipeline reported produced version 2" in done["output"]
    # The collector never runs the gate: the worker's next pass hands the run over.
    assert "considered" not in done["details"]

    late = http.post(path, json={"status": "failed", "output": "late"}, headers=ADMIN)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "run_not_running")

    runs = http.get("/v1/admin/retrain/runs", params={"model": MODEL}, headers=ADMIN).json()
    assert [(r["id"], r["status"], r["version"]) for r in runs["runs"]] == [
        (run["id"], "produced", "2")
    ]
    assert "output" not in runs["runs"][0]


def test_a_pipeline_that_reports_a_failure_frees_the_model_and_cooldown_holds(
    http: httpx.Client, engine: Engine, settings: Settings, model: None, pipeline: str
) -> None:
    put_webhook(http, pipeline, cooldown="1h")
    run = http.post("/v1/admin/retrain/hooks/pipeline/runs", headers=ADMIN).json()
    job.run_queued(engine, settings)

    failed = http.post(
        f"/v1/admin/retrain/runs/{run['id']}/result",
        json={"status": "failed", "output": "out of memory"},
        headers=ADMIN,
    )
    assert failed.status_code == 200
    assert failed.json()["status"] == "failed"
    assert failed.json()["output"].endswith("out of memory")

    cooling = http.post("/v1/admin/retrain/hooks/pipeline/runs", headers=ADMIN)
    assert (cooling.status_code, cooling.json()["error"]["code"]) == (409, "cooling_down")


def test_a_hook_body_with_problems_is_refused_with_every_field(
    http: httpx.Client, model: None
) -> None:
    answer = http.put(
        "/v1/admin/retrain/hooks/bad",
        json={"model": MODEL, "kind": "webhook", "argv": ["x"], "timeout": "soon"},
        headers=ADMIN,
    )
    assert answer.status_code == 422
    fields = {d["field"] for d in answer.json()["error"]["details"]}
    assert fields == {"argv", "url", "timeout"}

    refused = http.put(
        "/v1/admin/retrain/hooks/bad",
        json={"model": MODEL, "kind": "webhook", "url": "http://10.0.0.1/train"},
        headers=ADMIN,
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "refused_target")

    no_model = http.put(
        "/v1/admin/retrain/hooks/bad", json={"model": "fan", "kind": "reference"}, headers=ADMIN
    )
    assert (no_model.status_code, no_model.json()["error"]["code"]) == (404, "unknown_model")


def test_a_command_hook_is_stored_replaced_and_removed(http: httpx.Client, model: None) -> None:
    body = {"model": MODEL, "kind": "command", "argv": ["python", "train.py"], "cooldown": "0"}
    first = http.put("/v1/admin/retrain/hooks/nightly", json=body, headers=ADMIN)
    assert first.status_code == 200
    assert first.json()["config"] == {"argv": ["python", "train.py"], "env": {}}
    assert "secret" not in first.json()
    body["enabled"] = False
    assert (
        http.put("/v1/admin/retrain/hooks/nightly", json=body, headers=ADMIN).json()["enabled"]
        is False
    )
    disabled = http.post("/v1/admin/retrain/hooks/nightly/runs", headers=ADMIN)
    assert (disabled.status_code, disabled.json()["error"]["code"]) == (409, "hook_disabled")

    assert http.delete("/v1/admin/retrain/hooks/nightly", headers=ADMIN).json() == {
        "name": "nightly",
        "removed": True,
    }
    gone = http.delete("/v1/admin/retrain/hooks/nightly", headers=ADMIN)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "unknown_hook")


def test_unknown_runs_and_bad_queries_are_refused(http: httpx.Client, model: None) -> None:
    missing = http.get("/v1/admin/retrain/runs/999", headers=ADMIN)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_run")
    result = http.post(
        "/v1/admin/retrain/runs/999/result", json={"status": "failed"}, headers=ADMIN
    )
    assert result.status_code == 404
    bad = http.get("/v1/admin/retrain/runs", params={"status": "done"}, headers=ADMIN)
    assert bad.status_code == 422
    no_version = http.post(
        "/v1/admin/retrain/runs/1/result", json={"status": "produced"}, headers=ADMIN
    )
    assert no_version.status_code == 422
    assert http.get("/v1/admin/retrain/runs", headers=ADMIN).json() == {"runs": []}
    assert http.get("/v1/admin/retrain/hooks").status_code == 401


def test_the_documented_statuses_are_the_stored_ones() -> None:
    assert get_args(RunStatus) == retrains.STATUSES
