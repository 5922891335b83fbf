"""One node's heartbeats over a period as flat series (latency, errors, drops, spool, queue),
thinned to a bounded number of points, and the moments the model version it ran changed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Integer, cast, extract, func, literal, select, union

from monitor.storage.models import version_names
from monitor.storage.tables import model_versions, node_heartbeats
from monitor.storage.types import UTCDateTime, aware

#: Most heartbeats a series holds by default: enough for a chart as wide as a screen.
MAX_POINTS = 2_000
#: Most version changes a period reports (a node flapping between versions shows the first).
MAX_CHANGES = 1_000


@dataclass(frozen=True, slots=True)
class Beat:
    """One heartbeat, flattened. The SDK's counters (``dropped``) and the runtime's error count
    are totals since that process started, as sent; the latency percentiles describe the
    runtime's recent calls. None where the beat did not carry the figure."""

    received_at: datetime
    #: The node's own time of the beat (its clock may be off; ``received_at`` is the
    #: collector's).
    ts: datetime
    #: The version the node ran: the runtime's own word, else the version the beat was sent for.
    model_version: str | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    errors: int | None
    #: Records dropped by the SDK, by reason (``wire.DROP_REASONS``).
    dropped: dict[str, int]
    spool_records: int | None
    queue_depth: int | None


