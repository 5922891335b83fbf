"""Alerting in a period: alerts resolved in it, the transitions of many alerts, outbox messages
and retrain runs created in it, each period ``[start, end)``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Connection, Engine

from monitor.alerts.rules import Rule
from monitor.storage import activity, alert_rules, models, retrains, webhooks
from monitor.storage import alerts as store
from monitor.storage.engine import begin_write

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def conn(engine: Engine):
    with begin_write(engine) as connection:
        yield connection


@pytest.fixture
def rule_id(conn: Connection) -> int:
    models.add_model(conn, "pump")
    rule = alert_rules.upsert_rule(
        conn, Rule(name="drift", kind="scope_drift", model="pump"), now=T0
    )
    assert rule.id is not None
    return rule.id


def fire(conn: Connection, rule_id: int, group: str, at: datetime) -> int:
    return store.open_alert(
        conn,
        rule_id=rule_id,
        model_id=None,
        group_key=group,
        severity="warning",
        summary=f"{group} drifts",
        subjects=[group],
        details={},
        window_start=at,
        now=at,
    )


def resolve(conn: Connection, alert_id: int, at: datetime) -> None:
    store.update_alert(
        conn, alert_id, subjects=[], summary="ok", details={}, window_start=at, now=at, resolve=True
    )


def test_resolved_alerts_are_those_resolved_in_the_period_latest_first(
    conn: Connection, rule_id: int
) -> None:
    early = fire(conn, rule_id, "site:a", T0)
    resolve(conn, early, T0 + HOUR)
    late = fire(conn, rule_id, "site:b", T0)
    resolve(conn, late, T0 + 3 * HOUR)
    fire(conn, rule_id, "site:c", T0)  # still firing

    found = activity.resolved_between(conn, T0 + HOUR, T0 + 4 * HOUR)
    later_only = activity.resolved_between(conn, T0 + 2 * HOUR, T0 + 4 * HOUR)

    assert [a.id for a in found] == [late, early]
    assert [a.id for a in later_only] == [late]
    assert activity.resolved_between(conn, None, T0 + HOUR) == []  # the end is excluded
    assert activity.count_resolved(conn, None, T0 + 4 * HOUR) == 2
    assert activity.count_resolved(conn, T0 + 2 * HOUR, T0 + 4 * HOUR) == 1
    assert [a.id for a in activity.resolved_between(conn, None, T0 + 4 * HOUR, limit=1)] == [late]


def test_messages_and_their_counts_are_those_created_in_the_period(conn: Connection) -> None:
    for name in ("ops", "pager"):
        webhooks.upsert_endpoint(conn, name=name, url=f"https://{name}.example", secret="whsec_x",
                                 now=T0)  # fmt: skip
    for hour in range(3):
        webhooks.enqueue(
            conn,
            message_id=f"msg_{hour}",
            event_type="alert.fired",
            body=b"{}",
            endpoints=None,
            event_id=None,
            now=T0 + hour * HOUR,
        )
    ops = webhooks.endpoint_by_name(conn, "ops")
    assert ops is not None
    webhooks.disable_endpoint(conn, ops.id, reason="gone", now=T0)  # ops' messages: dropped

    found = activity.messages_between(conn, T0 + HOUR, T0 + 3 * HOUR)
    dropped = activity.messages_between(conn, T0 + HOUR, T0 + 3 * HOUR, status="dropped")

    assert [(m.message_id, m.endpoint) for m in found] == [
        ("msg_2", "pager"),
        ("msg_2", "ops"),
        ("msg_1", "pager"),
        ("msg_1", "ops"),
    ]
    assert {m.endpoint for m in dropped} == {"ops"} and len(dropped) == 2
    counts = activity.message_counts(conn, T0 + HOUR, T0 + 3 * HOUR)
    assert counts == {"pending": 2, "delivering": 0, "delivered": 0, "failed": 0, "dropped": 2}
    assert sum(activity.message_counts(conn, None, T0 + 3 * HOUR).values()) == 6


def test_runs_are_those_queued_in_the_period_newest_first(conn: Connection) -> None:
    model_id = models.add_model(conn, "pump").id
    hook = retrains.upsert_hook(conn, name="h", model_id=model_id, kind="reference", config={},
                                timeout_seconds=60, cooldown_seconds=0, now=T0)  # fmt: skip
    ids = []
    for hour in range(3):
        run = retrains.queue_run(conn, hook, now=T0 + hour * HOUR)
        retrains.set_run(conn, run.id, status="failed", now=T0 + hour * HOUR)
        ids.append(run.id)

    found = activity.runs_between(conn, T0 + HOUR, T0 + 3 * HOUR)

    assert [r.id for r in found] == [ids[2], ids[1]]
    assert found[0] == retrains.get_run(conn, ids[2])
    assert [r.id for r in activity.runs_between(conn, None, T0 + HOUR)] == [ids[0]]
