"""What alerting did in a period: alerts resolved in it, outbox messages and retrain runs
created in it (the dashboard's time range). Rows come back as the dataclasses of
``storage.alerts``, ``storage.webhooks`` and ``storage.retrains``, read by those modules' own
row mappers, so every reader sees one shape.

A period is ``[start, end)``; ``start`` None: from the first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from monitor.storage.alerts import RESOLVED, Alert, _alert, _alerts_query
from monitor.storage.retrains import Run, _run, _runs_query
from monitor.storage.tables import alerts, retrain_runs, webhook_endpoints
from monitor.storage.tables import webhook_messages as messages
from monitor.storage.webhooks import _MESSAGE_COLUMNS, STATUSES, Message, _message


def _within(column: Any, start: datetime | None, end: datetime) -> list[Any]:
    return [column < end] + ([] if start is None else [column >= start])


def resolved_between(
    conn: Connection, start: datetime | None, end: datetime, *, limit: int = 1000
) -> list[Alert]:
    """Alerts resolved in the period, the latest resolved first (at most ``limit``)."""
    query = (
        _alerts_query()
        .where(alerts.c.state == RESOLVED, *_within(alerts.c.resolved_at, start, end))
        .order_by(alerts.c.resolved_at.desc(), alerts.c.id.desc())
        .limit(limit)
    )
    return [_alert(row) for row in conn.execute(query)]


def count_resolved(conn: Connection, start: datetime | None, end: datetime) -> int:
    """How many alerts resolved in the period."""
    query = select(func.count()).where(
        alerts.c.state == RESOLVED, *_within(alerts.c.resolved_at, start, end)
    )
    return int(conn.execute(query).scalar() or 0)


def messages_between(
    conn: Connection,
    start: datetime | None,
    end: datetime,
    *,
    status: str | None = None,
    limit: int = 1000,
) -> list[Message]:
    """Outbox messages created in the period, newest first (in one status when given)."""
    query = (
        select(*_MESSAGE_COLUMNS)
        .join(webhook_endpoints, webhook_endpoints.c.id == messages.c.endpoint_id)
        .where(*_within(messages.c.created_at, start, end))
        .order_by(messages.c.created_at.desc(), messages.c.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(messages.c.status == status)
    return [_message(row) for row in conn.execute(query)]


def message_counts(conn: Connection, start: datetime | None, end: datetime) -> dict[str, int]:
    """Outbox messages created in the period by status, every status present."""
    found = dict.fromkeys(STATUSES, 0)
    query = (
        select(messages.c.status, func.count())
        .where(*_within(messages.c.created_at, start, end))
        .group_by(messages.c.status)
    )
    for status, count in conn.execute(query):
        found[status] = int(count)
    return found


def runs_between(
    conn: Connection, start: datetime | None, end: datetime, *, limit: int = 1000
) -> list[Run]:
    """Retrain runs queued in the period, newest first."""
    query = (
        _runs_query()
        .where(*_within(retrain_runs.c.created_at, start, end))
        .order_by(retrain_runs.c.id.desc())
        .limit(limit)
    )
    return [_run(row) for row in conn.execute(query).mappings()]


__all__ = [
    "count_resolved",
    "message_counts",
    "messages_between",
    "resolved_between",
    "runs_between",
]
