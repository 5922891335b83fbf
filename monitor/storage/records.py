"""Records: store a node's batch exactly once per record id, payload columnar, index thin."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, delete, func, select, update

from monitor.storage import payload
from monitor.storage.dialect import insert_or_ignore
from monitor.storage.tables import batches, records
from monitor.storage.types import utcnow


@dataclass(frozen=True, slots=True)
class PreparedBatch:
    """A batch's records made columnar before the transaction, so the lock is held briefly."""

    uids: list[str]
    request_ids: list[str]
    table: pa.Table
    timestamps: list[float]
    in_batch_duplicates: int


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of a batch's valid records."""

    accepted: int
    duplicate: int
    batch_id: int | None


def prepare_batch(rows: Sequence[dict[str, Any]]) -> PreparedBatch:
    """Columnar form of validated wire records; a record id repeated in the batch counts once."""
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["id"], row)
    kept = list(unique.values())
    return PreparedBatch(
        uids=list(unique),
        request_ids=[row.get("request_id") or row["id"] for row in kept],
        table=payload.build_table(kept),
        timestamps=[row["ts"] for row in kept],
        in_batch_duplicates=len(rows) - len(kept),
    )


def insert_batch(
    conn: Connection,
    *,
    node_id: int,
    model_id: int,
    model_version_id: int,
    batch_uid: str | None,
    batch: PreparedBatch,
    compression: str = "lz4",
) -> IngestResult:
    """Store a prepared batch; records seen before from this node (same ``id``) count as
    duplicates and are not stored again. Runs in the caller's transaction, which must commit
    before the batch is acknowledged."""
    if not batch.uids:
        return IngestResult(0, batch.in_batch_duplicates, None)
    batch_id = conn.execute(
        batches.insert()
        .values(
            node_id=node_id,
            model_id=model_id,
            model_version_id=model_version_id,
            batch_uid=batch_uid,
            received_at=utcnow(),
            min_ts=_utc(min(batch.timestamps)),
            max_ts=_utc(max(batch.timestamps)),
            n_records=0,
            payload=b"",
        )
        .returning(batches.c.id)
    ).scalar_one()
    # ON CONFLICT DO NOTHING ... RETURNING hands back only the rows that were new; the
    # unique (node_id, uid) key decides inside the database, so concurrent retries of one
    # batch on several collectors still store each record once.
    inserted = conn.execute(
        insert_or_ignore(conn, records, ["node_id", "uid"]).returning(records.c.uid, records.c.id),
        [
            {
                "node_id": node_id,
                "uid": uid,
                "batch_id": batch_id,
                "model_id": model_id,
                "request_id": request_id,
            }
            for uid, request_id in zip(batch.uids, batch.request_ids, strict=True)
        ],
    ).all()
    duplicates = batch.in_batch_duplicates + len(batch.uids) - len(inserted)
    if not inserted:
        conn.execute(delete(batches).where(batches.c.id == batch_id))
        return IngestResult(0, duplicates, None)
    ids = dict(inserted)
    table, timestamps = batch.table, batch.timestamps
    if len(inserted) < len(batch.uids):
        keep = [uid in ids for uid in batch.uids]
        table = table.filter(pa.array(keep))
        timestamps = [ts for ts, k in zip(timestamps, keep, strict=True) if k]
    record_ids = [ids[uid] for uid in batch.uids if uid in ids]
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(
            payload=payload.serialise(table, record_ids, compression),
            n_records=len(record_ids),
            min_ts=_utc(min(timestamps)),
            max_ts=_utc(max(timestamps)),
        )
    )
    return IngestResult(len(record_ids), duplicates, batch_id)


def count_records(conn: Connection, *, model_id: int | None = None) -> int:
    """How many records are stored (for one model, or all)."""
    query = select(func.count()).select_from(records)
    if model_id is not None:
        query = query.where(records.c.model_id == model_id)
    return int(conn.execute(query).scalar_one())


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
