"""The read API on a real collector: analysed windows, their verdicts and node health, for the
read token (which reads and does nothing else) or the admin token.

The verdicts it answers are storage.results' own, and its answer is the very document
`edge-monitor results --json` prints."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import Engine

from monitor.collector.server import BackgroundCollector
from monitor.commands import results as read_commands
from monitor.config import Settings
from monitor.storage import nodes
from monitor.storage.engine import begin_write
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth, batch, record
from tests.storage.test_readout import (
    WINDOW,
    analyse_fleet,
    document_verdicts,
    stored_verdicts,
)

READ_TOKEN = "read-only-token-for-dashboards"
READER = auth(READ_TOKEN)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, read_token=READ_TOKEN
    )


def matches_schema(http: httpx.Client, name: str, answer: dict[str, Any]) -> list[str]:
    """How ``answer`` breaks the collector's own OpenAPI schema ``name`` (empty: it does not)."""
    document = http.get("/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return [e.message for e in Draft202012Validator(schema).iter_errors(answer)]


def test_the_results_are_the_stored_verdicts_and_what_the_cli_prints(
    engine: Engine, http: httpx.Client
) -> None:
    fleet = analyse_fleet(engine)
    latest = fleet.starts[-1]

    answer = http.get(f"/v1/models/{MODEL}/results", headers=READER)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    (window,) = body["windows"]
    assert window["window_start"] == latest.isoformat()
    assert window["window_end"] == (latest + WINDOW).isoformat()
    assert document_verdicts(window) == stored_verdicts(engine, fleet.model_id, latest)
    assert body == read_commands.results_document(engine, MODEL)
    assert matches_schema(http, "ResultList", body) == []
    # What was found: the drifting site and its nodes, and nothing elsewhere.
    drifted = {s["scope"] for s in window["scopes"] if s["drift"]["drifted"]}
    assert {"fleet", "site:site-a", *(f"node:{n}" for n in fleet.drifting_nodes())} <= drifted
    assert not {s for s in drifted if s.startswith("site:") and s != "site:site-a"}
    steady = [f"node:{p.name}" for p in fleet.plans if p.name not in fleet.drifting_nodes()]
    features = {s["scope"]: s["drift"]["drifted_features"] for s in window["scopes"]}
    assert all(features[s] == [] for s in steady)
    fleet_scope = window["scopes"][0]
    assert fleet_scope["scope"] == "fleet"
    assert "temperature_c" in fleet_scope["drift"]["drifted_features"]
    assert fleet_scope["drift"]["model_version"] == "1"
    assert fleet_scope["performance"]["n_labelled"] == 8 * 200 // 2


def test_one_scope_one_window_or_the_windows_since_a_time(
    engine: Engine, http: httpx.Client
) -> None:
    fleet = analyse_fleet(engine, windows=3, per_node=60)
    first, second, third = fleet.starts

    def get(**params: Any) -> dict[str, Any]:
        answer = http.get(f"/v1/models/{MODEL}/results", params=params, headers=READER)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    node = fleet.drifting_nodes()[0]
    one = get(scope=f"node:{node}")
    assert [s["scope"] for s in one["windows"][0]["scopes"]] == [f"node:{node}"]
    inside = get(window=(second + WINDOW / 3).isoformat(), scope="fleet")
    assert [w["window_start"] for w in inside["windows"]] == [second.isoformat()]
    since = get(since=second.isoformat(), limit=5, scope="fleet")
    assert [w["window_start"] for w in since["windows"]] == [third.isoformat(), second.isoformat()]
    assert since == read_commands.results_document(
        engine, MODEL, since=second, limit=5, scope="fleet"
    )
    assert document_verdicts(inside["windows"][0]) == {
        "fleet": stored_verdicts(engine, fleet.model_id, second)["fleet"]
    }
    assert get(scope="site:nowhere")["windows"][0]["scopes"] == []
    assert first.isoformat() not in str(since)


def test_the_windows_newest_first_with_the_fleet_verdict_and_drifting_nodes(
    engine: Engine, http: httpx.Client
) -> None:
    fleet = analyse_fleet(engine)

    answer = http.get(f"/v1/models/{MODEL}/windows", headers=READER)
    limited = http.get(f"/v1/models/{MODEL}/windows", params={"limit": 1}, headers=READER)

    assert answer.status_code == 200, answer.text
    windows = answer.json()["windows"]
    assert [w["window_start"] for w in windows] == [s.isoformat() for s in fleet.starts[::-1]]
    assert [(w["drifted"], w["nodes_drifting"], w["nodes"]) for w in windows] == [
        (True, len(fleet.drifting_nodes()), 8),
        (False, 0, 8),
    ]
    assert [w["n_rows"] for w in windows] == [1600, 1600]
    assert [w["window_start"] for w in limited.json()["windows"]] == [windows[0]["window_start"]]
    assert answer.json() == read_commands.windows_document(engine, MODEL)
    assert matches_schema(http, "WindowList", answer.json()) == []


def test_a_model_not_analysed_yet_has_no_windows(http: httpx.Client, token: str) -> None:
    for path in ("windows", "results"):
        answer = http.get(f"/v1/models/{MODEL}/{path}", headers=READER)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"model": MODEL, "windows": []}


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("results", {"window": "yesterday"}, "query.window"),
        ("results", {"since": "soon"}, "query.since"),
        ("results", {"scope": "planet:mars"}, "query.scope"),
        ("results", {"scope": "node:"}, "query.scope"),
        ("results", {"window": "2026-11-20T00:00:00Z", "since": "2026-11-20"}, "query.since"),
        ("results", {"limit": "0"}, "query.limit"),
        ("results", {"limit": "many"}, "query.limit"),
        ("windows", {"limit": "100000"}, "query.limit"),
        ("windows", {"since": "2026-13-01"}, "query.since"),
    ],
)
def test_a_bad_query_value_is_a_422_naming_its_field(
    http: httpx.Client, token: str, path: str, params: dict[str, str], field: str
) -> None:
    answer = http.get(f"/v1/models/{MODEL}/{path}", params=params, headers=READER)

    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_failed"
    assert [d["field"] for d in error["details"]] == [field]
    assert "body" not in error["message"]  # a GET has none: the message names the query


