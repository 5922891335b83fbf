"""Alert rules and alerts over HTTP on a real collector (both databases): the admin token defines
rules, with every problem of a body named by its field path; the read token reads alerts (the
same document as the admin API and `alerts list --json`) and cannot touch rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import Engine

from monitor.commands import alerts as alert_commands
from monitor.config import Settings
from monitor.storage import alerts as alert_store
from monitor.storage import models
from monitor.storage.engine import begin_write
from tests.collector.conftest import ADMIN_TOKEN, MODEL, auth
from tests.test_cli_alerts import EXAMPLE, raise_alerts

READ_TOKEN = "read-token-of-the-alert-tests"
ADMIN = auth(ADMIN_TOKEN)
READER = auth(READ_TOKEN)

ACCURACY = {
    "model": MODEL,
    "kind": "performance",
    "params": {"metric": "accuracy", "below": 0.85},
    "fire": "2 of 3",
    "resolve": "3 of 3",
    "cooldown": "30m",
    "severity": "critical",
}


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url, data_dir=tmp_path, admin_token=ADMIN_TOKEN, read_token=READ_TOKEN
    )


@pytest.fixture
def pump(engine: Engine) -> str:
    with begin_write(engine) as conn:
        models.add_model(conn, MODEL)
    return MODEL


def schema_problems(http: httpx.Client, name: str, answer: Any) -> list[str]:
    """How ``answer`` breaks the collector's own OpenAPI schema ``name`` (empty: it does not)."""
    document = http.get("/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return [e.message for e in Draft202012Validator(schema).iter_errors(answer)]


def fields_of(answer: httpx.Response) -> dict[str, str]:
    return {d["field"]: d["message"] for d in answer.json()["error"]["details"]}


def test_a_rule_is_added_listed_replaced_and_removed(http: httpx.Client, pump: str) -> None:
    added = http.put("/v1/admin/alert-rules/accuracy", json=ACCURACY, headers=ADMIN)

    assert added.status_code == 201, added.text
    rule = added.json()
    assert rule == {
        "name": "accuracy",
        "kind": "performance",
        "model": MODEL,
        "scope": "fleet",
        "scope_key": None,
        "group_by": None,
        "fire_m": 2,
        "fire_n": 3,
        "resolve_m": 3,
        "resolve_n": 3,
        "cooldown_seconds": 1800,
        "severity": "critical",
        "endpoints": None,
        "hooks": [],
        "enabled": True,
        "params": {"metric": "accuracy", "below": 0.85},
        "source": "api",
    }
    assert schema_problems(http, "AlertRuleOut", rule) == []

    listed = http.get("/v1/admin/alert-rules", params={"model": MODEL}, headers=ADMIN)
    assert listed.json() == {"rules": [rule]}

    # What GET answers is a body PUT takes back (less where it was defined).
    again = {k: v for k, v in rule.items() if k != "source"} | {"fire_m": 1, "fire_n": 2}
    replaced = http.put("/v1/admin/alert-rules/accuracy", json=again, headers=ADMIN)
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["fire_m"], replaced.json()["fire_n"]) == (1, 2)

    removed = http.delete("/v1/admin/alert-rules/accuracy", headers=ADMIN)
    assert removed.status_code == 200 and removed.json()["name"] == "accuracy"
    gone = http.delete("/v1/admin/alert-rules/accuracy", headers=ADMIN)
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "unknown_rule"


def test_every_problem_of_a_rule_is_answered_with_its_field_path(
    http: httpx.Client, pump: str
) -> None:
    body = ACCURACY | {"fire": "3 of 2", "params": {"metric": "accuracy_score", "under": 1}}

    answer = http.put("/v1/admin/alert-rules/accuracy", json=body, headers=ADMIN)

    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "validation_failed"
    fields = fields_of(answer)
    assert fields["fire_m"] == "must be a whole number from 1 to fire_n (2)"
    assert fields["params.metric"].startswith("must be one of accuracy, precision")
    assert fields["params.under"] == "is not a parameter of this kind"
    assert http.get("/v1/admin/alert-rules", headers=ADMIN).json() == {"rules": []}


