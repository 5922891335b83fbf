"""The columnar payload of a batch: its new records as one compressed Arrow IPC stream.

Columns: ``ts`` (UTC, microseconds), ``latency_ms``, ``prediction``, ``device_ts`` only in a
batch that holds a record whose device clock was wrong (``DEVICE_TS``), ``feature:<name>`` per
feature and ``proba:<class>`` per class probability. A record is row ``pos`` of its batch's
payload; ``row_key(batch_id, pos)`` names it in windows and label joins (the row key, a
storage-internal integer; the record id is the wire's UUID).
Numbers are stored as float64, so batches with integer and fractional values of one feature
line up; a column holding both text and numbers in one batch is stored as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from monitor.schema import feature_column, proba_column

#: A record's own time (float64 seconds since the epoch, null for the others) when it was
#: implausible and the time the collector received it became its ``ts``. Not a feature:
#: analysis reads only ``feature:`` and ``proba:`` columns.
DEVICE_TS = "device_ts"

#: Rows per batch payload are below this, so ``batch_id * ROW_KEY_STRIDE + pos`` is unique.
ROW_KEY_STRIDE = 1 << 16


def row_key(batch_id: int, pos: int) -> int:
    """The row key of a stored record: its batch and its row in the batch's payload."""
    return batch_id * ROW_KEY_STRIDE + pos


_TS_TYPE = pa.timestamp("us", tz="UTC")
_READ_OPTIONS = pa.ipc.IpcReadOptions(use_threads=False)


def build_table(records: Sequence[dict[str, Any]]) -> pa.Table:
    """The columns of validated wire records."""
    try:
        columns = _columns_fast(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        columns = _columns_by_value(records)
    return pa.table(columns)


def serialise(table: pa.Table, compression: str = "lz4") -> bytes:
    """One payload: the table as compressed Arrow IPC."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=None if compression == "none" else compression)
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _columns_fast(records: Sequence[dict[str, Any]]) -> dict[str, pa.Array]:
    # Arrow converts the whole list of dicts in C, about 5x faster than a Python loop per
    # column; it raises when a column mixes kinds, and the careful path takes over.
    rows = pa.array(records)
    kinds = {field.name: field.type for field in rows.type}
    columns: dict[str, pa.Array] = {
        "ts": _timestamps(rows.field("ts")),
        "latency_ms": _floats(rows.field("latency_ms")) if "latency_ms" in kinds else None,
        "prediction": _normalised(rows.field("prediction")),
    }
    if columns["latency_ms"] is None:
        columns["latency_ms"] = pa.nulls(len(records), pa.float64())
    if DEVICE_TS in kinds:
        columns[DEVICE_TS] = _floats(rows.field(DEVICE_TS))
    features = rows.field("features")
    for i, field in enumerate(features.type):
        columns[feature_column(field.name)] = _normalised(features.field(i))
    proba_type = kinds.get("probabilities")
    if proba_type is not None and not pa.types.is_null(proba_type):
        if not pa.types.is_struct(proba_type):
            raise pa.ArrowTypeError("probabilities given as lists")
        probabilities = rows.field("probabilities")
        for i, field in enumerate(proba_type):
            columns[proba_column(field.name)] = _floats(probabilities.field(i))
    return columns


def _columns_by_value(records: Sequence[dict[str, Any]]) -> dict[str, pa.Array]:
    columns: dict[str, pa.Array] = {
        "ts": pa.array([round(r["ts"] * 1_000_000) for r in records], _TS_TYPE),
        "latency_ms": pa.array([r.get("latency_ms") for r in records], pa.float64()),
        "prediction": _column([r["prediction"] for r in records]),
    }
    if any(DEVICE_TS in r for r in records):
        columns[DEVICE_TS] = pa.array([r.get(DEVICE_TS) for r in records], pa.float64())
    features = [r["features"] for r in records]
    for name in _keys(features):
        columns[feature_column(name)] = _column([f.get(name) for f in features])
    probabilities = [_proba_dict(r.get("probabilities")) for r in records]
    for name in _keys(probabilities):
        columns[proba_column(name)] = pa.array([p.get(name) for p in probabilities], pa.float64())
    return columns


def _timestamps(seconds: pa.Array) -> pa.Array:
    micros = pc.round(pc.multiply(seconds.cast(pa.float64()), 1_000_000.0))
    return micros.cast(pa.int64()).cast(_TS_TYPE)


def _floats(array: pa.Array) -> pa.Array:
    return array if pa.types.is_float64(array.type) else array.cast(pa.float64())


def _normalised(array: pa.Array) -> pa.Array:
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type):
        return _floats(array)
    if pa.types.is_large_string(array.type):
        return array.cast(pa.string())
    return array


def decode(payload: bytes) -> pa.Table:
    """The table of one stored payload."""
    # One thread per payload: windows decode thousands of small payloads, where the thread
    # pool's hand-offs cost more than they save.
    return pa.ipc.open_stream(payload, options=_READ_OPTIONS).read_all()


def concat(tables: Sequence[pa.Table]) -> pa.Table:
    """Tables of many batches as one; missing columns become nulls, type conflicts become text."""
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.concat_tables(_text_where_conflicting(tables), promote_options="permissive")


def _text_where_conflicting(tables: Sequence[pa.Table]) -> list[pa.Table]:
    kinds: dict[str, set[pa.DataType]] = {}
    for table in tables:
        for field in table.schema:
            if not pa.types.is_null(field.type):
                kinds.setdefault(field.name, set()).add(field.type)
    conflicting = {name for name, types in kinds.items() if len(types) > 1}
    fixed = []
    for table in tables:
        for name in conflicting & set(table.column_names):
            i = table.schema.get_field_index(name)
            if not pa.types.is_string(table.schema.field(i).type):
                table = table.set_column(i, name, table.column(i).cast(pa.string()))
        fixed.append(table)
    return fixed


def _column(values: list[Any]) -> pa.Array:
    try:
        return _normalised(pa.array(values))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _keys(dicts: Iterable[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        for key in d:
            if key not in seen:
                seen[key] = None
    return list(seen)


def _proba_dict(probabilities: dict[str, float] | list[float] | None) -> dict[str, float]:
    if probabilities is None:
        return {}
    if isinstance(probabilities, list):
        return {str(i): p for i, p in enumerate(probabilities)}
    return probabilities
