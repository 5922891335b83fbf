"""Window loading: every record of a model in a time window, straight into a DataFrame.

A window is read from the batches' columnar payloads, never row by row: the batches that
overlap the window are selected through the (model, max_ts) and (model, node, max_ts) indexes,
their Arrow payloads are decoded, and records outside the window are cut. ``load_window``
decodes a group of payloads at a time straight into the frame's numpy columns, so a window is
never held as Arrow tables beside its frame; payloads whose columns differ take Arrow's
permissive concatenation (``load_window_table``) instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
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
    listed = _batch_list(conn, model_id, start, end, node_ids)
    frame = _Columns.load(conn, listed, start, end) if listed else None
    if frame is not None:
        return frame
    # Payloads whose columns differ (a feature added, a column's type changed) take the general
    # path: Arrow's permissive concatenation of every payload, then one conversion.
    table = load_window_table(conn, model_id, start, end, node_ids=node_ids)
    # split_blocks with self_destruct frees each Arrow column as it is converted, so the window
    # is not held twice at the peak.
    frame = table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
    del table
    return frame


def _batch_list(
    conn: Connection,
    model_id: int,
    start: datetime,
    end: datetime,
    node_ids: Sequence[int] | None,
) -> list[tuple[int, int, int, int]]:
    """(id, node, version, records) of the batches overlapping the window, by id."""
    query = select(
        batches.c.id, batches.c.node_id, batches.c.model_version_id, batches.c.n_records
    ).where(batches.c.model_id == model_id, batches.c.max_ts >= start, batches.c.min_ts < end)
    if node_ids is not None:
        query = query.where(batches.c.node_id.in_(list(node_ids)))
    return sorted(tuple(row) for row in conn.execute(query))


#: Batches whose payloads are fetched and decoded together: few enough that their Arrow tables
#: are a few MB (freed before the next group), many enough that per-group Python costs vanish.
_GROUP = 128
#: The type of the payloads' time column.
_TS_TYPE = pa.timestamp("us", tz="UTC")


class _Columns:
    """A window built group by group into preallocated numpy columns, as ``to_pandas`` would
    convert the concatenated window (same columns, dtypes, categories and their order), without
    holding every payload's table and their concatenation at once: the peak is the frame itself
    plus one group of payloads."""

    def __init__(self, schema: pa.Schema, capacity: int) -> None:
        self.schema = schema
        self.empty = schema.empty_table()
        self.filled = 0
        self.keys = np.empty(capacity, np.int64)
        self.node = np.empty(capacity, np.int32)
        self.version = np.empty(capacity, np.int32)
        self.numbers: dict[str, np.ndarray] = {}
        self.codes: dict[str, np.ndarray] = {}
        self.categories: dict[str, dict[str, int]] = {}
        for field in schema:
            if field.type == _TS_TYPE:
                self.numbers[field.name] = np.empty(capacity, "datetime64[us]")
            elif pa.types.is_float64(field.type):
                self.numbers[field.name] = np.empty(capacity, np.float64)
            else:  # string (checked by _supported)
                self.codes[field.name] = np.empty(capacity, np.int32)
                self.categories[field.name] = {}

    @classmethod
    def load(
        cls,
        conn: Connection,
        listed: list[tuple[int, int, int, int]],
        start: datetime,
        end: datetime,
    ) -> pd.DataFrame | None:
        """The window's frame, or None when its payloads need the general path."""
        capacity = sum(row[3] for row in listed)
        groups = [listed[i : i + _GROUP] for i in range(0, len(listed), _GROUP)]
        built: _Columns | None = None
        # closing: a fetch still in flight ends before the caller uses the connection again.
        with contextlib.closing(_fetched(conn, groups)) as fetched:
            for group, blobs in fetched:
                tables = [payload.decode(blobs.pop(row[0])) for row in group]
                del blobs
                if built is None:
                    if not _supported(tables[0].schema):
                        return None
                    built = cls(tables[0].schema, capacity)
                if not built.add(group, tables, start, end):
                    return None
        return None if built is None else built.frame()

    def add(
        self,
        group: list[tuple[int, int, int, int]],
        tables: list[pa.Table],
        start: datetime,
        end: datetime,
    ) -> bool:
        """Append a group's rows inside the window; False when they do not fit this builder."""
        lengths = np.fromiter((t.num_rows for t in tables), np.int64, len(tables))
        if not np.array_equal(
            lengths, np.fromiter((row[3] for row in group), np.int64, len(group))
        ):
            return False
        try:
            # Without promotion Arrow refuses tables whose schemas differ from the first's.
            table = pa.concat_tables([self.empty, *tables])
        except pa.ArrowInvalid:
            fitted = [self._fitted(t) for t in tables]
            if any(t is None for t in fitted):
                return False
            table = pa.concat_tables([self.empty, *fitted])
        starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids = np.fromiter((row[0] for row in group), np.int64, len(group))
        keys = np.repeat(ids * payload.ROW_KEY_STRIDE, lengths) + (
            np.arange(len(table), dtype=np.int64) - starts
        )
        node = np.repeat(np.fromiter((row[1] for row in group), np.int32, len(group)), lengths)
        version = np.repeat(np.fromiter((row[2] for row in group), np.int32, len(group)), lengths)
        ts = _numpy(table.column("ts"))
        inside = (ts >= np.datetime64(_naive(start), "us")) & (
            ts < np.datetime64(_naive(end), "us")
        )
        if not inside.all():
            table = table.filter(pa.array(inside))
            keys, node, version = keys[inside], node[inside], version[inside]
        at, self.filled = self.filled, self.filled + len(table)
        self.keys[at : self.filled] = keys
        self.node[at : self.filled] = node
        self.version[at : self.filled] = version
        for name, column in self.numbers.items():
            # Combined first: ChunkedArray.to_numpy goes through pandas' conversion, ~30x slower
            # on a group's hundreds of small chunks. Nulls become NaN, as to_pandas makes them.
            column[at : self.filled] = _numpy(table.column(name))
        for name, codes in self.codes.items():
            codes[at : self.filled] = self._codes(name, table.column(name))
        return True

    def _fitted(self, table: pa.Table) -> pa.Table | None:
        """The table in this window's schema when it differs only by all-null columns (a
        payload stores a column without any value as Arrow's null type), as Arrow's permissive
        concatenation would promote them; None for any other difference."""
        if table.schema.equals(self.schema):
            return table
        if table.column_names != self.schema.names:
            return None
        for field, own in zip(table.schema, self.schema, strict=True):
            if field.type != own.type and not pa.types.is_null(field.type):
                return None
        return table.cast(self.schema)

    def _codes(self, name: str, column: pa.ChunkedArray) -> np.ndarray:
        """Codes in the window's categories, which grow in order of first appearance (the
        order Arrow's dictionary encoding of the whole window gives)."""
        encoded = pc.dictionary_encode(column.combine_chunks())
        seen = self.categories[name]
        values = encoded.dictionary.to_pylist()
        # One slot past the dictionary for nulls: code -1, as pandas marks a missing category.
        lookup = np.fromiter(
            [*(seen.setdefault(v, len(seen)) for v in values), -1], np.int32, len(values) + 1
        )
        return lookup[encoded.indices.fill_null(len(values)).to_numpy()]

    def frame(self) -> pd.DataFrame:
        n = self.filled
        columns: dict[str, Any] = {
            ROW_KEY: self.keys[:n],
            "ts": pd.array(self.numbers["ts"][:n], dtype=_TS_DTYPE),
            "node_id": self.node[:n],
            "model_version_id": self.version[:n],
        }
        for field in self.schema:
            name = field.name
            if name in self.codes:
                categories = pd.Index(list(self.categories[name]), dtype=object)
                columns[name] = pd.Categorical.from_codes(
                    self.codes[name][:n], categories=categories, validate=False
                )
            elif name != "ts":
                columns[name] = self.numbers[name][:n]
        # copy=False: every column stays its own block, as to_pandas(split_blocks=True) leaves
        # them, instead of being copied into one 2-D block per dtype.
        return pd.DataFrame(columns, copy=False)


