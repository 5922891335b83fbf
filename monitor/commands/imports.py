"""History import: records from a Parquet or CSV file of any size, streamed in bounded memory
through the collector's storage path, exactly once however often the import is run or cut short.

Each row gets a record id derived from what it is, never from when it was imported: with a
request id column, from the model and the request id (so overlapping exports of one history
store each request once); without, from the model, the version, the file's content (its
SHA-256: a copy of the file under another name is the same file) and the row's number. The
database's unique (node, record id) then makes every re-run store only what is missing.
Payloads are built from the file's Arrow columns directly, never through a dict per row.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine

from monitor import wire
from monitor.commands.checks import check_name, invalid
from monitor.storage import imports, models
from monitor.storage.engine import begin_write
from monitor.storage.records import IMPORT_BATCH_PREFIX, PreparedBatch

#: Rows per stored batch: a batch's rows are numbered below payload.ROW_KEY_STRIDE (65,536).
MAX_BATCH_ROWS = 65_535
DEFAULT_BATCH_ROWS = 10_000
#: Rows read from the file at a time (the import's memory is a few of these).
CHUNK_ROWS = 65_536
#: A stored batch ends at a window boundary once it holds this many rows (see _batch_bounds).
MERGE_ROWS = 1_000
#: Column names taken for a role when no flag names another column.
DEFAULT_TS = "ts"
DEFAULT_PREDICTION = "prediction"
DEFAULT_REQUEST_ID = "request_id"
DEFAULT_LABEL = "label"
LATENCY = "latency_ms"
DEFAULT_NODE = "import"
#: Prefixes of class-probability columns.
PROBA_PREFIXES = ("proba:", "probability_")

_TS_TYPE = pa.timestamp("us", tz="UTC")
# What a datetime can hold (years 1 to 9999), in microseconds since the epoch.
_MIN_US = int((datetime(1, 1, 2, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
_MIN_US *= 1_000_000
_MAX_US = int(
    (datetime(9999, 12, 30, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
)
_MAX_US *= 1_000_000

#: (done, total, rows read): done of total in rows, or for CSV in bytes.
Progress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class ImportOptions:
    """Which model and version the rows belong to, and which columns play which role."""

    model: str
    version: str
    node_column: str | None = None
    node: str | None = None
    ts_column: str | None = None
    request_id_column: str | None = None
    label_column: str | None = None
    prediction_column: str | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    #: Stored batches never straddle a multiple of this since the epoch (the analysis window),
    #: so that a window reads only its own batches even when the file is not in time order.
    span: timedelta = timedelta(minutes=15)
    compression: str = "lz4"


@dataclass(frozen=True)
class ColumnRoles:
    """The file's columns by role."""

    ts: str
    prediction: str
    node: str | None
    request_id: str | None
    label: str | None
    latency: str | None
    #: Feature name -> column.
    features: dict[str, str]
    #: Class -> column.
    probabilities: dict[str, str]

    def describe(self) -> str:
        parts = [f"ts={self.ts}", f"prediction={self.prediction}"]
        parts += [f"{role}={name}" for role, name in self._optional() if name]
        shown = ", ".join(list(self.features)[:8]) + (", ..." if len(self.features) > 8 else "")
        parts.append(f"{len(self.features)} feature(s): {shown or '-'}")
        if self.probabilities:
            parts.append(f"{len(self.probabilities)} class probabilit(ies)")
        return "; ".join(parts)

    def _optional(self) -> list[tuple[str, str | None]]:
        return [
            ("node", self.node),
            ("request id", self.request_id),
            ("label", self.label),
            ("latency", self.latency),
        ]


@dataclass
class ImportSummary:
    """What an import did."""

    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    labels: int = 0
    nodes_created: list[str] = field(default_factory=list)
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    #: The first rejected row: its number (from 0) and why.
    first_rejection: str | None = None

    def line(self) -> str:
        span = (
            f"ts {self.first_ts.isoformat()} to {self.last_ts.isoformat()}"
            if self.first_ts and self.last_ts
            else "no ts"
        )
        text = (
            f"{self.rows:,} rows read, {self.stored:,} records stored, {self.duplicates:,} "
            f"duplicates skipped, {self.labels:,} labels stored, created "
            f"{len(self.nodes_created)} node(s); {span}"
        )
        if self.rejected:
            text += f"; {self.rejected:,} rows rejected (first: {self.first_rejection})"
        return text


