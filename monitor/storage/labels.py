"""Labels: ground truth that arrives after the prediction, joined by (model, request id)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from monitor.storage.dialect import upsert
from monitor.storage.payload import row_key
from monitor.storage.tables import batches, labels, records
from monitor.storage.types import utcnow


def upsert_labels(
    conn: Connection, *, model_id: int, node_id: int | None, rows: Sequence[dict[str, Any]]
) -> int:
    """Store validated labels (``request_id``, ``label``, ``ts``); a later label for the same
    request replaces the earlier one, so a retried upload changes nothing."""
    if not rows:
        return 0
    now = utcnow()
    latest: dict[str, dict[str, Any]] = {row["request_id"]: row for row in rows}
    conn.execute(
        upsert(conn, labels, ["model_id", "request_id"], ["label", "node_id", "ts", "received_at"]),
        [
            {
                "model_id": model_id,
                "request_id": request_id,
                "label": row["label"],
                "node_id": node_id,
                "ts": datetime.fromtimestamp(row["ts"], UTC) if row.get("ts") is not None else now,
                "received_at": now,
            }
            for request_id, row in latest.items()
        ],
    )
    return len(rows)


def window_labels(
    conn: Connection, model_id: int, start: datetime, end: datetime
) -> dict[int, Any]:
    """The label of every labelled record in batches overlapping the window, by row key (the
    key window frames carry, ``payload.row_key``); the caller keeps those in its window."""
    in_window = select(batches.c.id).where(
        batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end
    )
    query = (
        select(records.c.batch_id, records.c.pos, labels.c.label)
        .join(
            labels,
            (labels.c.model_id == records.c.model_id)
            & (labels.c.request_id == records.c.request_id),
        )
        # Only the batch filter: with a model filter here too, SQLite walks the model's whole
        # (model_id, request_id) index instead of the window's batches.
        .where(records.c.batch_id.in_(in_window))
    )
    return {row_key(row.batch_id, row.pos): row.label for row in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class LabelledSpan:
    """A batch whose records got a label: its model, its records' time span, the label's
    arrival."""

    model_id: int
    min_ts: datetime
    max_ts: datetime
    received_at: datetime


def labelled_since(conn: Connection, since: datetime) -> list[LabelledSpan]:
    """Batches with records labelled at or after ``since`` (one entry per label)."""
    query = (
        select(batches.c.model_id, batches.c.min_ts, batches.c.max_ts, labels.c.received_at)
        .select_from(labels)
        .join(
            records,
            (records.c.model_id == labels.c.model_id)
            & (records.c.request_id == labels.c.request_id),
        )
        .join(batches, batches.c.id == records.c.batch_id)
        .where(labels.c.received_at >= since)
    )
    return [LabelledSpan(*row) for row in conn.execute(query)]
