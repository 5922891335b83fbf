"""The node-health job: every live node gets one verdict from its latest heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.jobs.health import HealthRules, check_fleet
from monitor.storage import heartbeats, models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.health import health_by_node

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
