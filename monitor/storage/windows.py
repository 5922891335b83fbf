"""Window loading: every record of a model in a time window, straight into a DataFrame.

A window is read from the batches' columnar payloads, never row by row: the batches that
overlap the window are selected through the (model, max_ts) and (model, node, max_ts) indexes,
their Arrow payloads are decoded and concatenated, and records outside the window are cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Select, func, select

from monitor.schema import ROW_KEY
from monitor.storage import payload
from monitor.storage.tables import batches
from monitor.storage.types import aware


def load_window_table(
    conn: Connection,
    model_id: int,
    start: datetime,
    end: datetime,
    *,
    node_ids: Sequence[int] | None = None,
) -> pa.Table:
    """The model's records with ``start <= ts < end`` as one Arrow table."""
    query = select(
        batches.c.id, batches.c.node_id, batches.c.model_version_id, batches.c.payload
    ).where(batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end)
    if node_ids is not None:
        query = query.where(batches.c.node_id.in_(list(node_ids)))
    # Sorted here, not by ORDER BY: SQLite would sort the payloads themselves in a temp b-tree.
    rows = sorted(_fetch(conn, query))
    if not rows:
        return _empty()
    tables = [payload.decode(blob) for _, _, _, blob in rows]
    lengths = np.fromiter((t.num_rows for t in tables), dtype=np.int64, count=len(tables))
    table = payload.concat(tables)
    batch_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    positions = np.arange(len(table), dtype=np.int64) - starts
    keys = np.repeat(batch_ids * payload.ROW_KEY_STRIDE, lengths) + positions
    table = table.add_column(0, ROW_KEY, pa.array(keys))
    node_column = np.repeat(np.fromiter((r[1] for r in rows), np.int32, len(rows)), lengths)
    version_column = np.repeat(np.fromiter((r[2] for r in rows), np.int32, len(rows)), lengths)
    table = table.add_column(2, "node_id", pa.array(node_column))
    table = table.add_column(3, "model_version_id", pa.array(version_column))
    ts = table.column("ts")
    inside = pc.and_(
        pc.greater_equal(ts, pa.scalar(start, ts.type)), pc.less(ts, pa.scalar(end, ts.type))
    )
    if not pc.all(inside).as_py():
        table = table.filter(inside)
    return table


def _fetch(conn: Connection, query: Select[Any]) -> list[tuple[Any, ...]]:
    """The query's rows; on PostgreSQL through a binary cursor, because bytea in the text
    protocol travels as hex (twice the bytes) and is decoded in Python, which took half of a
    million-record window's load time."""
    if conn.dialect.name != "postgresql":
        return [tuple(row) for row in conn.execute(query)]
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    with conn.connection.dbapi_connection.cursor(binary=True) as cursor:  # type: ignore[union-attr]
        cursor.execute(str(compiled), compiled.params)
        return cursor.fetchall()


def load_window(
    conn: Connection,
    model_id: int,
    start: datetime,
    end: datetime,
    *,
    node_ids: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The model's records with ``start <= ts < end``, one row each, text as categoricals.

    Columns (named in ``monitor.schema``): ``row_key, ts, node_id, model_version_id,
    latency_ms, prediction``, then ``feature:<name>`` per feature and ``proba:<class>`` per
    class probability. ``row_key`` is the record's storage key (``payload.row_key``), which
    label joins use too."""
    table = load_window_table(conn, model_id, start, end, node_ids=node_ids)
    # split_blocks with self_destruct frees each Arrow column as it is converted, so the window
    # is not held twice at the peak.
    frame = table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
    del table
    return frame


def _empty() -> pa.Table:
    return pa.table(
        {
            ROW_KEY: pa.array([], pa.int64()),
            "ts": pa.array([], pa.timestamp("us", tz="UTC")),
            "node_id": pa.array([], pa.int32()),
            "model_version_id": pa.array([], pa.int32()),
            "latency_ms": pa.array([], pa.float64()),
            "prediction": pa.array([], pa.string()),
        }
    )


def has_records(conn: Connection, model_id: int, start: datetime, end: datetime) -> bool:
    """Whether any batch of the model overlaps ``[start, end)`` (empty windows are not analysed;
    node health tells when nodes fall silent)."""
    query = (
        select(batches.c.id)
        .where(batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end)
        .limit(1)
    )
    return conn.execute(query).first() is not None


def first_record_time(conn: Connection, model_id: int) -> datetime | None:
    """When the model's oldest stored record was made."""
    return aware(
        conn,
        conn.execute(
            select(func.min(batches.c.min_ts)).where(batches.c.model_id == model_id)
        ).scalar(),
    )