# --- Reading ----------------------------------------------------------------------------------


class Source:
    """A Parquet or CSV file read in chunks of Arrow record batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size
        with path.open("rb") as handle:
            self.parquet = handle.read(4) == b"PAR1"
        self.schema = self._parquet_schema() if self.parquet else self._csv_schema({})
        self.columns: list[str] = list(self.schema.names)
        #: Rows known in advance (Parquet), else None: progress then counts bytes.
        self.total_rows: int | None = None
        self._handle: IO[bytes] | None = None
        self._rows_done = 0

    def _parquet_schema(self) -> pa.Schema:
        import pyarrow.parquet as pq

        return pq.read_schema(self.path)

    def _csv_schema(self, column_types: dict[str, pa.DataType]) -> pa.Schema:
        from pyarrow import csv

        try:
            with csv.open_csv(self.path, convert_options=_csv_convert(column_types)) as reader:
                return reader.schema
        except pa.ArrowInvalid as exc:
            raise invalid("file", "not CSV or Parquet", f"cannot read {self.path}: {exc}") from None

    def batches(self, roles: ColumnRoles) -> Iterator[pa.RecordBatch]:
        """The file's rows, a chunk at a time."""
        if self.parquet:
            import pyarrow.parquet as pq

            file = pq.ParquetFile(self.path)
            self.total_rows = file.metadata.num_rows
            yield from file.iter_batches(batch_size=CHUNK_ROWS)
            return
        yield from self._csv_batches(roles)

    def _csv_batches(self, roles: ColumnRoles) -> Iterator[pa.RecordBatch]:
        from pyarrow import csv

        # Types are inferred from the first block; a whole number there may have a fraction
        # further down, so integers are read as floats (as the payload stores them anyway),
        # names and ids as text, and a column empty at first as text.
        types: dict[str, pa.DataType] = {}
        for name, kind in zip(self.schema.names, self.schema.types, strict=True):
            if pa.types.is_integer(kind):
                types[name] = pa.float64()
            elif pa.types.is_null(kind):
                types[name] = pa.string()
        for name in (roles.node, roles.request_id):
            if name:
                types[name] = pa.string()
        with self.path.open("rb") as handle:
            self._handle = handle
            reader = csv.open_csv(
                handle,
                read_options=csv.ReadOptions(block_size=8 << 20),
                convert_options=_csv_convert(types),
            )
            with reader:
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    except pa.ArrowInvalid as exc:
                        raise invalid(
                            "file",
                            "a value unlike the rest of its column",
                            f"cannot read {self.path} past row {self._rows_done:,}: {exc}",
                        ) from None
                    self._rows_done += batch.num_rows
                    yield batch

    def progress(self, rows_done: int) -> tuple[int, int]:
        """How far along the reading is: (done, total), in rows or, for CSV, bytes."""
        if self.total_rows is not None:
            return rows_done, self.total_rows
        if self._handle is not None and not self._handle.closed:
            return self._handle.tell(), self.size
        return self.size, self.size


def _csv_convert(types: dict[str, pa.DataType]) -> Any:
    from pyarrow import csv

    return csv.ConvertOptions(column_types=types, strings_can_be_null=True)


