"""The webhook payload of an alert transition: its schema, its text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jsonschema
import pytest

from monitor.alerts.payload import PAYLOAD_SCHEMA, build, encode, summary, text

AT = datetime(2026, 1, 1, 10, 15, tzinfo=UTC)


def data(**overrides) -> dict:
    subjects = [f"node:n{i}" for i in range(12)]
    return {
        "alert_id": 7,
        "rule": "site drift",
        "kind": "feature_drift",
        "model": "pump-failure",
        "severity": "warning",
        "state": "firing",
        "group": "site:hot-humid",
        "episode": 1,
        "subjects": subjects,
        "joined": subjects,
        "left": [],
        "window": {"start": "2026-01-01T10:00:00+00:00", "end": "2026-01-01T10:15:00+00:00"},
        "summary": summary(
            "site drift",
            "feature_drift",
            "site:hot-humid",
            subjects,
            {"drifted_features": ["vibration_mm_s"]},
        ),
        "value": 0.001,
        "bound": 0.05,
        "details": {"drifted_features": ["vibration_mm_s"]},
        "fired_at": AT.isoformat(),
        "resolved_at": None,
        "event": {"seq": 1, "message_id": "msg_abcdefghijklmnopqrstuvwxyz234567"},
        **overrides,
    }


def test_the_slack_text_says_what_where_and_when_in_one_line() -> None:
    body = build(transition="fired", timestamp=AT, data=data())
    assert body["text"] == (
        "FIRING [warning] site drift: 12 nodes at site hot-humid drift on vibration_mm_s "
        "(pump-failure, window 2026-01-01 10:00-10:15)"
    )
    assert body["type"] == "alert.fired"
    assert "\n" not in body["text"]


@pytest.mark.parametrize(
    ("transition", "state"), [("fired", "firing"), ("updated", "firing"), ("resolved", "resolved")]
)
def test_every_transition_s_payload_validates_against_the_schema(transition, state) -> None:
    resolved_at = AT.isoformat() if state == "resolved" else None
    body = build(
        transition=transition, timestamp=AT, data=data(state=state, resolved_at=resolved_at)
    )
    jsonschema.Draft202012Validator.check_schema(PAYLOAD_SCHEMA)
    jsonschema.validate(json.loads(encode(body)), PAYLOAD_SCHEMA)


def test_a_payload_missing_its_alert_is_refused_by_the_schema() -> None:
    body = build(transition="fired", timestamp=AT, data=data())
    del body["data"]["alert_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, PAYLOAD_SCHEMA)


def test_summaries_of_other_kinds() -> None:
    assert summary("acc", "performance", "fleet", ["fleet"], {"metric": "accuracy"}) == (
        "fleet: accuracy beyond its bound"
    )
    assert summary("off", "node_offline", "node:n1", ["node:n1"]) == "node n1: offline"
    assert (
        text(
            transition="resolved",
            severity="critical",
            rule="off",
            summary="node n1: offline",
            model=None,
            window_start=None,
            window_end=None,
        )
        == "RESOLVED [critical] off: node n1: offline"
    )
