"""Node heartbeats: SDK counters and runtime telemetry, one row per beat."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from monitor.storage.nodes import touch_node
from monitor.storage.tables import node_heartbeats
from monitor.storage.types import utcnow


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One heartbeat as stored."""

    node_id: int
    received_at: datetime
    ts: datetime
    model_version_id: int | None
    sdk: dict[str, Any]
    runtime: dict[str, Any] | None


def record_heartbeat(
    conn: Connection,
    *,
    node_id: int,
    ts: datetime,
    model_version_id: int | None,
    sdk: dict[str, Any],
    runtime: dict[str, Any] | None,
) -> None:
    """Store a heartbeat and mark the node as heard from."""
    conn.execute(
        node_heartbeats.insert().values(
            node_id=node_id,
            received_at=utcnow(),
            ts=ts,
            model_version_id=model_version_id,
            sdk=sdk,
            runtime=runtime,
        )
    )
    touch_node(conn, node_id, heartbeat=True)


def latest_heartbeat(conn: Connection, node_id: int) -> Heartbeat | None:
    """The node's most recent heartbeat, or None."""
    row = (
        conn.execute(
            select(node_heartbeats)
            .where(node_heartbeats.c.node_id == node_id)
            .order_by(node_heartbeats.c.received_at.desc(), node_heartbeats.c.id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return Heartbeat(**{k: v for k, v in row.items() if k != "id"})


def latest_heartbeats(conn: Connection) -> dict[int, Heartbeat]:
    """Each node's most recent heartbeat, by node id (one query for the whole fleet)."""
    newest = (
        select(node_heartbeats.c.node_id, func.max(node_heartbeats.c.id).label("id"))
        .group_by(node_heartbeats.c.node_id)
        .subquery()
    )
    query = select(node_heartbeats).join(newest, newest.c.id == node_heartbeats.c.id)
    return {
        row["node_id"]: Heartbeat(**{k: v for k, v in row.items() if k != "id"})
        for row in conn.execute(query).mappings()
    }
