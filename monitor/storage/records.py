"""Records: store a node's batch exactly once per record id, payload columnar, index thin."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import Connection, case, delete, func, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from monitor.storage import payload
from monitor.storage.tables import batches, records
from monitor.storage.types import aware, utcnow

#: The batch id prefix of imported batches (``edge-monitor import``): history, old by nature,
#: which health must not take for a node delivering a backlog.
IMPORT_BATCH_PREFIX = "import:"


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
    # The common case, every record new, costs two statements: the batch with its payload,
    # then the index rows. Retried batches take the slower path below.
    batch_id = insert_batch_row(
        conn,
        node_id=node_id,
        model_id=model_id,
        model_version_id=model_version_id,
        batch_uid=batch_uid,
        batch=batch,
        compression=compression,
    )
    new = _insert_index(conn, batch_id, node_id, model_id, batch.uids, batch.request_ids)
    if len(new) == len(batch.uids):
        return IngestResult(len(new), batch.in_batch_duplicates, batch_id)
    if not new:
        conn.execute(delete(batches).where(batches.c.id == batch_id))
        return IngestResult(0, batch.in_batch_duplicates + len(batch.uids), batch_id=None)
    # Some records were stored before: keep only the new ones in the payload and renumber
    # their positions to match it.
    keep = [uid in new for uid in batch.uids]
    kept_uids = [uid for uid, k in zip(batch.uids, keep, strict=True) if k]
    conn.execute(delete(records).where(records.c.batch_id == batch_id))
    timestamps = [ts for ts, k in zip(batch.timestamps, keep, strict=True) if k]
    conn.execute(
        update(batches)
        .where(batches.c.id == batch_id)
        .values(
            payload=payload.serialise(batch.table.filter(pa.array(keep)), compression),
            n_records=len(kept_uids),
            min_ts=_utc(min(timestamps)),
            max_ts=_utc(max(timestamps)),
        )
    )
    request_ids = [rid for rid, k in zip(batch.request_ids, keep, strict=True) if k]
    _insert_index(conn, batch_id, node_id, model_id, kept_uids, request_ids)
    duplicates = batch.in_batch_duplicates + len(batch.uids) - len(kept_uids)
    return IngestResult(len(kept_uids), duplicates, batch_id)


def insert_batch_row(
    conn: Connection,
    *,
    node_id: int,
    model_id: int,
    model_version_id: int,
    batch_uid: str | None,
    batch: PreparedBatch,
    compression: str,
) -> int:
    """The ``batches`` row of a prepared batch, with its whole payload; returns its id (the
    index rows are the caller's)."""
    return int(
        conn.execute(
            batches.insert()
            .values(
                node_id=node_id,
                model_id=model_id,
                model_version_id=model_version_id,
                batch_uid=batch_uid,
                received_at=utcnow(),
                min_ts=_utc(min(batch.timestamps)),
                max_ts=_utc(max(batch.timestamps)),
                n_records=len(batch.uids),
                payload=payload.serialise(batch.table, compression),
            )
            .returning(batches.c.id)
        ).scalar_one()
    )


# Parameters per statement stay under SQLite's limit of 32,766 and PostgreSQL's of 65,535.
_INDEX_ROWS_PER_STATEMENT = 5_000


_INDEX_COLUMNS = "INSERT INTO records (batch_id, pos, node_id, uid, model_id, request_id) "


def _insert_index(
    conn: Connection,
    batch_id: int,
    node_id: int,
    model_id: int,
    uids: Sequence[str],
    request_ids: Sequence[str],
) -> set[str]:
    """Insert index rows, skipping record ids the node sent before; returns the new ids.

    One multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` written out directly: the
    database decides what is new (so concurrent retries on several collectors still store a
    record once), and SQLAlchemy's per-row parameter processing is skipped on this hot path."""
    if conn.dialect.name == "postgresql":
        return _insert_index_unnest(conn, batch_id, node_id, model_id, uids, request_ids)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    new: set[str] = set()
    for start in range(0, len(uids), _INDEX_ROWS_PER_STATEMENT):
        chunk = range(start, min(start + _INDEX_ROWS_PER_STATEMENT, len(uids)))
        row = f"({mark},{mark},{mark},{mark},{mark},{mark})"
        sql = (
            _INDEX_COLUMNS
            + "VALUES "
            + ",".join([row] * len(chunk))
            + " ON CONFLICT (node_id, uid) DO NOTHING RETURNING uid"
        )
        params: list[Any] = []
        for pos in chunk:
            params += (batch_id, pos, node_id, uids[pos], model_id, request_ids[pos])
        new.update(uid for (uid,) in conn.exec_driver_sql(sql, tuple(params)))
    return new


# PostgreSQL takes the rows as six arrays: one short statement whose parse psycopg caches, and
# arrays that travel in binary, instead of a 3,000-placeholder statement parsed every batch.
_UNNEST_INSERT = (
    _INDEX_COLUMNS + "SELECT %s, pos, %s, uid, %s, request_id "
    "FROM unnest(%s::integer[], %s::varchar[], %s::varchar[]) AS t(pos, uid, request_id) "
    "ON CONFLICT (node_id, uid) DO NOTHING RETURNING uid"
)


def _insert_index_unnest(
    conn: Connection,
    batch_id: int,
    node_id: int,
    model_id: int,
    uids: Sequence[str],
    request_ids: Sequence[str],
) -> set[str]:
    params = (batch_id, node_id, model_id, list(range(len(uids))), list(uids), list(request_ids))
    return {uid for (uid,) in conn.exec_driver_sql(_UNNEST_INSERT, params)}


_COUNTED_SQLITE = _INDEX_COLUMNS + "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (node_id, uid) DO NOTHING"
_COUNTED_POSTGRES = _UNNEST_INSERT.removesuffix(" RETURNING uid")


def insert_index_counted(
    conn: Connection, batch_id: int, node_id: int, model_id: int, batch: PreparedBatch
) -> int:
    """Insert a batch's index rows, skipping record ids the node sent before; how many were
    new (the database decides, as for the collector). Without RETURNING: the new ids would
    come back one Python object each, a fifth of an import's time."""
    n = len(batch.uids)
    if conn.dialect.name == "postgresql":
        params: Any = (
            batch_id,
            node_id,
            model_id,
            list(range(n)),
            list(batch.uids),
            list(batch.request_ids),
        )
        return int(conn.exec_driver_sql(_COUNTED_POSTGRES, params).rowcount)
    rows = list(
        zip(
            itertools.repeat(batch_id, n),
            range(n),
            itertools.repeat(node_id, n),
            batch.uids,
            itertools.repeat(model_id, n),
            batch.request_ids,
            strict=True,
        )
    )
    return int(conn.exec_driver_sql(_COUNTED_SQLITE, rows).rowcount)


def count_records(conn: Connection, *, model_id: int | None = None) -> int:
    """How many records are stored (for one model, or all)."""
    query = select(func.count()).select_from(records)
    if model_id is not None:
        query = query.where(records.c.model_id == model_id)
    return int(conn.execute(query).scalar_one())


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class Delivery:
    """How late one node's batches received since some time arrived."""

    node_id: int
    batches: int
    #: Batches received more than the asked lag after their newest record was made.
    late: int
    #: The age, when it arrived, of the oldest record among them (seconds).
    oldest_age_seconds: float
    #: When the oldest record among them was made.
    oldest_ts: datetime


def deliveries(conn: Connection, since: datetime, lag_seconds: float) -> dict[int, Delivery]:
    """Per node, the batches received since ``since``: how many, how many of them arrived more
    than ``lag_seconds`` after their newest record, and the oldest record among them.

    One aggregate over the ``received_at`` index, computed by the database: nothing per batch
    travels. A node delivering a backlog (its spool after an outage) has most of its batches
    late; a live node's arrive seconds after their records."""
    late = case((_seconds(conn, batches.c.received_at, batches.c.max_ts) > lag_seconds, 1), else_=0)
    query = (
        select(
            batches.c.node_id,
            func.count(),
            func.sum(late),
            func.max(_seconds(conn, batches.c.received_at, batches.c.min_ts)),
            func.min(batches.c.min_ts),
        )
        .where(
            batches.c.received_at >= since,
            or_(
                batches.c.batch_uid.is_(None),
                batches.c.batch_uid.not_like(f"{IMPORT_BATCH_PREFIX}%"),
            ),
        )
        .group_by(batches.c.node_id)
    )
    found: dict[int, Delivery] = {}
    for node_id, n, n_late, oldest_age, oldest in conn.execute(query):
        found[node_id] = Delivery(
            node_id,
            int(n),
            int(n_late or 0),
            float(oldest_age or 0.0),
            aware(conn, oldest) or since,
        )
    return found


def _seconds(conn: Connection, later: Any, earlier: Any) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, computed by the database."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", later - earlier)
    # SQLite keeps UTC times as text, which julianday() reads (days as a float).
    return (func.julianday(later) - func.julianday(earlier)) * 86_400.0