def file_digest(path: Path) -> str:
    """The SHA-256 of a file's content, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def map_columns(schema: pa.Schema, options: ImportOptions) -> ColumnRoles:
    """Which column plays which role; every other column is a feature."""
    columns = list(schema.names)
    present = set(columns)
    shown = ", ".join(columns)

    def chosen(flag: str, given: str | None, default: str | None, required: bool) -> str | None:
        name = given or (default if default in present else None)
        if given and given not in present:
            raise invalid(flag, "no such column", f"{flag} {given!r}: no such column in {shown}")
        if name is None and required:
            raise invalid(
                flag,
                "missing column",
                f"no {flag.removeprefix('--').removesuffix('-column')} column "
                f"{default!r} in the file (columns: {shown}); name it with {flag}",
            )
        return name

    ts = chosen("--ts-column", options.ts_column, DEFAULT_TS, True)
    prediction = chosen("--prediction-column", options.prediction_column, DEFAULT_PREDICTION, True)
    node = chosen("--node-column", options.node_column, None, False)
    request_id = chosen("--request-id-column", options.request_id_column, DEFAULT_REQUEST_ID, False)
    label = chosen("--label-column", options.label_column, DEFAULT_LABEL, False)
    latency = LATENCY if LATENCY in present else None
    assert ts is not None and prediction is not None
    taken = [c for c in (ts, prediction, node, request_id, label, latency) if c]
    if len(set(taken)) < len(taken):
        raise invalid("columns", "one role per column", f"a column has two roles: {taken}")
    features: dict[str, str] = {}
    probabilities: dict[str, str] = {}
    for name, kind in zip(schema.names, schema.types, strict=True):
        if name in taken:
            continue
        prefix = next((p for p in PROBA_PREFIXES if name.startswith(p)), None)
        if prefix is not None and len(name) > len(prefix):
            _check_kind(name, kind, numeric=True)
            probabilities[name[len(prefix) :]] = name
        else:
            _check_kind(name, kind, numeric=False)
            features[name] = name
    _check_kind(prediction, schema.field(prediction).type, numeric=False)
    if len(features) > wire.MAX_FEATURES:
        raise invalid(
            "columns",
            "too many features",
            f"{len(features)} features (at most {wire.MAX_FEATURES})",
        )
    return ColumnRoles(ts, prediction, node, request_id, label, latency, features, probabilities)


def _check_kind(name: str, kind: pa.DataType, *, numeric: bool) -> None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    scalar = (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
        or pa.types.is_null(kind)
    )
    if not numeric:
        scalar = scalar or (
            pa.types.is_boolean(kind)
            or pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_temporal(kind)
        )
    if not scalar:
        wanted = "numbers" if numeric else "numbers, text, booleans or times"
        raise invalid(name, wanted, f"column {name!r} holds {kind}: a record holds {wanted}")


# --- Importing --------------------------------------------------------------------------------


def import_history(
    engine: Engine,
    path: str | Path,
    options: ImportOptions,
    *,
    progress: Progress | None = None,
    announce: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import a file's rows as records of ``options.model`` / ``options.version``.

    ``announce`` hears the steps (columns found, nodes created); ``progress`` how far along the
    reading is. A row that breaks the wire's rules (no time, no prediction, a number that is
    not finite, an id too long) is rejected and counted; the others are stored."""
    path = Path(path)
    if options.node_column and options.node:
        raise invalid(
            "--node", "not with --node-column", "--node and --node-column exclude each other"
        )
    if not 1 <= options.batch_rows <= MAX_BATCH_ROWS:
        raise invalid(
            "--batch-rows",
            f"1 to {MAX_BATCH_ROWS}",
            f"--batch-rows must be 1 to {MAX_BATCH_ROWS:,}, got {options.batch_rows}",
        )
    default_node = options.node or DEFAULT_NODE
    if not options.node_column:
        check_name(default_node, "--node", "node name")
    check_name(options.version, "--version", "version")
    source = Source(path)
    roles = map_columns(source.schema, options)
    with begin_write(engine) as conn:
        model = models.get_model(conn, options.model)
        version_id = models.version_id(conn, model.id, options.version)
    say = announce or (lambda _text: None)
    say(f"{path.name}: {'Parquet' if source.parquet else 'CSV'}, columns: {roles.describe()}")
    identity = hashlib.sha256(
        f"{options.model}\0{options.version}\0{file_digest(path)}".encode()
    ).hexdigest()
    importer = _Importer(engine, options, roles, model.id, version_id, identity, say)
    if not options.node_column:
        importer.resolve_nodes([default_node])
    summary = importer.summary
    for chunk in source.batches(roles):
        importer.store(chunk, default_node)
        if progress is not None:
            progress(*source.progress(summary.rows), summary.rows)
    if progress is not None:
        _done, total = source.progress(summary.rows)
        progress(total, total, summary.rows)
    return summary


