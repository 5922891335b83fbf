"""Labels: ground truth that arrives after the prediction, joined by (model, request id)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select

from monitor.storage.dialect import upsert
from monitor.storage.payload import record_key
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
        upsert(conn, labels, ["model_id", "request_id"], ["value", "node_id", "ts", "received_at"]),
        [
            {
                "model_id": model_id,
                "request_id": request_id,
                "value": row["label"],
                "node_id": node_id,
                "ts": datetime.fromtimestamp(row["ts"], UTC) if row.get("ts") is not None else now,
                "received_at": now,
            }
            for request_id, row in latest.items()
        ],
    )
    return len(rows)


def labels_for(conn: Connection, model_id: int, request_ids: Sequence[str]) -> dict[str, Any]:
    """The label of each of these requests that has one."""
    found: dict[str, Any] = {}
    for start in range(0, len(request_ids), 5_000):
        chunk = request_ids[start : start + 5_000]
        query = select(labels.c.request_id, labels.c.value).where(
            labels.c.model_id == model_id, labels.c.request_id.in_(chunk)
        )
        found.update((row.request_id, row.value) for row in conn.execute(query))
    return found


def labels_for_window(
    conn: Connection, model_id: int, start: datetime, end: datetime
) -> list[tuple[int, Any, datetime]]:
    """``(record_id, label, received_at)`` of every labelled record in batches overlapping the
    window (the caller keeps those whose record falls inside it); ``record_id`` is the key
    that window frames carry (``payload.record_key``)."""
    in_window = select(batches.c.id).where(
        batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end
    )
    query = (
        select(records.c.batch_id, records.c.pos, labels.c.value, labels.c.received_at)
        .join(
            labels,
            (labels.c.model_id == records.c.model_id)
            & (labels.c.request_id == records.c.request_id),
        )
        # Only the batch filter: with a model filter here too, SQLite walks the model's whole
        # (model_id, request_id) index instead of the window's batches.
        .where(records.c.batch_id.in_(in_window))
    )
    return [
        (record_key(row.batch_id, row.pos), row.value, row.received_at)
        for row in conn.execute(query)
    ]