def test_a_performance_rule_takes_estimated_true_or_false_and_nothing_else(
    http: httpx.Client, pump: str
) -> None:
    labels_only = ACCURACY | {"params": {"metric": "accuracy", "below": 0.85, "estimated": False}}
    added = http.put("/v1/admin/alert-rules/accuracy", json=labels_only, headers=ADMIN)
    assert added.status_code == 201, added.text
    assert added.json()["params"] == {"metric": "accuracy", "below": 0.85, "estimated": False}

    wrong = ACCURACY | {"params": {"metric": "accuracy", "below": 0.85, "estimated": "no"}}
    refused = http.put("/v1/admin/alert-rules/accuracy", json=wrong, headers=ADMIN)
    assert refused.status_code == 422
    assert fields_of(refused) == {"params.estimated": "must be true or false"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"colour": "red"}, "colour"),
        ({"fire_m": "2"}, "fire_m"),
        ({"enabled": "yes"}, "enabled"),
        ({"model": "no-such-model"}, "model"),
        ({"hooks": ["ghost"]}, "hooks[0]"),
        ({"name": "other"}, "name"),
        ({"cooldown": "soon"}, "cooldown"),
    ],
)
def test_a_body_that_is_not_a_rule_names_the_field(
    http: httpx.Client, pump: str, change: dict[str, Any], field: str
) -> None:
    answer = http.put("/v1/admin/alert-rules/accuracy", json=ACCURACY | change, headers=ADMIN)

    assert answer.status_code == 422, answer.text
    assert field in fields_of(answer)


def test_a_rule_of_the_rules_file_is_changed_in_the_file(
    http: httpx.Client, pump: str, engine: Engine
) -> None:
    alert_commands.apply_file(engine, EXAMPLE)

    answer = http.put("/v1/admin/alert-rules/site%20drift", json=ACCURACY, headers=ADMIN)

    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "defined_in_file"
    sources = {
        r["source"] for r in http.get("/v1/admin/alert-rules", headers=ADMIN).json()["rules"]
    }
    assert sources == {"file"}


def test_the_read_token_reads_alerts_as_the_admin_does_and_cannot_touch_rules(
    http: httpx.Client, pump: str, engine: Engine
) -> None:
    firing, old = raise_alerts(engine, pump)

    read = http.get("/v1/alerts", headers=READER)
    admin = http.get("/v1/admin/alerts", headers=ADMIN)

    assert read.status_code == 200, read.text
    assert read.json() == admin.json() == alert_commands.alerts_document(engine)
    assert [a["id"] for a in read.json()["alerts"]] == [firing, old]
    assert schema_problems(http, "AlertList", read.json()) == []
    firing_only = http.get("/v1/alerts", params={"state": "firing"}, headers=READER).json()
    assert [(a["id"], a["state"]) for a in firing_only["alerts"]] == [(firing, "firing")]

    assert http.get("/v1/admin/alert-rules", headers=READER).status_code == 401
    put = http.put("/v1/admin/alert-rules/x", json=ACCURACY, headers=READER)
    assert put.status_code == 401 and put.json()["error"]["code"] == "invalid_token"
    assert http.delete("/v1/admin/alert-rules/site%20drift", headers=READER).status_code == 401
    assert http.get("/v1/alerts", headers=auth("a-stranger")).status_code == 401


def test_one_alert_comes_with_its_transitions_and_their_webhook_ids(
    http: httpx.Client, pump: str, engine: Engine
) -> None:
    firing, _ = raise_alerts(engine, pump)

    answer = http.get(f"/v1/alerts/{firing}", headers=READER)

    assert answer.status_code == 200, answer.text
    alert = answer.json()
    assert alert == http.get(f"/v1/admin/alerts/{firing}", headers=ADMIN).json()
    assert alert == alert_commands.alert_show_document(engine, firing)
    assert alert["summary"] == "site north drifts on vibration_mm_s"
    (event,) = alert["events"]
    assert (event["kind"], event["message_id"]) == ("fired", alert_store.message_id(firing, 1))
    assert schema_problems(http, "AlertWithEvents", alert) == []


def test_unknown_alerts_models_and_bad_queries_are_refused(http: httpx.Client, pump: str) -> None:
    missing = http.get("/v1/alerts/999", headers=READER)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "unknown_alert")
    model = http.get("/v1/alerts", params={"model": "nope"}, headers=READER)
    assert (model.status_code, model.json()["error"]["code"]) == (404, "unknown_model")
    state = http.get("/v1/admin/alerts", params={"state": "open"}, headers=ADMIN)
    assert state.status_code == 422 and "query.state" in fields_of(state)
    limit = http.get("/v1/alerts", params={"limit": 0}, headers=READER)
    assert limit.status_code == 422 and "query.limit" in fields_of(limit)