@dataclass(frozen=True, slots=True)
class VersionChange:
    """A heartbeat naming another model version than the node's previous one."""

    received_at: datetime
    ts: datetime
    #: The version of its previous heartbeat that named one, and the one this beat names.
    previous: str
    version: str


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A node's heartbeats in a period: all ``total`` of them, or when there are more than a
    chart needs, one per time bucket of ``bucket_seconds`` (the newest always kept), oldest
    first; and every change of the model version it ran, found among all of them."""

    beats: list[Beat]
    total: int
    #: The width of the buckets the beats were thinned to (None: every beat kept).
    bucket_seconds: float | None
    version_changes: list[VersionChange]


def node_telemetry(
    conn: Connection,
    node_id: int,
    *,
    model_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    max_points: int = MAX_POINTS,
) -> Telemetry:
    """The node's heartbeats received in ``[start, end)`` (None: unbounded), oldest first.

    ``model_id`` keeps the heartbeats sent for that model's versions (a node running two
    models sends a heartbeat stream for each); without it, every heartbeat of the node.
    More than ``max_points`` heartbeats are thinned in SQL to one per time bucket (buckets of
    equal width from the first beat to the newest, which is always kept), at most
    ``max_points`` in all: the totals (drops, errors) are exact at the beats kept, latency and
    depths are samples; a gap in the beats stays a gap. Version changes are read from all
    heartbeats of the period, never from the thinned ones.
    """
    if max_points < 4:
        raise ValueError("max_points must be at least 4")
    where = _where(node_id, model_id, start, end)
    received = node_heartbeats.c.received_at
    total, first, last = conn.execute(
        select(func.count(), func.min(received), func.max(received)).where(*where)
    ).one()
    query = select(node_heartbeats).where(*where)
    bucket_seconds = None
    if total > max_points:
        first, last = aware(conn, first) or first, aware(conn, last) or last
        # Buckets 0 .. max_points - 3 from the first beat to the last, one more should float
        # rounding put the last beat past them, and the newest beat: at most max_points.
        bucket_seconds = max((last - first).total_seconds() / (max_points - 3), 1e-3)
        bucket = _bucket(conn, first, bucket_seconds)
        one_each = select(func.min(node_heartbeats.c.id)).where(*where).group_by(bucket)
        newest = (
            select(node_heartbeats.c.id)
            .where(*where)
            .order_by(received.desc(), node_heartbeats.c.id.desc())
            .limit(1)
        )
        kept = union(one_each, newest.subquery().select()).subquery()
        query = select(node_heartbeats).join(kept, kept.c[0] == node_heartbeats.c.id)
    names = version_names(conn)
    rows = conn.execute(query.order_by(received, node_heartbeats.c.id)).mappings().all()
    return Telemetry(
        beats=[_beat(row, names) for row in rows],
        total=int(total),
        bucket_seconds=bucket_seconds,
        version_changes=_changes(conn, node_id, model_id, start, end, names),
    )


def _bucket(conn: Connection, first: datetime, seconds: float) -> Any:
    """The number of the ``seconds`` wide bucket after ``first`` a beat was received in."""
    received = node_heartbeats.c.received_at
    if conn.dialect.name == "sqlite":
        # Stored as UTC text; julianday counts days, 2440587.5 of them before the Unix epoch.
        # Truncation is the floor here: no beat is before the first.
        since = (func.julianday(received) - 2440587.5) * 86400.0 - first.timestamp()
        return cast(since / seconds, Integer)
    # Interval arithmetic on timestamps is exact: the first beat is at 0, never just below.
    since = extract("epoch", received - literal(first, UTCDateTime()))
    return func.floor(since / seconds)


def _where(
    node_id: int, model_id: int | None, start: datetime | None, end: datetime | None
) -> list[Any]:
    where: list[Any] = [node_heartbeats.c.node_id == node_id]
    if model_id is not None:
        where.append(
            node_heartbeats.c.model_version_id.in_(
                select(model_versions.c.id).where(model_versions.c.model_id == model_id)
            )
        )
    if start is not None:
        where.append(node_heartbeats.c.received_at >= start)
    if end is not None:
        where.append(node_heartbeats.c.received_at < end)
    return where


def _changes(
    conn: Connection,
    node_id: int,
    model_id: int | None,
    start: datetime | None,
    end: datetime | None,
    names: dict[int, str],
) -> list[VersionChange]:
    """Heartbeats whose version differs from the previous versioned one (the first of the
    period compared with the last before it), oldest first, at most ``MAX_CHANGES``."""
    where = [
        *_where(node_id, model_id, start, end),
        node_heartbeats.c.model_version_id.is_not(None),
    ]
    order = (node_heartbeats.c.received_at, node_heartbeats.c.id)
    ordered = (
        select(
            node_heartbeats.c.received_at,
            node_heartbeats.c.ts,
            node_heartbeats.c.model_version_id.label("version_id"),
            func.lag(node_heartbeats.c.model_version_id).over(order_by=order).label("previous_id"),
        )
        .where(*where)
        .subquery()
    )
    query = (
        select(ordered)
        .where(ordered.c.previous_id.is_(None) | (ordered.c.previous_id != ordered.c.version_id))
        .order_by(ordered.c.received_at)
        # One more: the period's first versioned beat comes back and may be no change.
        .limit(MAX_CHANGES + 1)
    )
    changes = []
    for row in conn.execute(query):
        previous_id = row.previous_id
        if previous_id is None:
            # The period's first versioned beat changed the version only if the node's last
            # beat before the period named another one.
            previous_id = _version_before(conn, node_id, model_id, start)
            if previous_id is None or previous_id == row.version_id:
                continue
        changes.append(
            VersionChange(
                received_at=row.received_at,
                ts=row.ts,
                previous=names.get(previous_id, str(previous_id)),
                version=names.get(row.version_id, str(row.version_id)),
            )
        )
    return changes[:MAX_CHANGES]


def _version_before(
    conn: Connection, node_id: int, model_id: int | None, start: datetime | None
) -> int | None:
    """The version id of the node's last versioned heartbeat received before ``start``."""
    if start is None:
        return None
    where = [
        *_where(node_id, model_id, None, start),
        node_heartbeats.c.model_version_id.is_not(None),
    ]
    found: int | None = conn.execute(
        select(node_heartbeats.c.model_version_id)
        .where(*where)
        .order_by(node_heartbeats.c.received_at.desc(), node_heartbeats.c.id.desc())
        .limit(1)
    ).scalar()
    return found


def _beat(row: Any, names: dict[int, str]) -> Beat:
    sdk: dict[str, Any] = row["sdk"] if isinstance(row["sdk"], dict) else {}
    runtime: dict[str, Any] = row["runtime"] if isinstance(row["runtime"], dict) else {}
    latency = runtime.get("latency_ms")
    latency = latency if isinstance(latency, dict) else {}
    dropped = sdk.get("dropped")
    # The runtime knows what it serves right after a hot swap; the SDK's label may lag (the
    # health job reads it the same way).
    version = runtime.get("model_version")
    if version is None and row["model_version_id"] is not None:
        version = names.get(row["model_version_id"])
    return Beat(
        received_at=row["received_at"],
        ts=row["ts"],
        model_version=None if version is None else str(version),
        latency_p50_ms=_float(latency.get("p50")),
        latency_p95_ms=_float(latency.get("p95")),
        errors=_int(runtime.get("errors_total", runtime.get("errors"))),
        dropped={
            str(reason): int(count)
            for reason, count in (dropped.items() if isinstance(dropped, dict) else ())
            if _int(count) is not None
        },
        spool_records=_int(sdk.get("spool_records")),
        queue_depth=_int(sdk.get("queue_depth")),
    )


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
