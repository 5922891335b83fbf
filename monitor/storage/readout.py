"""What the read side asks of stored results and nodes beyond one window's results: which
windows were analysed (newest first, summarised), which window holds a time, the latest
labelled performance, and every node's state now. Verdicts themselves stay in
``storage.results``: this module finds windows and counts, it never judges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, select

# The scope vocabulary, the statuses the read side explains and the result rows too, for the
# readers above storage (monitor.commands), which speak them without importing the analysis
# contract itself.
from monitor.schema import (
    FLEET,
    FLEET_KEY,
    GROUP,
    NO_PROBABILITIES,
    NO_REFERENCE,
    NO_REFERENCE_LABELS,
    NODE,
    NOT_CLASSIFICATION,
    SCOPE_KINDS,
    SITE,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    QualityFeature,
    QualityScope,
)
from monitor.storage import health, results
from monitor.storage.nodes import NODE as NODE_ROLE
from monitor.storage.nodes import list_nodes
from monitor.storage.results import Stored
from monitor.storage.tables import drift_scopes, performance_scopes

__all__ = [
    "FLEET",
    "FLEET_KEY",
    "GROUP",
    "NODE",
    "NOT_CLASSIFICATION",
    "NO_PROBABILITIES",
    "NO_REFERENCE",
    "NO_REFERENCE_LABELS",
    "SCOPE_KINDS",
    "SITE",
    "STATUSES",
    "DriftFeature",
    "DriftScope",
    "EstimationScope",
    "MultivariateScope",
    "NodeState",
    "PerformanceScope",
    "QualityFeature",
    "QualityScope",
    "WindowSummary",
    "latest_labelled_performance",
    "node_states",
    "window_holding",
    "window_summaries",
]

#: A node's status: the health job's words, and revoked.
STATUSES = ("online", "degraded", "offline", "silent", "revoked")

_EPSILON = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class WindowSummary:
    """One analysed window: its fleet drift row (with the window's revision: 1 for the first
    analysis), how many node scopes it judged and how many of them drifted."""

    fleet: Stored[DriftScope]
    nodes: int
    nodes_drifting: int

    @property
    def window_start(self) -> datetime:
        return self.fleet.window_start

    @property
    def window_end(self) -> datetime:
        return self.fleet.window_end

    @property
    def revision(self) -> int:
        return self.fleet.revision

    @property
    def n_late(self) -> int:
        return self.fleet.n_late


def window_summaries(
    conn: Connection, model_id: int, *, limit: int, since: datetime | None = None
) -> list[WindowSummary]:
    """The model's latest ``limit`` analysed windows (those with a fleet drift row), newest
    first; with ``since``, only windows starting at or after it."""
    fleet = drift_scopes.c.scope_kind == FLEET
    starts = select(drift_scopes.c.window_start).where(drift_scopes.c.model_id == model_id, fleet)
    if since is not None:
        starts = starts.where(drift_scopes.c.window_start >= since)
    newest = [
        row[0]
        for row in conn.execute(starts.order_by(drift_scopes.c.window_start.desc()).limit(limit))
    ]
    if not newest:
        return []
    first, last = min(newest), max(newest)
    rows = results.drift(conn, model_id, scope_kind=FLEET, start=first, end=last + _EPSILON)
    nodes = (
        select(
            drift_scopes.c.window_start,
            func.count().label("nodes"),
            func.sum(case((drift_scopes.c.drifted.is_(True), 1), else_=0)).label("drifting"),
        )
        .where(
            drift_scopes.c.model_id == model_id,
            drift_scopes.c.scope_kind == NODE,
            drift_scopes.c.window_start >= first,
            drift_scopes.c.window_start <= last,
        )
        .group_by(drift_scopes.c.window_start)
    )
    node_counts = {_key(row.window_start): (row.nodes, row.drifting) for row in conn.execute(nodes)}
    out = []
    for row in reversed(rows):
        n_nodes, drifting = node_counts.get(_key(row.window_start), (0, 0))
        out.append(WindowSummary(row, int(n_nodes), int(drifting or 0)))
    return out


def _key(value: Any) -> str:
    # A window start as a comparable key: SQLite may hand a grouped datetime back as text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None).isoformat()


def window_holding(conn: Connection, model_id: int, moment: datetime) -> datetime | None:
    """The start of the analysed window of the model that holds ``moment`` (its start or any
    time before its end), or None."""
    query = (
        select(drift_scopes.c.window_start)
        .where(
            drift_scopes.c.model_id == model_id,
            drift_scopes.c.scope_kind == FLEET,
            drift_scopes.c.window_start <= moment,
            drift_scopes.c.window_end > moment,
        )
        .order_by(drift_scopes.c.window_start.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    return None if found is None else found[0]


def latest_labelled_performance(conn: Connection, model_id: int) -> Stored[PerformanceScope] | None:
    """The fleet performance row of the model's latest window with at least one label."""
    query = (
        select(performance_scopes.c.window_start)
        .where(
            performance_scopes.c.model_id == model_id,
            performance_scopes.c.scope_kind == FLEET,
            performance_scopes.c.n_labelled > 0,
        )
        .order_by(performance_scopes.c.window_start.desc())
        .limit(1)
    )
    found = conn.execute(query).first()
    if found is None:
        return None
    start = found[0]
    rows = results.performance(conn, model_id, scope_kind=FLEET, start=start, end=start + _EPSILON)
    return rows[0] if rows else None


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node as the read side shows it: who it is, and its state now."""

    name: str
    group_name: str | None
    site: str | None
    role: str
    #: online, degraded, offline, silent or revoked; None for a labeller (it sends no
    #: heartbeats, so reachability says nothing about it).
    status: str | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    #: When the health job last judged the node, and what it found wrong (None: never judged).
    checked_at: datetime | None
    problems: tuple[str, ...]
    model_version: str | None
    #: The last implausible record time it sent: how far off (device minus received, seconds)
    #: and when.
    clock_skew_seconds: float | None
    clock_skew_at: datetime | None


def node_states(conn: Connection, offline_before: datetime) -> list[NodeState]:
    """Every node by name, with its state judged now by the health job's rule: ``silent``
    without a heartbeat, ``offline`` when the last one is older than ``offline_before``, and a
    reachable node ``degraded`` when the health job last judged it so, else ``online``
    (``storage.fleet.nodes_by_status`` counts these)."""
    judged = health.health_by_node(conn)
    out = []
    for node in list_nodes(conn):
        checked = judged.get(node.name)
        heard = node.last_heartbeat_at
        status: str | None
        if node.revoked_at is not None:
            status = "revoked"
        elif node.role != NODE_ROLE:
            status = None
        elif heard is None:
            status = "silent"
        elif heard < offline_before:
            status = "offline"
        elif checked is not None and checked.status == "degraded":
            status = "degraded"
        else:
            status = "online"
        problems = (checked.details or {}).get("problems", []) if checked else []
        out.append(
            NodeState(
                name=node.name,
                group_name=node.group_name,
                site=node.site,
                role=node.role,
                status=status,
                last_seen_at=node.last_seen_at,
                last_heartbeat_at=heard,
                checked_at=checked.checked_at if checked else None,
                problems=tuple(str(p) for p in problems),
                model_version=checked.model_version if checked else None,
                clock_skew_seconds=node.clock_skew_seconds,
                clock_skew_at=node.clock_skew_at,
            )
        )
    return out
