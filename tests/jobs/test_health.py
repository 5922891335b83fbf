"""The node-health job: every live node gets one verdict from its latest heartbeat."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, update

from monitor.jobs.health import HealthRules, check_fleet
from monitor.storage import heartbeats, models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.health import health_by_node
from monitor.storage.records import IMPORT_BATCH_PREFIX, insert_batch, prepare_batch
from monitor.storage.tables import batches

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def beat(conn, name: str, *, sdk: dict, runtime: dict | None = None) -> None:
    node = nodes.get_node(conn, name)
    model = models.find_model(conn, "pump") or models.add_model(conn, "pump")
    heartbeats.record_heartbeat(
        conn,
        node_id=node.id,
        ts=NOW,
        model_version_id=models.version_id(conn, model.id, "3"),
        sdk=sdk,
        runtime=runtime,
    )


def test_each_node_gets_its_verdict(engine: Engine) -> None:
    with begin_write(engine) as conn:
        for name in ("ok", "lossy", "backlog", "old", "silent", "gone"):
            nodes.add_node(conn, name)
        beat(conn, "ok", sdk={"dropped": {"sampled_out": 900}, "spool_records": 0})
        beat(conn, "lossy", sdk={"dropped": {"queue_full": 3, "expired": 1}})
        beat(conn, "backlog", sdk={"spool_records": 50_000}, runtime={"latency_ms": {"p95": 4.5}})
        beat(conn, "old", sdk={})
        nodes.revoke_node(conn, "gone")
    now = datetime.now(UTC)

    with begin_write(engine) as conn:
        check_fleet(conn, HealthRules(offline_after=timedelta(minutes=2)), now=now)
        check_fleet(conn, HealthRules(offline_after=timedelta(minutes=2)), now=now)
    with begin_write(engine) as conn:
        nodes_by_name = {n.name: n for n in nodes.list_nodes(conn)}
        old = nodes_by_name["old"]
        conn.execute(
            nodes.nodes.update()
            .where(nodes.nodes.c.id == old.id)
            .values(last_heartbeat_at=now - timedelta(minutes=5))
        )
        check_fleet(conn, now=now)
        verdicts = health_by_node(conn)

    assert {name: h.status for name, h in verdicts.items()} == {
        "ok": "online",
        "lossy": "degraded",
        "backlog": "degraded",
        "old": "offline",
        "silent": "silent",
    }
    assert verdicts["lossy"].dropped == {"queue_full": 3, "expired": 1}
    assert verdicts["lossy"].details["problems"] == ["4 records lost (queue_full, expired)"]
    assert verdicts["backlog"].latency_p95_ms == 4.5
    assert verdicts["ok"].model_version == "3"


# --- what the collector saw: clock skew and backlog delivery -----------------------------------


def batch_of(
    conn, name: str, *, made: datetime, received: datetime, n: int = 3, uid: str | None = None
) -> None:
    """A batch of ``n`` records of ``name``, the newest made at ``made``, stored as received."""
    node = nodes.get_node(conn, name)
    model = models.find_model(conn, "pump") or models.add_model(conn, "pump")
    rows = [
        {
            "id": uuid.uuid4().hex,
            "ts": made.timestamp() - i,
            "features": {"x": 1.0},
            "prediction": 1,
        }
        for i in range(n)
    ]
    stored = insert_batch(
        conn,
        node_id=node.id,
        model_id=model.id,
        model_version_id=models.version_id(conn, model.id, "3"),
        batch_uid=uid,
        batch=prepare_batch(rows),
    )
    conn.execute(
        update(batches).where(batches.c.id == stored.batch_id).values(received_at=received)
    )


def test_a_node_that_sent_a_wrong_clock_shows_clock_skew_for_an_hour(engine: Engine) -> None:
    with begin_write(engine) as conn:
        nodes.add_node(conn, "booted-in-1970")
        beat(conn, "booted-in-1970", sdk={})
        node = nodes.get_node(conn, "booted-in-1970")
        nodes.touch_node(conn, node.id, clock_skew=-1.7e9)
    seen = nodes_seen(engine)["booted-in-1970"]
    assert seen.clock_skew_seconds == -1.7e9 and seen.clock_skew_at is not None

    with begin_write(engine) as conn:
        (verdict,) = check_fleet(conn, now=seen.clock_skew_at + timedelta(seconds=30))
    assert verdict.status == "degraded"
    assert verdict.details["clock_skew"] == {
        "seconds": -1.7e9,
        "at": seen.clock_skew_at.isoformat(),
    }
    assert verdict.details["problems"] == [
        "clock skew: its clock was 53.9 years behind (records stored at the time they arrived)"
    ]

    later = seen.clock_skew_at + timedelta(hours=1, seconds=1)
    rules = HealthRules(offline_after=timedelta(hours=2))
    with begin_write(engine) as conn:
        (verdict,) = check_fleet(conn, rules, now=later)
    assert verdict.status == "online"
    assert verdict.details == {"problems": []}


def test_a_node_delivering_a_backlog_shows_how_old_its_oldest_record_was(
    engine: Engine,
) -> None:
    now = datetime.now(UTC)
    received = now - timedelta(minutes=5)
    with begin_write(engine) as conn:
        for name in ("catching-up", "live", "once-late", "imported-into"):
            nodes.add_node(conn, name)
            beat(conn, name, sdk={})
        for days in (3, 2, 1):  # spooled during a three-day outage, sent now
            batch_of(conn, "catching-up", made=received - timedelta(days=days), received=received)
        batch_of(conn, "catching-up", made=received - timedelta(seconds=2), received=received)
        for _ in range(3):
            batch_of(conn, "live", made=received - timedelta(seconds=2), received=received)
        batch_of(conn, "once-late", made=received - timedelta(hours=1), received=received)
        for _ in range(2):
            batch_of(conn, "once-late", made=received - timedelta(seconds=2), received=received)
        # A year of history imported onto a live node (edge-monitor import): not a backlog.
        for days in (300, 200, 100):
            batch_of(
                conn,
                "imported-into",
                made=received - timedelta(days=days),
                received=received,
                uid=f"{IMPORT_BATCH_PREFIX}history",
            )
        batch_of(conn, "imported-into", made=received - timedelta(seconds=2), received=received)
        # Received before the window: not judged.
        batch_of(conn, "live", made=now - timedelta(days=9), received=now - timedelta(hours=2))

    with begin_write(engine) as conn:
        check_fleet(conn, now=now)
        verdicts = health_by_node(conn)

    assert {name: h.status for name, h in verdicts.items()} == {
        "catching-up": "degraded",
        "live": "online",
        "once-late": "online",
        "imported-into": "online",
    }
    backlog = verdicts["catching-up"].details["backlog"]
    # The oldest record: made 3 days and 2 s (its batch's third record) before it arrived.
    assert round(backlog["oldest_record_age_seconds"]) == 3 * 86_400 + 2
    assert (backlog["batches"], backlog["late_batches"]) == (4, 3)
    assert verdicts["catching-up"].details["problems"] == [
        "backlog: delivering records up to 3 days old "
        "(3 of 4 batches in the last 1 h arrived more than 10 min late)"
    ]
    assert "backlog" not in verdicts["once-late"].details
    assert "backlog" not in verdicts["imported-into"].details


def nodes_seen(engine: Engine) -> dict[str, nodes.Node]:
    with engine.connect() as conn:
        return {node.name: node for node in nodes.list_nodes(conn)}
