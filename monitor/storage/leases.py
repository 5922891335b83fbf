"""Leases on units of work, so that any number of workers run each unit once.

A worker claims a key for a while (``claim``), does the work, and in the transaction that
stores the results marks the lease completed (``complete``), which succeeds only while the
worker still holds it. A worker that dies leaves its lease to expire; another then takes it
over. A completed key is never claimed again, unless its work is to be redone (``reopen``:
a re-analysis asked for by a person). A worker whose work outlasts a good part of its
lease renews it (``renew``). Every function takes the caller's ``now``, so that one clock
decides (the worker's, or a test's).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, select, update

from monitor.storage.dialect import insert_or_ignore
from monitor.storage.tables import job_leases
from monitor.storage.types import utcnow


def claim(
    conn: Connection, key: str, owner: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Take the lease on ``key`` for ``ttl`` unless someone holds it or it is completed."""
    now = now or utcnow()
    # RETURNING, not rowcount: psycopg reports no rowcount for ON CONFLICT DO NOTHING here.
    inserted = conn.execute(
        insert_or_ignore(conn, job_leases, ["key"])
        .values(key=key, owner=owner, acquired_at=now, expires_at=now + ttl, attempts=1)
        .returning(job_leases.c.key)
    ).first()
    if inserted is not None:
        return True
    taken_over = conn.execute(
        update(job_leases)
        .where(
            job_leases.c.key == key,
            job_leases.c.completed_at.is_(None),
            job_leases.c.expires_at < now,
        )
        .values(
            owner=owner,
            acquired_at=now,
            expires_at=now + ttl,
            attempts=job_leases.c.attempts + 1,
        )
    ).rowcount
    return taken_over == 1


def renew(
    conn: Connection, key: str, owner: str, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Extend a lease this owner still holds (and has not let expire) to ``now + ttl``."""
    now = now or utcnow()
    return (
        conn.execute(
            update(job_leases)
            .where(
                job_leases.c.key == key,
                job_leases.c.owner == owner,
                job_leases.c.completed_at.is_(None),
                job_leases.c.expires_at >= now,
            )
            .values(expires_at=now + ttl)
        ).rowcount
        == 1
    )


def complete(conn: Connection, key: str, owner: str, now: datetime | None = None) -> bool:
    """Mark the work done; False (and the caller must roll back) if the lease was lost."""
    return (
        conn.execute(
            update(job_leases)
            .where(
                job_leases.c.key == key,
                job_leases.c.owner == owner,
                job_leases.c.completed_at.is_(None),
            )
            .values(completed_at=now or utcnow())
        ).rowcount
        == 1
    )


def reopen(conn: Connection, key: str, now: datetime | None = None) -> bool:
    """Make a completed key claimable again (its work is to be redone), as if its lease had
    expired; False when the key is not completed (free, or someone holds it: wait for them)."""
    now = now or utcnow()
    return (
        conn.execute(
            update(job_leases)
            .where(job_leases.c.key == key, job_leases.c.completed_at.is_not(None))
            .values(completed_at=None, expires_at=now - timedelta(microseconds=1))
        ).rowcount
        == 1
    )


def held(conn: Connection, key: str, now: datetime | None = None) -> bool:
    """Whether someone holds the lease on ``key`` now (claimed, not completed, not expired)."""
    now = now or utcnow()
    query = select(job_leases.c.key).where(
        job_leases.c.key == key,
        job_leases.c.completed_at.is_(None),
        job_leases.c.expires_at >= now,
    )
    return conn.execute(query).first() is not None


def completed_keys(conn: Connection, prefix: str) -> set[str]:
    """The completed keys that start with ``prefix``."""
    query = select(job_leases.c.key).where(
        job_leases.c.key.startswith(prefix, autoescape=True), job_leases.c.completed_at.is_not(None)
    )
    return set(conn.execute(query).scalars())


def lease_info(conn: Connection, key: str) -> dict[str, object] | None:
    """The lease row of ``key``, or None."""
    row = conn.execute(select(job_leases).where(job_leases.c.key == key)).mappings().first()
    return None if row is None else dict(row)


__all__ = ["claim", "complete", "completed_keys", "held", "lease_info", "renew", "reopen"]
