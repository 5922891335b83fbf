"""Arrivals: when batches were received and which record times they hold, for finding windows
whose records arrived after they were analysed (a node back from days offline)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from monitor.storage.tables import batches


@dataclass(frozen=True, slots=True)
class Arrival:
    """One stored batch: its model, the span of its record times, when it was received."""

    batch_id: int
    model_id: int
    min_ts: datetime
    max_ts: datetime
    received_at: datetime


def received_since(conn: Connection, since: datetime, *, reaching: datetime) -> list[Arrival]:
    """Batches received at or after ``since`` with a record at or after ``reaching``, in the
    order they were received (the batches' ``received_at`` index; no payload is read)."""
    query = (
        select(
            batches.c.id,
            batches.c.model_id,
            batches.c.min_ts,
            batches.c.max_ts,
            batches.c.received_at,
        )
        .where(batches.c.received_at >= since, batches.c.max_ts >= reaching)
        .order_by(batches.c.received_at)
    )
    return [Arrival(*row) for row in conn.execute(query)]