@dataclass
class _Rows:
    """One chunk's valid rows, as arrays in file order."""

    rows: np.ndarray  # row numbers in the file
    ts_us: np.ndarray
    nodes: np.ndarray  # node name per row (object)
    uids: np.ndarray  # record id per row (object)
    request_ids: np.ndarray  # request id per row (object)
    table: pa.Table  # the payload columns
    labels: pa.Array | None


class _Importer:
    def __init__(
        self,
        engine: Engine,
        options: ImportOptions,
        roles: ColumnRoles,
        model_id: int,
        version_id: int,
        identity: str,
        say: Callable[[str], None],
    ) -> None:
        self.engine, self.options, self.roles = engine, options, roles
        self.model_id, self.version_id = model_id, version_id
        self.say = say
        self.summary = ImportSummary()
        self.node_ids: dict[str, int] = {}
        self.row_prefix = f"i{identity[:24]}:"
        self.request_prefix = "r" + hashlib.sha256(options.model.encode()).hexdigest()[:12] + ":"
        self.batch_uid = f"{IMPORT_BATCH_PREFIX}{identity[:32]}"
        self.span_us = max(int(options.span.total_seconds() * 1_000_000), 1)

    # -- nodes

    def resolve_nodes(self, names: list[str]) -> None:
        missing = [name for name in names if name not in self.node_ids]
        if not missing:
            return
        with begin_write(self.engine) as conn:
            self.node_ids.update(imports.node_ids(conn, missing))
            created = []
            for name in missing:
                if name not in self.node_ids:
                    self.node_ids[name], new = imports.add_history_node(conn, name)
                    if new:
                        created.append(name)
        if created:
            self.summary.nodes_created += created
            shown = ", ".join(created[:10]) + (", ..." if len(created) > 10 else "")
            self.say(f"created {len(created)} node(s) without a usable token: {shown}")

    # -- one chunk

    def store(self, chunk: pa.RecordBatch, default_node: str) -> None:
        first = self.summary.rows
        self.summary.rows += chunk.num_rows
        rows = self._valid_rows(chunk, first, default_node)
        if rows is None:
            return
        self.resolve_nodes(list(dict.fromkeys(rows.nodes.tolist())))
        low, high = int(rows.ts_us.min()), int(rows.ts_us.max())
        for moment, later in ((low, False), (high, True)):
            when = _datetime(moment)
            if later and (self.summary.last_ts is None or when > self.summary.last_ts):
                self.summary.last_ts = when
            if not later and (self.summary.first_ts is None or when < self.summary.first_ts):
                self.summary.first_ts = when
        # By node, then time: each stored batch holds one node's rows (see _batch_bounds).
        # Codes by hashing, not np.unique: sorting the names themselves was a tenth of the time.
        encoded = pc.dictionary_encode(pa.array(rows.nodes, pa.string()))
        node_codes = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.lexsort((rows.ts_us, node_codes))
        bounds = _batch_bounds(
            node_codes[order],
            rows.ts_us[order] // self.span_us,
            self.options.batch_rows,
            MERGE_ROWS,
        )
        table = rows.table.take(pa.array(order))
        uids, request_ids = rows.uids[order], rows.request_ids[order]
        ts_seconds = rows.ts_us[order] / 1_000_000
        labels = rows.labels.take(pa.array(order)) if rows.labels is not None else None
        prepared = [
            self._prepare(
                self.node_ids[rows.nodes[order[begin]]],
                table.slice(begin, end - begin),
                uids[begin:end].tolist(),
                request_ids[begin:end].tolist(),
                ts_seconds[begin:end].tolist(),
                None if labels is None else labels.slice(begin, end - begin),
            )
            for begin, end in bounds
        ]
        # One transaction per chunk: a commit per small batch cost more than the batch itself
        # on SQLite, and an import cut short loses at most its last chunk, which a re-run
        # stores.
        with begin_write(self.engine) as conn:
            stored = [
                imports.store_batch(
                    conn,
                    node_id=node_id,
                    model_id=self.model_id,
                    model_version_id=self.version_id,
                    batch_uid=self.batch_uid,
                    batch=batch,
                    batch_labels=pairs,
                    compression=self.options.compression,
                )
                for node_id, batch, pairs in prepared
            ]
        for one in stored:
            self.summary.stored += one.result.accepted
            self.summary.duplicates += one.result.duplicate
            self.summary.labels += one.labels

    def _prepare(
        self,
        node_id: int,
        table: pa.Table,
        uids: list[str],
        request_ids: list[str],
        timestamps: list[float],
        labels: pa.Array | None,
    ) -> tuple[int, PreparedBatch, list[tuple[str, Any]]]:
        duplicates = 0
        if self.roles.request_id and len(set(uids)) < len(uids):
            # A request id twice in one batch is one record (its first row), as a record id
            # repeated in a wire batch is.
            seen: set[str] = set()
            keep = [not (uid in seen or seen.add(uid)) for uid in uids]  # type: ignore[func-returns-value]
            duplicates = len(keep) - sum(keep)
            mask = pa.array(keep)
            table = table.filter(mask)
            uids = [u for u, k in zip(uids, keep, strict=True) if k]
            request_ids = [r for r, k in zip(request_ids, keep, strict=True) if k]
            timestamps = [t for t, k in zip(timestamps, keep, strict=True) if k]
            labels = None if labels is None else labels.filter(mask)
        pairs: list[tuple[str, Any]] = []
        if labels is not None and labels.null_count < len(labels):
            pairs = [
                (rid, value)
                for rid, value in zip(request_ids, labels.to_pylist(), strict=True)
                if value is not None
            ]
        return node_id, PreparedBatch(uids, request_ids, table, timestamps, duplicates), pairs

    # -- validation and columns

    def _valid_rows(self, chunk: pa.RecordBatch, first: int, default_node: str) -> _Rows | None:
        roles = self.roles
        n = chunk.num_rows
        bad = np.zeros(n, dtype=bool)
        rejections: list[tuple[int, str]] = []

        def reject(mask: np.ndarray, why: str) -> None:
            fresh = mask & ~bad
            if fresh.any():
                rejections.append((first + int(np.flatnonzero(fresh)[0]), why))
                bad[fresh] = True

        ts_us, ts_bad = _timestamps(chunk.column(roles.ts))
        reject(ts_bad, f"{roles.ts}: not a time")
        reject((ts_us < _MIN_US) | (ts_us > _MAX_US), f"{roles.ts}: out of range")
        if roles.latency:
            latency, problem = _numbers(chunk.column(roles.latency))
            reject(problem, f"{roles.latency}: not a finite number")
            reject(_filled(pc.less(latency, 0.0), False), f"{roles.latency}: negative")
        else:
            latency = pa.nulls(n, pa.float64())
        prediction, problem = _values(chunk.column(roles.prediction))
        reject(problem, f"{roles.prediction}: not a finite number")
        reject(_mask(prediction.is_null()), f"{roles.prediction}: missing")
        features: dict[str, pa.Array] = {}
        for name, column in roles.features.items():
            values, problem = _values(chunk.column(column))
            reject(problem, f"{column}: not a finite number")
            features[name] = values
        probabilities: dict[str, pa.Array] = {}
        for label, column in roles.probabilities.items():
            values, problem = _numbers(chunk.column(column))
            reject(problem, f"{column}: not a finite number")
            outside = pc.or_(pc.less(values, 0.0), pc.greater(values, 1.0))
            reject(_filled(outside, False), f"{column}: a probability outside [0, 1]")
            probabilities[label] = values
        rows = np.arange(first, first + n, dtype=np.int64)
        if roles.node:
            node_names = _texts(chunk.column(roles.node))
            nodes = np.array(node_names.to_pylist(), dtype=object)
            reject(_mask(node_names.is_null()), f"{roles.node}: missing")
            for name in set(nodes[~bad].tolist()):
                if not _name_ok(name):
                    reject(nodes == name, f"{roles.node}: invalid node name {name!r}")
        else:
            nodes = np.full(n, default_node, dtype=object)
        if roles.request_id:
            ids = _texts(chunk.column(roles.request_id))
            reject(_mask(ids.is_null()), f"{roles.request_id}: missing")
            lengths = _filled(pc.utf8_length(ids), 0).astype(np.int64)
            reject(
                (lengths > wire.MAX_ID_CHARS) | (lengths < 1) & ~_mask(ids.is_null()),
                f"{roles.request_id}: not 1 to {wire.MAX_ID_CHARS} characters",
            )
            request_ids = np.array(ids.to_pylist(), dtype=object)
            uids = self._request_uids(request_ids, bad)
        else:
            # Zero-padded: record ids sort in file order, so their index grows at its end.
            uids = np.array([f"{self.row_prefix}{row:012d}" for row in rows.tolist()], dtype=object)
            request_ids = uids
        labels = None
        if roles.label:
            labels, problem = _values(chunk.column(roles.label))
            reject(problem, f"{roles.label}: not a finite number")
        self._count_rejections(rejections, int(bad.sum()))
        good = ~bad
        if not good.any():
            return None
        ts = pa.array(ts_us, pa.int64()).cast(_TS_TYPE)
        table = imports.payload_table(ts, latency, prediction, features, probabilities)
        if bad.any():
            keep = pa.array(good)
            table = table.filter(keep)
            labels = None if labels is None else labels.filter(keep)
        return _Rows(
            rows[good], ts_us[good], nodes[good], uids[good], request_ids[good], table, labels
        )

    def _request_uids(self, request_ids: np.ndarray, bad: np.ndarray) -> np.ndarray:
        prefix = self.request_prefix
        limit = wire.MAX_ID_CHARS - len(prefix)
        return np.array(
            [
                ""
                if rid is None or skip
                else prefix + rid
                if len(rid) <= limit
                else prefix + "#" + hashlib.sha256(rid.encode()).hexdigest()
                for rid, skip in zip(request_ids.tolist(), bad.tolist(), strict=True)
            ],
            dtype=object,
        )

    def _count_rejections(self, rejections: list[tuple[int, str]], count: int) -> None:
        if not count:
            return
        self.summary.rejected += count
        if self.summary.first_rejection is None:
            row, why = min(rejections)
            self.summary.first_rejection = f"row {row:,}: {why}"


