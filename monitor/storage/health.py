"""Node health rows: the worker's latest verdict on every node, for dashboards and alerts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from monitor.storage.dialect import upsert
from monitor.storage.tables import node_health, nodes


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One node's health as last checked."""

    node_id: int
    status: str
    checked_at: datetime
    last_heartbeat_at: datetime | None
    model_version: str | None
    dropped: dict[str, int]
    spool_records: int | None
    queue_depth: int | None
    latency_p95_ms: float | None
    errors: int | None
    details: dict[str, Any]


def save_health(conn: Connection, rows: Sequence[NodeHealth]) -> None:
    """Replace the health rows of these nodes."""
    if not rows:
        return
    columns = [c.name for c in node_health.columns if c.name != "node_id"]
    conn.execute(upsert(conn, node_health, ["node_id"], columns), [asdict(r) for r in rows])


def health_by_node(conn: Connection) -> dict[str, NodeHealth]:
    """Every checked node's health, by node name."""
    query = select(nodes.c.name, node_health).join(nodes, nodes.c.id == node_health.c.node_id)
    return {
        row["name"]: NodeHealth(**{k: v for k, v in row.items() if k != "name"})
        for row in conn.execute(query).mappings()
    }
