"""Labels: ground truth that arrives after the prediction, joined to records by model, request
id and node: a node's label names one of its own records; a back-office label (``ANY_NODE``)
names the record of that request id on any node."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Executable,
    Select,
    Text,
    bindparam,
    cast,
    func,
    select,
    text,
)

from monitor.storage.dialect import upsert
from monitor.storage.payload import ROW_KEY_STRIDE
from monitor.storage.tables import batches, labels, records
from monitor.storage.types import utcnow

#: ``labels.node_id`` of a back-office label: it applies to any node's record.
ANY_NODE = 0


def upsert_labels(
    conn: Connection, *, model_id: int, node_id: int | None, rows: Sequence[dict[str, Any]]
) -> int:
    """Store validated labels (``request_id``, ``label``, ``ts``) for ``node_id``'s records, or,
    with ``node_id=None``, back-office labels for any node's records. A later label for the
    same request (and node) replaces the earlier one, so a retried upload changes nothing."""
    if not rows:
        return 0
    now = utcnow()
    bound = ANY_NODE if node_id is None else node_id
    latest: dict[str, dict[str, Any]] = {row["request_id"]: row for row in rows}
    conn.execute(
        upsert(conn, labels, ["model_id", "request_id", "node_id"], ["label", "ts", "received_at"]),
        [
            {
                "model_id": model_id,
                "request_id": request_id,
                "label": row["label"],
                "node_id": bound,
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
    key window frames carry, ``payload.row_key``); the caller keeps those in its window.
    Equal labels are one decoded object (labels are scalars: classes or numbers). A record
    with both its node's label and a back-office label gets the back-office one: that system
    was given the right to label any node's records because it knows the ground truth."""
    in_window = select(batches.c.id).where(
        batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end
    )
    if conn.dialect.name == "sqlite" and _fewer_labels_than_records(conn, model_id, in_window):
        query: Executable = _SQLITE_FROM_LABELS.bindparams(
            model_id=model_id, start=start, end=end, stride=ROW_KEY_STRIDE
        )
    else:
        query = (
            select(
                (records.c.batch_id * ROW_KEY_STRIDE + records.c.pos).label("row_key"),
                # The stored JSON text, decoded below once per distinct label, not per row.
                cast(labels.c.label, Text).label("label"),
                labels.c.node_id,
            )
            .join(
                labels,
                (labels.c.model_id == records.c.model_id)
                & (labels.c.request_id == records.c.request_id)
                & labels.c.node_id.in_([ANY_NODE, records.c.node_id]),
            )
            # Only the batch filter: with a model filter here too, SQLite walks the model's
            # whole (model_id, request_id) index instead of the window's batches.
            .where(records.c.batch_id.in_(in_window))
        )
    rows = conn.execute(query).all()
    if not rows:
        return {}
    keys, texts, _owners = zip(*rows, strict=True)
    decoded = {text: json.loads(text) for text in set(texts)}
    found = dict(zip(keys, map(decoded.__getitem__, texts), strict=True))
    if len(found) < len(keys):  # some records have both kinds of label
        for key, text, owner in rows:
            if owner == ANY_NODE:
                found[key] = decoded[text]
    return found


# SQLite joins through the window's batches, probing the labels index once per record (1M
# probes, 0.7 s, for a 1M-row window) however few labels there are. When the model has fewer
# labels than the window has records, starting from its labels and probing the records index
# once per label is cheaper; CROSS JOIN is SQLite's way to fix that join order.
# (PostgreSQL's planner hash-joins and needs no help.)
_SQLITE_FROM_LABELS = text(
    "SELECT r.batch_id * :stride + r.pos AS row_key, CAST(l.label AS TEXT) AS label, l.node_id "
    "FROM labels AS l CROSS JOIN records AS r "
    "ON r.model_id = l.model_id AND r.request_id = l.request_id "
    f"AND l.node_id IN ({ANY_NODE}, r.node_id) "
    "WHERE l.model_id = :model_id AND r.batch_id IN (SELECT id FROM batches "
    "WHERE model_id = :model_id AND max_ts >= :start AND min_ts < :end)"
).bindparams(
    bindparam("start", type_=batches.c.max_ts.type), bindparam("end", type_=batches.c.min_ts.type)
)


def _fewer_labels_than_records(conn: Connection, model_id: int, in_window: Select[Any]) -> bool:
    """Whether the model has fewer labels than the window has records. The labels are counted
    only up to that many, so a model with years of labels costs no more than its window."""
    n_records = conn.execute(
        select(func.coalesce(func.sum(batches.c.n_records), 0)).where(batches.c.id.in_(in_window))
    ).scalar_one()
    some = select(labels.c.request_id).where(labels.c.model_id == model_id).limit(n_records)
    n_labels = conn.execute(select(func.count()).select_from(some.subquery())).scalar_one()
    return bool(n_labels < n_records)


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
            & (records.c.request_id == labels.c.request_id)
            & labels.c.node_id.in_([ANY_NODE, records.c.node_id]),
        )
        .join(batches, batches.c.id == records.c.batch_id)
        .where(labels.c.received_at >= since)
    )
    return [LabelledSpan(*row) for row in conn.execute(query)]