_TS_DTYPE = pa.array([], _TS_TYPE).to_pandas().dtype


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    return column.combine_chunks().to_numpy(zero_copy_only=False)


def _supported(schema: pa.Schema) -> bool:
    if schema.names[:1] != ["ts"] or schema.field("ts").type != _TS_TYPE:
        return False
    return all(pa.types.is_float64(f.type) or pa.types.is_string(f.type) for f in list(schema)[1:])


def _naive(moment: datetime) -> datetime:
    """The UTC wall time of an aware datetime (numpy's datetime64 has no time zone)."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _fetched(
    conn: Connection, groups: list[list[tuple[int, int, int, int]]]
) -> Generator[tuple[list[tuple[int, int, int, int]], dict[int, bytes]]]:
    """Each group with its payloads by batch id, the next group's fetched meanwhile.

    A thread fetches ahead so that the database's reply overlaps this group's decoding: the
    drivers wait for it without the GIL. Measured at 1M rows: PostgreSQL's load 1.5 -> 1.0 s,
    SQLite's ~8% faster. One thread uses the connection at a time: the consumer never touches
    it while a fetch is in flight, and leaving the block (also early) waits for that fetch."""
    with ThreadPoolExecutor(1, thread_name_prefix="window-fetch") as fetcher:
        pending = fetcher.submit(_payloads, conn, [row[0] for row in groups[0]])
        for index, group in enumerate(groups):
            blobs = pending.result()
            if index + 1 < len(groups):
                pending = fetcher.submit(_payloads, conn, [row[0] for row in groups[index + 1]])
            yield group, blobs


def _payloads(conn: Connection, ids: list[int]) -> dict[int, bytes]:
    query = select(batches.c.id, batches.c.payload).where(batches.c.id.in_(ids))
    return {row[0]: row[1] for row in _fetch(conn, query)}


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