def test_an_unknown_model_or_a_time_no_window_holds_is_a_404(
    engine: Engine, http: httpx.Client
) -> None:
    fleet = analyse_fleet(engine, per_node=60)

    unknown = http.get("/v1/models/no-such-model/results", headers=READER)
    unknown_windows = http.get("/v1/models/no-such-model/windows", headers=READER)
    later = fleet.starts[-1] + 2 * WINDOW
    no_window = http.get(
        f"/v1/models/{MODEL}/results", params={"window": later.isoformat()}, headers=READER
    )

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_model")
    assert unknown_windows.json()["error"]["code"] == "unknown_model"
    assert (no_window.status_code, no_window.json()["error"]["code"]) == (404, "no_window")


def test_a_nul_in_the_model_or_a_query_value_is_refused_as_documented(
    http: httpx.Client, token: str
) -> None:
    document = http.get("/openapi.json").json()
    for path, params in [
        ("/v1/models/a%00b/results", {}),
        ("/v1/models/a%00b/windows", {}),
        (f"/v1/models/{MODEL}/results", {"window": "2026\x00"}),
        (f"/v1/models/{MODEL}/results", {"since": "\x00"}),
    ]:
        answer = http.get(path, params=params, headers=READER)
        status, code = answer.status_code, answer.json()["error"]["code"]
        assert (status, code) in {
            (422, "invalid_string"),  # PostgreSQL cannot hold the name
            (404, "unknown_model"),  # SQLite finds no such model
            (422, "validation_failed"),
        }, (path, answer.text)
        template = path.replace("a%00b", "{model}").replace(MODEL, "{model}")
        assert str(status) in document["paths"][template]["get"]["responses"]


