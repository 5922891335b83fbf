"""Fleet-wide figures for the worker's gauges: nodes by health, analysed windows and drifting
nodes per model. Each is one aggregate query, cheap enough to run at every scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, case, func, select

from monitor.schema import FLEET, NODE
from monitor.storage.tables import drift_scopes, models, node_health, nodes
from monitor.storage.types import aware

#: Health statuses, in the words of the health job (monitor.jobs.health).
STATUSES = ("online", "degraded", "offline", "silent")


@dataclass(frozen=True)
class ModelAnalysis:
    """One model's analysed windows and the drift of its latest one."""

    model: str
    windows_analysed: int
    latest_window_end: datetime | None
    #: Node scopes of the latest analysed window whose verdict is drifted.
    nodes_drifting: int


def nodes_by_status(conn: Connection, offline_before: datetime) -> dict[str, int]:
    """Live devices (not revoked, role ``node``) by health status, every status present.

    Reachability is judged now, by the health job's rule: ``silent`` without a heartbeat,
    ``offline`` when the last one is older than ``offline_before``; a reachable node is
    ``degraded`` when the health job last judged it so, else ``online``."""
    heard = nodes.c.last_heartbeat_at
    status = case(
        (heard.is_(None), "silent"),
        (heard < offline_before, "offline"),
        (node_health.c.status == "degraded", "degraded"),
        else_="online",
    ).label("status")
    judged = (
        select(status)
        .select_from(nodes.outerjoin(node_health, node_health.c.node_id == nodes.c.id))
        .where(nodes.c.revoked_at.is_(None), nodes.c.role == "node")
        .subquery()
    )
    # Grouped outside: PostgreSQL does not see a CASE with bound values in GROUP BY as the
    # selected one.
    counted = conn.execute(select(judged.c.status, func.count()).group_by(judged.c.status)).all()
    found = dict.fromkeys(STATUSES, 0)
    found.update({str(name): int(n) for name, n in counted})
    return found


def analysis_by_model(conn: Connection) -> list[ModelAnalysis]:
    """Every model's analysed windows (those with fleet drift results) and the node scopes
    with a drifted verdict in its latest one, by model name."""
    fleet = drift_scopes.c.scope_kind == FLEET
    windows = (
        select(
            drift_scopes.c.model_id,
            func.count().label("windows"),
            func.max(drift_scopes.c.window_start).label("latest_start"),
            func.max(drift_scopes.c.window_end).label("latest_end"),
        )
        .where(fleet)
        .group_by(drift_scopes.c.model_id)
        .subquery()
    )
    drifting = (
        select(drift_scopes.c.model_id, func.count().label("drifting"))
        .select_from(
            drift_scopes.join(
                windows,
                and_(
                    windows.c.model_id == drift_scopes.c.model_id,
                    windows.c.latest_start == drift_scopes.c.window_start,
                ),
            )
        )
        .where(drift_scopes.c.scope_kind == NODE, drift_scopes.c.drifted.is_(True))
        .group_by(drift_scopes.c.model_id)
        .subquery()
    )
    query = (
        select(models.c.name, windows.c.windows, windows.c.latest_end, drifting.c.drifting)
        .select_from(
            models.outerjoin(windows, windows.c.model_id == models.c.id).outerjoin(
                drifting, drifting.c.model_id == models.c.id
            )
        )
        .order_by(models.c.name)
    )
    return [
        ModelAnalysis(
            model=row.name,
            windows_analysed=int(row.windows or 0),
            latest_window_end=aware(conn, row.latest_end),
            nodes_drifting=int(row.drifting or 0),
        )
        for row in conn.execute(query)
    ]