def _batch_bounds(
    nodes: np.ndarray, windows: np.ndarray, batch_rows: int, merge_rows: int
) -> list[tuple[int, int]]:
    """``[begin, end)`` of each stored batch of rows sorted by node, then time.

    A batch holds one node's rows, at most ``batch_rows``, and ends at an analysis window's
    boundary once it holds ``merge_rows``: a window then decodes little beyond its own rows,
    while sparse history (a few rows per node and window) is not stored as thousands of tiny
    batches, each costing a payload and a statement."""
    n = len(nodes)
    runs = np.flatnonzero((np.diff(nodes) != 0) | (np.diff(windows) != 0)) + 1
    bounds: list[tuple[int, int]] = []
    begin = 0
    for start, stop in itertools.pairwise([0, *runs.tolist(), n]):
        if start > begin and (nodes[start] != nodes[begin] or start - begin >= merge_rows):
            bounds.append((begin, start))
            begin = start
        while stop - begin > batch_rows:
            bounds.append((begin, begin + batch_rows))
            begin += batch_rows
    if begin < n:
        bounds.append((begin, n))
    return bounds


# --- Columns ----------------------------------------------------------------------------------


def _mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _filled(array: pa.Array, fill: Any) -> np.ndarray:
    return np.asarray(pc.fill_null(array, fill).to_numpy(zero_copy_only=False))


