"""Webhook endpoints, the outbox of messages to send them, and the delivery log.

A message is written (``enqueue``) in the transaction that caused it, one row per endpoint,
and stays ``pending`` until the delivery job claims it (``claim_due``: ``delivering`` until
``claimed_until``), sends it outside any transaction, and records how it went
(``record_attempt`` with ``mark_delivered``, ``schedule_retry`` or ``mark_failed``). A worker
that dies mid-delivery leaves its claim to expire; the next run claims the message again.
Disabling an endpoint drops its undelivered messages (status ``dropped``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, and_, delete, insert, or_, select, update

from monitor.storage.dialect import insert_or_ignore
from monitor.storage.tables import webhook_attempts, webhook_endpoints, webhook_messages

STATUSES = ("pending", "delivering", "delivered", "failed", "dropped")
UNDELIVERED = ("pending", "delivering")
ERROR_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where notifications go, with its own signing secret."""

    id: int
    name: str
    url: str
    secret: str
    description: str
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    source: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """One outbox row: a message for one endpoint."""

    id: int
    endpoint_id: int
    endpoint: str
    message_id: str
    event_type: str
    body: bytes
    event_id: int | None
    status: str
    attempts: int
    next_attempt_at: datetime
    claimed_by: str | None
    claimed_until: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at delivering a message, as the delivery log shows it."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after_seconds: float | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message with every attempt made at it (the delivery log's entry)."""

    message: Message
    attempts: list[Attempt]


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message claimed for sending, with what sending it needs."""

    message: Message
    url: str
    secret: str
    failing_since: datetime | None


# --- endpoints --------------------------------------------------------------------------------


def _endpoint(row: object) -> Endpoint:
    m = row._mapping  # type: ignore[attr-defined]
    return Endpoint(
        id=m["id"],
        name=m["name"],
        url=m["url"],
        secret=m["secret"],
        description=m["description"],
        enabled=bool(m["enabled"]),
        disabled_reason=m["disabled_reason"],
        failing_since=m["failing_since"],
        source=m["source"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def upsert_endpoint(
    conn: Connection,
    *,
    name: str,
    url: str,
    secret: str,
    description: str = "",
    enabled: bool = True,
    source: str = "api",
    now: datetime,
) -> Endpoint:
    """Create the endpoint ``name`` or replace its URL, secret, description and state.

    Enabling clears why it was disabled and its failing streak; disabling drops its undelivered
    messages.
    """
    before = endpoint_by_name(conn, name)
    values = {
        "url": url,
        "secret": secret,
        "description": description,
        "enabled": enabled,
        "source": source,
        "updated_at": now,
    }
    if before is None:
        conn.execute(insert(webhook_endpoints).values(name=name, created_at=now, **values))
    else:
        if enabled and not before.enabled:
            values.update(disabled_reason=None, failing_since=None)
        if not enabled and before.enabled:
            values.update(disabled_reason="disabled by hand")
        conn.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == before.id).values(**values)
        )
        if not enabled:
            drop_undelivered(conn, before.id, reason="endpoint disabled", now=now)
    endpoint = endpoint_by_name(conn, name)
    assert endpoint is not None
    return endpoint


def set_enabled(
    conn: Connection, name: str, enabled: bool, *, reason: str | None = None, now: datetime
) -> Endpoint | None:
    """Enable or disable ``name`` (None when there is no such endpoint).

    Disabling records ``reason`` and drops the endpoint's undelivered messages; enabling clears
    the reason and the failing streak.
    """
    endpoint = endpoint_by_name(conn, name)
    if endpoint is None:
        return None
    if enabled:
        values: dict[str, object] = {
            "enabled": True,
            "disabled_reason": None,
            "failing_since": None,
        }
    else:
        values = {"enabled": False, "disabled_reason": (reason or "disabled by hand")[:300]}
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint.id)
        .values(updated_at=now, **values)
    )
    if not enabled:
        drop_undelivered(conn, endpoint.id, reason=reason or "endpoint disabled", now=now)
    return endpoint_by_name(conn, name)


def disable_endpoint(conn: Connection, endpoint_id: int, *, reason: str, now: datetime) -> int:
    """Disable an endpoint for ``reason`` (a 410, or failing too long); returns messages dropped."""
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(enabled=False, disabled_reason=reason[:300], updated_at=now)
    )
    return drop_undelivered(conn, endpoint_id, reason=reason, now=now)


def delete_endpoint(conn: Connection, name: str) -> bool:
    """Remove ``name`` with its outbox and delivery log; False when there is no such endpoint."""
    return (
        conn.execute(delete(webhook_endpoints).where(webhook_endpoints.c.name == name)).rowcount
        == 1
    )


def endpoint_by_name(conn: Connection, name: str) -> Endpoint | None:
    """The endpoint called ``name``, or None."""
    row = conn.execute(select(webhook_endpoints).where(webhook_endpoints.c.name == name)).first()
    return None if row is None else _endpoint(row)


def endpoint_by_id(conn: Connection, endpoint_id: int) -> Endpoint | None:
    """The endpoint with this row key, or None."""
    row = conn.execute(
        select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    ).first()
    return None if row is None else _endpoint(row)


def list_endpoints(conn: Connection, source: str | None = None) -> list[Endpoint]:
    """Every endpoint by name (only those defined by ``source`` when given)."""
    query = select(webhook_endpoints).order_by(webhook_endpoints.c.name)
    if source is not None:
        query = query.where(webhook_endpoints.c.source == source)
    return [_endpoint(row) for row in conn.execute(query)]


def note_success(conn: Connection, endpoint_id: int) -> None:
    """A delivery to the endpoint succeeded: its failing streak (if any) is over."""
    conn.execute(
        update(webhook_endpoints)
        .where(
            webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.failing_since.is_not(None)
        )
        .values(failing_since=None)
    )


def note_failure(conn: Connection, endpoint_id: int, *, now: datetime) -> datetime | None:
    """A delivery failed: start the failing streak unless one runs; returns since when it fails."""
    conn.execute(
        update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.failing_since.is_(None))
        .values(failing_since=now)
    )
    since = conn.execute(
        select(webhook_endpoints.c.failing_since).where(webhook_endpoints.c.id == endpoint_id)
    ).scalar()
    return since if isinstance(since, datetime) else None


# --- the outbox -------------------------------------------------------------------------------


def enqueue(
    conn: Connection,
    *,
    message_id: str,
    event_type: str,
    body: bytes,
    endpoints: Sequence[str] | None,
    event_id: int | None,
    now: datetime,
) -> int:
    """Queue ``body`` for each enabled endpoint (named ones, or all when ``endpoints`` is None).

    Idempotent: an (endpoint, message id) already in the outbox is not queued again, so
    re-running what caused a message never sends it twice. Unknown or disabled names are
    skipped. Returns how many rows were queued.
    """
    query = select(webhook_endpoints.c.id).where(webhook_endpoints.c.enabled.is_(True))
    if endpoints is not None:
        if not endpoints:
            return 0
        query = query.where(webhook_endpoints.c.name.in_(list(endpoints)))
    queued = 0
    for endpoint_id in conn.execute(query.order_by(webhook_endpoints.c.id)).scalars():
        # RETURNING, not rowcount: psycopg reports no rowcount for ON CONFLICT DO NOTHING.
        row = conn.execute(
            insert_or_ignore(conn, webhook_messages, ["endpoint_id", "message_id"])
            .values(
                endpoint_id=endpoint_id,
                message_id=message_id,
                event_type=event_type,
                body=body,
                event_id=event_id,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
            .returning(webhook_messages.c.id)
        ).first()
        queued += row is not None
    return queued


_MESSAGE_COLUMNS = (*webhook_messages.c, webhook_endpoints.c.name.label("endpoint_name"))


def _message(row: object) -> Message:
    m = row._mapping  # type: ignore[attr-defined]
    return Message(
        id=m["id"],
        endpoint_id=m["endpoint_id"],
        endpoint=m["endpoint_name"],
        message_id=m["message_id"],
        event_type=m["event_type"],
        body=bytes(m["body"]),
        event_id=m["event_id"],
        status=m["status"],
        attempts=m["attempts"],
        next_attempt_at=m["next_attempt_at"],
        claimed_by=m["claimed_by"],
        claimed_until=m["claimed_until"],
        created_at=m["created_at"],
        delivered_at=m["delivered_at"],
        last_error=m["last_error"],
    )


def _due(now: datetime) -> object:
    return or_(
        and_(webhook_messages.c.status == "pending", webhook_messages.c.next_attempt_at <= now),
        and_(webhook_messages.c.status == "delivering", webhook_messages.c.claimed_until < now),
    )


def claim_due(
    conn: Connection, *, owner: str, now: datetime, lease: timedelta, limit: int = 100
) -> list[Claimed]:
    """Claim up to ``limit`` due messages of enabled endpoints for ``owner`` until ``now + lease``.

    Due: pending with ``next_attempt_at <= now``, or delivering under a claim that expired (its
    worker died). Each claim counts as an attempt. On PostgreSQL the rows are locked with
    ``FOR UPDATE SKIP LOCKED`` so that concurrent workers claim disjoint messages; SQLite
    serialises writers already.
    """
    query = (
        select(webhook_messages.c.id)
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_messages.c.endpoint_id)
        .where(_due(now), webhook_endpoints.c.enabled.is_(True))  # type: ignore[arg-type]
        .order_by(webhook_messages.c.next_attempt_at, webhook_messages.c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=webhook_messages)
    ids = list(conn.execute(query).scalars())
    if not ids:
        return []
    conn.execute(
        update(webhook_messages)
        .where(webhook_messages.c.id.in_(ids))
        .values(
            status="delivering",
            claimed_by=owner,
            claimed_until=now + lease,
            attempts=webhook_messages.c.attempts + 1,
        )
    )
    rows = conn.execute(
        select(
            *_MESSAGE_COLUMNS,
            webhook_endpoints.c.url,
            webhook_endpoints.c.secret,
            webhook_endpoints.c.failing_since,
        )
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_messages.c.endpoint_id)
        .where(webhook_messages.c.id.in_(ids))
        .order_by(webhook_messages.c.next_attempt_at, webhook_messages.c.id)
    )
    return [
        Claimed(
            message=_message(row),
            url=row._mapping["url"],
            secret=row._mapping["secret"],
            failing_since=row._mapping["failing_since"],
        )
        for row in rows
    ]


def record_attempt(
    conn: Connection,
    message_row: int,
    *,
    attempt: int,
    at: datetime,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    retry_after_seconds: float | None = None,
) -> None:
    """Add one attempt to the delivery log."""
    conn.execute(
        insert(webhook_attempts).values(
            message_id=message_row,
            attempt=attempt,
            at=at,
            status_code=status_code,
            error=None if error is None else error[:ERROR_CHARS],
            duration_ms=duration_ms,
            retry_after_seconds=retry_after_seconds,
        )
    )


def _held(message_row: int, owner: str) -> object:
    return and_(
        webhook_messages.c.id == message_row,
        webhook_messages.c.status == "delivering",
        webhook_messages.c.claimed_by == owner,
    )


def _finish(conn: Connection, message_row: int, owner: str, **values: object) -> bool:
    statement = update(webhook_messages).where(_held(message_row, owner))  # type: ignore[arg-type]
    return (
        conn.execute(statement.values(claimed_by=None, claimed_until=None, **values)).rowcount == 1
    )


def mark_delivered(conn: Connection, message_row: int, *, owner: str, now: datetime) -> bool:
    """The receiver took it; False when ``owner`` no longer held the claim."""
    return _finish(conn, message_row, owner, status="delivered", delivered_at=now, last_error=None)


def schedule_retry(
    conn: Connection, message_row: int, *, owner: str, at: datetime, error: str | None
) -> bool:
    """Try again at ``at``; False when ``owner`` no longer held the claim."""
    return _finish(
        conn,
        message_row,
        owner,
        status="pending",
        next_attempt_at=at,
        last_error=None if error is None else error[:ERROR_CHARS],
    )


def mark_failed(conn: Connection, message_row: int, *, owner: str, error: str | None) -> bool:
    """Give up on it; False when ``owner`` no longer held the claim."""
    return _finish(
        conn,
        message_row,
        owner,
        status="failed",
        last_error=None if error is None else error[:ERROR_CHARS],
    )


def hold_pending(conn: Connection, endpoint_id: int, *, until: datetime) -> int:
    """Move the endpoint's pending messages due before ``until`` to ``until`` (the endpoint did
    not answer: each would only wait out the same timeout); returns how many."""
    return conn.execute(
        update(webhook_messages)
        .where(
            webhook_messages.c.endpoint_id == endpoint_id,
            webhook_messages.c.status == "pending",
            webhook_messages.c.next_attempt_at < until,
        )
        .values(next_attempt_at=until)
    ).rowcount


def drop_undelivered(conn: Connection, endpoint_id: int, *, reason: str, now: datetime) -> int:
    """Drop every message of the endpoint not yet delivered; returns how many."""
    del now  # the log's time is the attempts'; kept for a uniform signature
    return conn.execute(
        update(webhook_messages)
        .where(
            webhook_messages.c.endpoint_id == endpoint_id,
            webhook_messages.c.status.in_(UNDELIVERED),
        )
        .values(
            status="dropped",
            claimed_by=None,
            claimed_until=None,
            last_error=f"dropped: {reason}"[:ERROR_CHARS],
        )
    ).rowcount


def log_sent(
    conn: Connection,
    endpoint_id: int,
    *,
    message_id: str,
    event_type: str,
    body: bytes,
    delivered: bool,
    status_code: int | None,
    error: str | None,
    duration_ms: float,
    retry_after_seconds: float | None,
    now: datetime,
) -> int:
    """Log a message sent directly (a test), not through the outbox: delivered or failed, with
    its one attempt. Returns its row key."""
    row = conn.execute(
        insert(webhook_messages)
        .values(
            endpoint_id=endpoint_id,
            message_id=message_id,
            event_type=event_type,
            body=body,
            status="delivered" if delivered else "failed",
            attempts=1,
            next_attempt_at=now,
            created_at=now,
            delivered_at=now if delivered else None,
            last_error=None if error is None else error[:ERROR_CHARS],
        )
        .returning(webhook_messages.c.id)
    ).scalar_one()
    record_attempt(
        conn,
        row,
        attempt=1,
        at=now,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        retry_after_seconds=retry_after_seconds,
    )
    return int(row)


# --- the delivery log -------------------------------------------------------------------------


def list_messages(
    conn: Connection,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Message]:
    """Outbox messages, newest first, of one endpoint and/or in one status when given."""
    query = (
        select(*_MESSAGE_COLUMNS)
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_messages.c.endpoint_id)
        .order_by(webhook_messages.c.created_at.desc(), webhook_messages.c.id.desc())
        .limit(limit)
    )
    if endpoint is not None:
        query = query.where(webhook_endpoints.c.name == endpoint)
    if status is not None:
        query = query.where(webhook_messages.c.status == status)
    return [_message(row) for row in conn.execute(query)]


def messages_for_events(conn: Connection, event_ids: Sequence[int]) -> dict[int, list[Message]]:
    """Per alert event id, its outbox messages (one per endpoint it was queued for)."""
    if not event_ids:
        return {}
    query = (
        select(*_MESSAGE_COLUMNS)
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_messages.c.endpoint_id)
        .where(webhook_messages.c.event_id.in_(list(event_ids)))
        .order_by(webhook_messages.c.event_id, webhook_endpoints.c.name)
    )
    found: dict[int, list[Message]] = {}
    for row in conn.execute(query):
        message = _message(row)
        assert message.event_id is not None
        found.setdefault(message.event_id, []).append(message)
    return found


def attempts_of(conn: Connection, message_rows: Sequence[int]) -> dict[int, list[Attempt]]:
    """Every attempt at each of these messages, in order."""
    found: dict[int, list[Attempt]] = {row: [] for row in message_rows}
    if not message_rows:
        return found
    rows = conn.execute(
        select(webhook_attempts)
        .where(webhook_attempts.c.message_id.in_(list(message_rows)))
        .order_by(webhook_attempts.c.message_id, webhook_attempts.c.attempt, webhook_attempts.c.id)
    )
    for row in rows:
        m = row._mapping
        found[m["message_id"]].append(
            Attempt(
                attempt=m["attempt"],
                at=m["at"],
                status_code=m["status_code"],
                error=m["error"],
                duration_ms=m["duration_ms"],
                retry_after_seconds=m["retry_after_seconds"],
            )
        )
    return found


def delivery_log(
    conn: Connection,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[Delivery]:
    """Messages (newest first) with their attempts, filtered as ``list_messages``."""
    messages = list_messages(conn, endpoint=endpoint, status=status, limit=limit)
    attempts = attempts_of(conn, [m.id for m in messages])
    return [Delivery(message=m, attempts=attempts[m.id]) for m in messages]


def get_message(conn: Connection, message_row: int) -> Message | None:
    """One outbox row by its row key, or None."""
    row = conn.execute(
        select(*_MESSAGE_COLUMNS)
        .join(webhook_endpoints, webhook_endpoints.c.id == webhook_messages.c.endpoint_id)
        .where(webhook_messages.c.id == message_row)
    ).first()
    return None if row is None else _message(row)
