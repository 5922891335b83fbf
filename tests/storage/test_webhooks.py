"""Webhook endpoints, the outbox and the delivery log, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.alerts.signing import new_secret
from monitor.storage import webhooks
from monitor.storage.engine import begin_write

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)


def _endpoint(engine: Engine, name: str = "ops", **kw: Any) -> webhooks.Endpoint:
    with begin_write(engine) as conn:
        return webhooks.upsert_endpoint(
            conn, name=name, url=f"https://example.com/{name}", secret=new_secret(), now=T0, **kw
        )


def _enqueue(engine: Engine, message_id: str, endpoints: list[str] | None = None) -> int:
    with begin_write(engine) as conn:
        return webhooks.enqueue(
            conn,
            message_id=message_id,
            event_type="alert.fired",
            body=b'{"type": "alert.fired"}',
            endpoints=endpoints,
            event_id=None,
            now=T0,
        )


def test_an_endpoint_is_created_then_replaced_by_name(engine: Engine) -> None:
    first = _endpoint(engine, description="on call")
    with begin_write(engine) as conn:
        second = webhooks.upsert_endpoint(
            conn, name="ops", url="https://example.org/new", secret=first.secret, now=T0
        )
        assert [e.name for e in webhooks.list_endpoints(conn)] == ["ops"]
        assert webhooks.list_endpoints(conn, source="file") == []
    assert second.id == first.id
    assert second.url == "https://example.org/new"
    assert second.enabled and second.failing_since is None


def test_a_message_is_queued_once_per_enabled_endpoint_however_often_it_is_enqueued(
    engine: Engine,
) -> None:
    _endpoint(engine, "ops")
    _endpoint(engine, "audit")
    _endpoint(engine, "off", enabled=False)
    assert _enqueue(engine, "msg_1") == 2
    assert _enqueue(engine, "msg_1") == 0
    assert _enqueue(engine, "msg_2", ["audit", "unknown"]) == 1
    assert _enqueue(engine, "msg_3", []) == 0
    with engine.connect() as conn:
        queued = webhooks.list_messages(conn)
    assert sorted((m.endpoint, m.message_id) for m in queued) == [
        ("audit", "msg_1"),
        ("audit", "msg_2"),
        ("ops", "msg_1"),
    ]
    assert {m.status for m in queued} == {"pending"}


def test_a_claim_takes_due_messages_and_an_expired_claim_is_taken_over(engine: Engine) -> None:
    _endpoint(engine)
    _enqueue(engine, "msg_1")
    with begin_write(engine) as conn:
        claimed = webhooks.claim_due(conn, owner="w1", now=T0, lease=LEASE)
    assert [c.message.message_id for c in claimed] == ["msg_1"]
    assert claimed[0].url == "https://example.com/ops"
    with begin_write(engine) as conn:
        assert webhooks.claim_due(conn, owner="w2", now=T0 + LEASE, lease=LEASE) == []
        again = webhooks.claim_due(conn, owner="w2", now=T0 + LEASE * 2, lease=LEASE)
    assert [(c.message.message_id, c.message.attempts) for c in again] == [("msg_1", 2)]
    with begin_write(engine) as conn:
        # The first worker lost its claim: its late answer does not overwrite the second's.
        assert not webhooks.mark_delivered(conn, claimed[0].message.id, owner="w1", now=T0)
        assert webhooks.mark_delivered(conn, again[0].message.id, owner="w2", now=T0)
        assert webhooks.claim_due(conn, owner="w3", now=T0 + LEASE * 10, lease=LEASE) == []
        assert webhooks.get_message(conn, again[0].message.id).status == "delivered"  # type: ignore[union-attr]


def test_a_retry_waits_for_its_time_and_the_log_keeps_every_attempt(engine: Engine) -> None:
    _endpoint(engine)
    _enqueue(engine, "msg_1")
    with begin_write(engine) as conn:
        (claim,) = webhooks.claim_due(conn, owner="w1", now=T0, lease=LEASE)
        webhooks.record_attempt(
            conn,
            claim.message.id,
            attempt=1,
            at=T0,
            status_code=503,
            error="HTTP 503",
            duration_ms=12.5,
            retry_after_seconds=120.0,
        )
        assert webhooks.schedule_retry(
            conn, claim.message.id, owner="w1", at=T0 + timedelta(minutes=2), error="HTTP 503"
        )
    with begin_write(engine) as conn:
        assert (
            webhooks.claim_due(conn, owner="w1", now=T0 + timedelta(minutes=1), lease=LEASE) == []
        )
        (again,) = webhooks.claim_due(conn, owner="w1", now=T0 + timedelta(minutes=2), lease=LEASE)
        webhooks.record_attempt(
            conn,
            again.message.id,
            attempt=2,
            at=T0,
            status_code=None,
            error="refused",
            duration_ms=1.0,
        )
        assert webhooks.mark_failed(conn, again.message.id, owner="w1", error="refused")
    with engine.connect() as conn:
        (entry,) = webhooks.delivery_log(conn, endpoint="ops", status="failed")
        assert webhooks.delivery_log(conn, status="pending") == []
    assert entry.message.last_error == "refused"
    assert [(a.attempt, a.status_code, a.retry_after_seconds) for a in entry.attempts] == [
        (1, 503, 120.0),
        (2, None, None),
    ]


def test_disabling_an_endpoint_drops_what_it_has_not_delivered(engine: Engine) -> None:
    ops = _endpoint(engine)
    _enqueue(engine, "msg_1")
    _enqueue(engine, "msg_2")
    with begin_write(engine) as conn:
        webhooks.claim_due(conn, owner="w1", now=T0, lease=LEASE, limit=1)
        assert webhooks.disable_endpoint(conn, ops.id, reason="HTTP 410 Gone", now=T0) == 2
        assert _statuses(conn) == {"dropped"}
        assert webhooks.claim_due(conn, owner="w1", now=T0 + LEASE * 10, lease=LEASE) == []
        assert _enqueue_in(conn, "msg_3") == 0
        again = webhooks.set_enabled(conn, "ops", True, now=T0)
    assert again is not None and again.enabled and again.disabled_reason is None
    with begin_write(engine) as conn:
        assert webhooks.set_enabled(conn, "nobody", False, now=T0) is None
        off = webhooks.set_enabled(conn, "ops", False, reason="maintenance", now=T0)
    assert off is not None and off.disabled_reason == "maintenance"


def test_a_failing_streak_starts_once_and_ends_with_a_success(engine: Engine) -> None:
    ops = _endpoint(engine)
    later = T0 + timedelta(hours=5)
    with begin_write(engine) as conn:
        assert webhooks.note_failure(conn, ops.id, now=T0) == T0
        assert webhooks.note_failure(conn, ops.id, now=later) == T0
        webhooks.note_success(conn, ops.id)
        assert webhooks.note_failure(conn, ops.id, now=later) == later


def test_deleting_an_endpoint_removes_its_outbox(engine: Engine) -> None:
    _endpoint(engine)
    _enqueue(engine, "msg_1")
    with begin_write(engine) as conn:
        assert webhooks.delete_endpoint(conn, "ops")
        assert not webhooks.delete_endpoint(conn, "ops")
        assert webhooks.endpoint_by_name(conn, "ops") is None
        assert webhooks.list_messages(conn) == []


def _statuses(conn: Connection) -> set[str]:
    return {m.status for m in webhooks.list_messages(conn)}


def _enqueue_in(conn: Connection, message_id: str) -> int:
    return webhooks.enqueue(
        conn,
        message_id=message_id,
        event_type="alert.fired",
        body=b"{}",
        endpoints=None,
        event_id=None,
        now=T0,
    )