def _plain(array: pa.Array) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def _numbers(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A numeric column as float64, NaN as missing; and where a value is infinite."""
    array = _plain(array)
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.float64()), np.zeros(len(array), dtype=bool)
    floats = array.cast(pa.float64())
    values = floats.to_numpy(zero_copy_only=False)
    infinite = np.isinf(values)
    nan = np.isnan(values)
    if nan.any() and floats.null_count < int(nan.sum()):
        floats = pa.array(values, pa.float64(), mask=nan)
    return floats, infinite


def _values(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A feature, prediction or label column as the payload stores values: numbers as float64
    (NaN missing), text as string, booleans as is, times as ISO text; and where a number is
    not finite."""
    array = _plain(array)
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return _numbers(array)
    no_problem = np.zeros(len(array), dtype=bool)
    if pa.types.is_large_string(kind) or pa.types.is_temporal(kind):
        return array.cast(pa.string()), no_problem
    if pa.types.is_null(kind):
        return pa.nulls(len(array), pa.string()), no_problem
    return array, no_problem


def _texts(array: pa.Array) -> pa.Array:
    array = _plain(array)
    if pa.types.is_floating(array.type):
        # A CSV read "7" as 7.0 in a text column only when the flag was not given; show 7.
        whole = pc.equal(array, pc.floor(array))
        if pc.all(pc.fill_null(whole, True)).as_py():
            array = array.cast(pa.int64())
    return array if pa.types.is_string(array.type) else array.cast(pa.string())


def _timestamps(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Microseconds since the epoch (UTC) of a time column, and where a row has no time.

    Accepted: a timestamp type (naive = UTC), a date, ISO 8601 text (with or without an
    offset; naive = UTC), or seconds since the epoch as numbers."""
    array = _plain(array)
    kind = array.type
    if pa.types.is_timestamp(kind):
        micros = _micros(array)
    elif pa.types.is_date(kind):
        micros = _micros(array.cast(pa.timestamp("s")))
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        seconds = array.cast(pa.float64()).to_numpy(zero_copy_only=False)
        finite = np.isfinite(seconds) & (np.abs(seconds) < _MAX_US / 1_000_000)
        micros = np.where(finite, np.round(np.where(finite, seconds, 0.0) * 1_000_000), 0.0)
        return micros.astype(np.int64), ~finite
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        micros = _iso_micros(array.cast(pa.string()))
    else:
        raise invalid("ts", "a time", f"the time column holds {kind}: give times or seconds")
    missing = np.isnan(micros)
    return np.where(missing, 0, micros).astype(np.int64), missing


#: Microseconds per unit of a timestamp type, as (multiply, divide).
_UNITS = {"s": (1_000_000, 1), "ms": (1_000, 1), "us": (1, 1), "ns": (1, 1_000)}


def _micros(array: pa.Array) -> np.ndarray:
    """Float microseconds of a timestamp array (NaN where null); nanoseconds are truncated."""
    multiply, divide = _UNITS[array.type.unit]
    ticks = array.view(pa.int64()) if not array.offset else array.cast(pa.int64(), safe=False)
    values = np.asarray(ticks.to_numpy(zero_copy_only=False), dtype=np.float64)
    if multiply != 1 or divide != 1:
        whole = ticks.fill_null(0).to_numpy(zero_copy_only=False)
        values = np.where(np.isnan(values), np.nan, (whole * multiply // divide).astype(np.float64))
    return values


def _iso_micros(texts: pa.Array) -> np.ndarray:
    for target in (_TS_TYPE, pa.timestamp("us")):
        try:
            return _micros(pc.cast(texts, target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    # Mixed forms (some with offsets, some without), or some not times: one at a time.
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts.to_pylist()):
        if text is None:
            continue
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
        out[i] = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return out


def _datetime(micros: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def _name_ok(name: Any) -> bool:
    return isinstance(name, str) and re.match(wire.NAME_PATTERN, name) is not None


__all__ = [
    "DEFAULT_BATCH_ROWS",
    "MAX_BATCH_ROWS",
    "ColumnRoles",
    "ImportOptions",
    "ImportSummary",
    "Source",
    "file_digest",
    "import_history",
    "map_columns",
]
