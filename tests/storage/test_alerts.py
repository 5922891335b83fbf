"""Stored alert state: observations replaced per window, episodes, events with stable ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from monitor.alerts.rules import Rule
from monitor.errors import NotFound
from monitor.storage import alerts
from monitor.storage.alert_rules import upsert_rule
from monitor.storage.engine import begin_write
from monitor.storage.models import add_model

T0 = datetime(2026, 1, 1, tzinfo=UTC)
W = timedelta(minutes=15)


def setup_rule(engine: Engine) -> tuple[int, int]:
    with begin_write(engine) as conn:
        model_id = add_model(conn, "pump").id
        rule = upsert_rule(conn, Rule(name="r", kind="scope_drift", model="pump"), now=T0)
    assert rule.id is not None
    return model_id, rule.id


def test_observing_a_window_again_replaces_its_rows(engine: Engine) -> None:
    model_id, rule_id = setup_rule(engine)
    with begin_write(engine) as conn:
        for i in range(3):
            alerts.record_evaluations(
                conn, [rule_id], model_id, T0 + i * W, T0 + (i + 1) * W, now=T0
            )
        alerts.save_observations(
            conn,
            T0,
            T0 + W,
            {
                rule_id: [
                    alerts.Observation("site:a", T0, "breach", 0.5, None, {"x": 1}),
                    alerts.Observation("site:b", T0, "unknown"),
                ]
            },
            now=T0,
        )
        alerts.save_observations(
            conn, T0, T0 + W, {rule_id: [alerts.Observation("site:a", T0, "breach", 0.7)]}, now=T0
        )
        alerts.record_evaluations(conn, [rule_id], model_id, T0, T0 + W, now=T0 + W)
        windows = alerts.judged_windows(conn, {rule_id: 2})[rule_id]
        found = alerts.observations(conn, {rule_id: [T0]})[rule_id]
    assert windows == [T0 + W, T0 + 2 * W]
    assert [(o.subject, o.state, o.value) for o in found] == [("site:a", "breach", 0.7)]


def test_alerts_of_a_group_are_numbered_and_their_events_get_stable_distinct_ids(
    engine: Engine,
) -> None:
    model_id, rule_id = setup_rule(engine)
    common: dict[str, Any] = {
        "rule_id": rule_id,
        "model_id": model_id,
        "group_key": "site:a",
        "severity": "warning",
        "summary": "site a drifts",
        "details": {},
        "window_start": T0,
    }
    with begin_write(engine) as conn:
        first = alerts.open_alert(conn, subjects=["site:a"], now=T0, **common)
        fired = alerts.add_event(
            conn, first, kind="fired", window_start=T0, payload={}, seq=1, now=T0
        )
        alerts.update_alert(
            conn,
            first,
            subjects=[],
            summary="ok",
            details={},
            window_start=T0,
            now=T0 + W,
            resolve=True,
        )
        resolved = alerts.add_event(
            conn,
            first,
            kind="resolved",
            window_start=T0,
            payload={},
            seq=alerts.next_seq(conn, first),
            now=T0 + W,
        )
        second = alerts.open_alert(conn, subjects=["site:a"], now=T0 + 2 * W, **common)
    with engine.connect() as conn:
        assert alerts.get_alert(conn, first).state == "resolved"
        assert alerts.get_alert(conn, second).episode == 2
        assert [a.id for a in alerts.list_alerts(conn, state="firing")] == [second]
        assert [a.id for a in alerts.list_alerts(conn, model_id=model_id)] == [second, first]
        assert alerts.last_resolved(conn, [rule_id]) == {rule_id: {"site:a": T0 + W}}
        assert [e.seq for e in alerts.alert_events(conn, first)] == [1, 2]
        with pytest.raises(NotFound):
            alerts.get_alert(conn, 999)
    assert resolved.seq == 2
    assert fired.message_id == alerts.message_id(first, 1) != resolved.message_id
    assert fired.message_id.startswith("msg_") and len(fired.message_id) <= 64


def test_two_alerts_cannot_share_an_episode(engine: Engine) -> None:
    model_id, rule_id = setup_rule(engine)
    with pytest.raises(IntegrityError), begin_write(engine) as conn:
        alerts.open_alert(
            conn,
            rule_id=rule_id,
            model_id=model_id,
            group_key="g",
            severity="info",
            summary="",
            subjects=[],
            details={},
            window_start=None,
            now=T0,
        )
        from monitor.storage.tables import alerts as table

        conn.execute(
            table.insert().values(
                rule_id=rule_id,
                model_id=model_id,
                group_key="g",
                episode=1,
                state="firing",
                severity="info",
                summary="",
                subjects=[],
                details={},
                fired_at=T0,
                updated_at=T0,
            )
        )
