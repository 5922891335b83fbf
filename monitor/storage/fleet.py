"""Fleet-wide figures for the worker's gauges and the dashboard's Fleet page: nodes by health,
analysed windows and drifting nodes per model, records received per node, firing alerts, the
webhook outbox and retrain runs. Each is one aggregate query, cheap enough to run at every
scrape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, func, select

from monitor.schema import FLEET, NODE
from monitor.storage import readout
from monitor.storage.tables import (
    alerts,
    batches,
    drift_scopes,
    models,
    node_health,
    nodes,
    retrain_runs,
    webhook_messages,
)
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
    """Live devices (not revoked, role ``node``) by health status, every status present,
    judged now by the one rule of ``readout.node_states`` (what `nodes list`, `status` and
    the read API show)."""
    found = dict.fromkeys(STATUSES, 0)
    for state in readout.node_states(conn, offline_before):
        if state.status in found:  # revoked nodes and labellers are not devices in service
            found[state.status] += 1
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


def records_received_by_node(conn: Connection, model_id: int, since: datetime) -> dict[str, int]:
    """Records of the model received since ``since`` (by the collector's clock, not the
    devices'), summed per node name from the accepted batches; nodes that sent none are
    absent. Duplicates a node retried are not counted: a batch row holds only new records."""
    query = (
        select(nodes.c.name, func.sum(batches.c.n_records))
        .select_from(batches.join(nodes, nodes.c.id == batches.c.node_id))
        .where(batches.c.model_id == model_id, batches.c.received_at >= since)
        .group_by(nodes.c.name)
    )
    return {name: int(total or 0) for name, total in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class RuntimeFigures:
    """A node's runtime figures from its last heartbeat, as the health job last stored them."""

    model_version: str | None
    latency_p95_ms: float | None
    #: SDK drops since the SDK started, by reason (``wire.DROP_REASONS``).
    dropped: dict[str, int]
    spool_records: int | None


def runtime_figures(conn: Connection) -> dict[str, RuntimeFigures]:
    """Every checked node's runtime figures, by node name: the few columns of the health rows
    a fleet table shows (``health.health_by_node`` has the whole rows)."""
    query = select(
        nodes.c.name,
        node_health.c.model_version,
        node_health.c.latency_p95_ms,
        node_health.c.dropped,
        node_health.c.spool_records,
    ).join(nodes, nodes.c.id == node_health.c.node_id)
    return {
        name: RuntimeFigures(version, p95, dict(dropped or {}), spool)
        for name, version, p95, dropped, spool in conn.execute(query)
    }


#: Severities of alert rules (monitor.alerts.rules.SEVERITIES), every one present in the gauge.
SEVERITIES = ("info", "warning", "critical")
#: Outbox statuses (webhook_messages.status), every one present in the gauge.
MESSAGE_STATUSES = ("pending", "delivering", "delivered", "failed", "dropped")


def firing_alerts(conn: Connection) -> dict[str, int]:
    """Alerts firing now, by severity."""
    found = dict.fromkeys(SEVERITIES, 0)
    query = (
        select(alerts.c.severity, func.count())
        .where(alerts.c.state == "firing")
        .group_by(alerts.c.severity)
    )
    for severity, count in conn.execute(query):
        found[severity] = count
    return found


def webhook_messages_by_status(conn: Connection) -> dict[str, int]:
    """Webhook messages in the outbox by status (delivered and given-up ones included)."""
    found = dict.fromkeys(MESSAGE_STATUSES, 0)
    query = select(webhook_messages.c.status, func.count()).group_by(webhook_messages.c.status)
    for status, count in conn.execute(query):
        found[status] = count
    return found


def retrain_runs_by_status(conn: Connection) -> dict[str, int]:
    """Retrain runs by status (queued, running, canary, promoted, rolled back, ...)."""
    query = select(retrain_runs.c.status, func.count()).group_by(retrain_runs.c.status)
    return {status: count for status, count in conn.execute(query)}