# --- who may read -------------------------------------------------------------------------------


def test_the_read_token_reads_and_can_do_nothing_else(http: httpx.Client, token: str) -> None:
    reads = [
        http.get(f"/v1/models/{MODEL}/windows", headers=READER),
        http.get(f"/v1/models/{MODEL}/results", headers=READER),
        http.get("/v1/nodes/health", headers=READER),
    ]
    assert [r.status_code for r in reads] == [200, 200, 200]

    refused = [
        http.get("/v1/admin/nodes", headers=READER),
        http.post("/v1/admin/models", json={"name": "m2"}, headers=READER),
        http.post("/v1/admin/nodes/node-1/revoke", headers=READER),
        http.post("/v1/records", json=batch([record()]), headers=READER),
        http.post("/v1/labels", json={"model": MODEL, "labels": []}, headers=READER),
        http.post("/v1/heartbeats", json={"ts": time.time(), "sdk": {}}, headers=READER),
        http.get(f"/v1/models/{MODEL}/assignment", headers=READER),
    ]
    for answer in refused:
        assert answer.status_code in (401, 403), (answer.request.url, answer.text)
        assert answer.json()["error"]["code"] in ("invalid_token", "unauthorized")


def test_the_admin_token_reads_too_and_others_are_refused(http: httpx.Client, token: str) -> None:
    assert http.get("/v1/nodes/health", headers=auth(ADMIN_TOKEN)).status_code == 200
    for headers, code in [
        ({}, "unauthorized"),
        (auth("not-the-read-token"), "invalid_token"),
        (auth(token), "invalid_token"),  # a node's token reads nothing here
    ]:
        answer = http.get(f"/v1/models/{MODEL}/results", headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, code)


def test_without_a_read_or_admin_token_the_read_api_is_disabled(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with BackgroundCollector(Settings(database_url=db_url, data_dir=tmp_path)) as running:
        answer = httpx.get(f"{running.url}/v1/nodes/health", headers=READER)

    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "read_disabled"


def test_a_read_token_alone_opens_no_admin_route(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    settings = Settings(database_url=db_url, data_dir=tmp_path, read_token=READ_TOKEN)
    with BackgroundCollector(settings) as running:
        reads = httpx.get(f"{running.url}/v1/nodes/health", headers=READER)
        admin = httpx.get(f"{running.url}/v1/admin/nodes", headers=READER)

    assert reads.status_code == 200
    assert (admin.status_code, admin.json()["error"]["code"]) == (403, "admin_disabled")


# --- node health --------------------------------------------------------------------------------


def test_node_health_says_which_nodes_are_online_silent_or_revoked(
    engine: Engine, http: httpx.Client, token: str
) -> None:
    with begin_write(engine) as conn:
        nodes.add_node(conn, "node-2")
        nodes.add_node(conn, "node-3")
        nodes.revoke_node(conn, "node-3")
        nodes.add_node(conn, "erp", role="labeller")
    beat = {"ts": time.time(), "model": MODEL, "model_version": "1", "sdk": {"logged": 1}}
    assert http.post("/v1/heartbeats", json=beat, headers=auth(token)).status_code == 204

    answer = http.get("/v1/nodes/health", headers=READER)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {n["name"]: n["status"] for n in body["nodes"]} == {
        "erp": None,
        "node-1": "online",
        "node-2": "silent",
        "node-3": "revoked",
    }
    assert body["counts"] == {
        "online": 1,
        "degraded": 0,
        "offline": 0,
        "silent": 1,
        "revoked": 1,
    }
    assert body["offline_after_seconds"] == 120
    online = next(n for n in body["nodes"] if n["name"] == "node-1")
    assert online["last_heartbeat_at"] is not None and online["site"] == "plant-1"
    assert matches_schema(http, "NodeHealthList", body) == []
    assert body == read_commands.health_document(engine, timedelta(seconds=120))
