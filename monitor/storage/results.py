"""Analysis results: written in bulk from columns, read back as the typed rows of monitor.schema.

Every reader (the demo, the CLI, the report, alerts, the dashboard, the read API) goes through
here, so that every reader agrees on every verdict: a scope drifted when ``DriftScope.drifted``
says so, and its drifted features are the ``DriftFeature`` rows with ``drifted`` true.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Table, and_, delete, func, insert, select

from monitor import schema
from monitor.schema import (
    DRIFT,
    FEATURE,
    FLEET,
    FLEET_KEY,
    DriftFeature,
    DriftScope,
    EstimationScope,
    MultivariateScope,
    PerformanceScope,
    QualityFeature,
    QualityScope,
    ResultTable,
    plain_values,
)
from monitor.storage.tables import RESULT_TABLES, analysis_snapshots, nodes
from monitor.storage.types import aware, utcnow

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class KindResults:
    """One kind's results of one window, as analysis hands them over."""

    scopes: ResultTable[Any]
    features: ResultTable[Any] | None = None
    #: Scopes judged on consecutive windows pooled: where each one's span starts, by (scope
    #: kind, scope key); the others were judged on this window alone.
    span_starts: Mapping[tuple[str, str], datetime] | None = None
    #: Which reference each scope was judged against ("version <name>", or a baseline's name
    #: from ``monitor.jobs.baselines``), by (scope kind, scope key); None: not recorded.
    references: Mapping[tuple[str, str], str] | None = None


@dataclass(frozen=True, slots=True)
class Stored(Generic[R]):
    """A stored scope row: which window and version it belongs to, and the result itself.

    ``revision`` is 1 for a window's first analysis and one more for each re-analysis after
    records arrived late (a node back from days offline), ``n_late`` how many rows of the
    window arrived after the previous revision. ``span_start`` is set when the scope had too
    few rows in this window alone and was judged on consecutive windows pooled: the start of
    the earliest of them. ``reference``: which reference the scope was judged against."""

    id: int
    model_id: int
    window_start: datetime
    window_end: datetime
    node_id: int | None
    model_version_id: int | None
    n_reference: int | None
    computed_at: datetime
    result: R
    revision: int = 1
    n_late: int = 0
    span_start: datetime | None = None
    reference: str | None = None

    @property
    def scope_kind(self) -> str:
        return self.result.scope_kind  # type: ignore[attr-defined]

    @property
    def scope_key(self) -> str:
        return self.result.scope_key  # type: ignore[attr-defined]


@dataclass(frozen=True)
class WindowResults:
    """Everything stored for one window of one model, by kind."""

    model_id: int
    window_start: datetime
    window_end: datetime
    drift: list[Stored[DriftScope]] = field(default_factory=list)
    drift_features: dict[int, list[DriftFeature]] = field(default_factory=dict)
    quality: list[Stored[QualityScope]] = field(default_factory=list)
    quality_features: dict[int, list[QualityFeature]] = field(default_factory=dict)
    performance: list[Stored[PerformanceScope]] = field(default_factory=list)
    estimation: list[Stored[EstimationScope]] = field(default_factory=list)
    multivariate: list[Stored[MultivariateScope]] = field(default_factory=list)

    def drift_of(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> Stored[DriftScope]:
        """One scope's drift (the fleet's by default)."""
        return _one(self.drift, scope_kind, scope_key)

    def quality_of(
        self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> Stored[QualityScope]:
        return _one(self.quality, scope_kind, scope_key)

    def performance_of(
        self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> Stored[PerformanceScope]:
        return _one(self.performance, scope_kind, scope_key)

    def estimation_of(
        self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> Stored[EstimationScope]:
        return _one(self.estimation, scope_kind, scope_key)

    def multivariate_of(
        self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> Stored[MultivariateScope]:
        return _one(self.multivariate, scope_kind, scope_key)

    def drifted_features(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> list[str]:
        """The features (not prediction or probabilities) drifted at one scope, by name."""
        try:
            scope = self.drift_of(scope_kind, scope_key)
        except KeyError:
            return []
        return sorted(
            f.feature
            for f in self.drift_features.get(scope.id, [])
            if f.drifted and f.role == FEATURE
        )

    def drifting_scopes(self, scope_kind: str) -> list[Stored[DriftScope]]:
        """The scopes of one kind whose verdict is drifted."""
        return [s for s in self.drift if s.scope_kind == scope_kind and s.result.drifted]

    def quality_issues(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> list[str]:
        """The features with a data-quality issue at one scope, by name."""
        try:
            scope = self.quality_of(scope_kind, scope_key)
        except KeyError:
            return []
        return sorted(f.feature for f in self.quality_features.get(scope.id, []) if f.issue)


def _one(rows: Sequence[Stored[R]], scope_kind: str, scope_key: str) -> Stored[R]:
    for row in rows:
        if row.scope_kind == scope_kind and row.scope_key == scope_key:
            return row
    raise KeyError((scope_kind, scope_key))


# --- Writing ------------------------------------------------------------------------------------


def save_window(
    conn: Connection,
    model_id: int,
    window_start: datetime,
    window_end: datetime,
    results: Mapping[str, KindResults],
    *,
    model_version_id: int | None,
    n_reference: int | None,
    revision: int | None = None,
    n_late: int = 0,
    computed_at: datetime | None = None,
) -> dict[str, dict[tuple[str, str], int]]:
    """Store a window's results of these kinds, replacing what was stored for them before (a
    recomputation after late labels replaces the performance rows). Node scopes are linked to
    their node by name. Returns the scope row ids per kind, by (scope kind, scope key).

    ``revision`` and ``n_late`` go on every scope row (a re-analysis after late records stores
    the next revision); without a revision, a kind's rows keep the revision and late rows they
    had (1 and 0 for a first analysis). ``computed_at`` (default: now) is the moment the results
    describe: the worker gives the time it started reading the window, so that a record
    received after it is known to be missing from them."""
    now = computed_at or utcnow()
    node_ids = _node_ids(conn)
    ids: dict[str, dict[tuple[str, str], int]] = {}
    for kind, found in results.items():
        scope_table, feature_table = RESULT_TABLES[kind]
        kept_revision, kept_late = (
            (revision, n_late)
            if revision is not None
            else _revision(conn, scope_table, model_id, window_start)
        )
        conn.execute(
            delete(scope_table).where(
                scope_table.c.model_id == model_id, scope_table.c.window_start == window_start
            )
        )
        scopes = found.scopes.columns
        keys = list(
            zip(plain_values(scopes["scope_kind"]), plain_values(scopes["scope_key"]), strict=True)
        )
        constant = {
            "model_id": model_id,
            "window_start": window_start,
            "window_end": window_end,
            "model_version_id": model_version_id,
            "n_reference": n_reference,
            "computed_at": now,
        }
        # Written only when they differ from the columns' defaults (revision 1, no late rows,
        # no span, no reference): each column is one more parameter per row in SQLite's
        # multi-row VALUES, hence more statements for a large window.
        if (kept_revision, kept_late) != (1, 0):
            constant |= {"revision": kept_revision, "n_late": kept_late}
        columns = {
            "node_id": [node_ids.get(key) if kind_ == "node" else None for kind_, key in keys],
            **{name: plain_values(values) for name, values in scopes.items()},
        }
        spans = found.span_starts or {}
        if spans:
            columns["span_start"] = _span_column(
                conn, scope_table, [spans.get(key) for key in keys]
            )
        if found.references:
            columns["reference"] = [found.references.get(key) for key in keys]
        returned = _bulk_insert(conn, scope_table, constant, columns, returning=True)
        by_key = {(kind_, key): id_ for id_, kind_, key in returned}
        ids[kind] = by_key
        if feature_table is not None and found.features is not None and len(found.features):
            features = found.features.columns
            owner = [
                by_key[k]
                for k in zip(
                    plain_values(features["scope_kind"]),
                    plain_values(features["scope_key"]),
                    strict=True,
                )
            ]
            feature_columns = {
                "scope_id": owner,
                **{
                    name: plain_values(values)
                    for name, values in features.items()
                    if name not in ("scope_kind", "scope_key")
                },
            }
            _bulk_insert(conn, feature_table, {}, feature_columns, returning=False)
    return ids


def _revision(
    conn: Connection, table: Table, model_id: int, window_start: datetime
) -> tuple[int, int]:
    """The revision and late rows of a window's stored rows of one kind ((1, 0): none)."""
    row = conn.execute(
        select(table.c.revision, table.c.n_late)
        .where(table.c.model_id == model_id, table.c.window_start == window_start)
        .order_by(table.c.revision.desc())
        .limit(1)
    ).first()
    return (1, 0) if row is None else (int(row.revision), int(row.n_late))


def _span_column(conn: Connection, table: Table, spans: list[datetime | None]) -> list[Any]:
    """Span starts as the bulk insert takes them: aware datetimes for PostgreSQL's array, the
    column type's own text on SQLite (bound one by one: a few per window)."""
    if conn.dialect.name == "postgresql":
        return spans
    return [None if span is None else _bind(table, "span_start", span, conn) for span in spans]


def _node_ids(conn: Connection) -> dict[str, int]:
    return {name: id_ for id_, name in conn.execute(select(nodes.c.id, nodes.c.name))}


# PostgreSQL array types of the result columns' Python types.
_PG_ARRAYS = {
    str: "varchar[]",
    int: "bigint[]",
    float: "float8[]",
    bool: "boolean[]",
    dict: "text[]",
}
# Rows per multi-row INSERT on SQLite: the parameters stay under its limit of 32,766.
_SQLITE_PARAMETERS = 30_000


def _bulk_insert(
    conn: Connection,
    table: Table,
    constant: Mapping[str, Any],
    columns: Mapping[str, list[Any]],
    *,
    returning: bool,
) -> list[tuple[int, str, str]]:
    """Insert rows given as columns in as few statements as the database allows: PostgreSQL
    takes each column as one array (``unnest``), SQLite multi-row VALUES in large chunks. No
    per-row parameter processing by SQLAlchemy, which cost a second per large window."""
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    # Values the same for every row go through the column types' own bind processing.
    fixed = {name: _bind(table, name, value, conn) for name, value in constant.items()}
    json_columns = {c.name for c in table.columns if c.type.__class__.__name__ == "JSON"}
    data = {
        name: [None if v is None else json.dumps(v) for v in values]
        if name in json_columns
        else values
        for name, values in columns.items()
    }
    names = [*fixed, *data]
    target = f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
    tail = " RETURNING id, scope_kind, scope_key" if returning else ""
    n_rows = len(next(iter(data.values()), []))
    if n_rows == 0:
        return []
    if dialect.name == "postgresql":
        types = [_pg_array(table, name) for name in data]
        selected = ["%s"] * len(fixed) + [
            f"u.{quote(n)}::json" if n in json_columns else f"u.{quote(n)}" for n in data
        ]
        sql = (
            target
            + f"SELECT {', '.join(selected)} FROM unnest("
            + ", ".join(f"%s::{t}" for t in types)
            + f") AS u({', '.join(quote(n) for n in data)})"
            + tail
        )
        literals = [_pg_literal(values, t) for values, t in zip(data.values(), types, strict=True)]
        result = conn.exec_driver_sql(sql, (*fixed.values(), *literals))
        return [(row[0], row[1], row[2]) for row in result] if returning else []
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    row_marks = "(" + ", ".join([mark] * len(names)) + ")"
    per_statement = max(1, _SQLITE_PARAMETERS // len(names))
    out: list[tuple[int, str, str]] = []
    fixed_values = tuple(fixed.values())
    column_values = list(data.values())
    for start in range(0, n_rows, per_statement):
        stop = min(n_rows, start + per_statement)
        params: list[Any] = []
        for row in zip(*(c[start:stop] for c in column_values), strict=True):
            params += fixed_values
            params += row
        sql = target + "VALUES " + ", ".join([row_marks] * (stop - start)) + tail
        result = conn.exec_driver_sql(sql, tuple(params))
        if returning:
            out.extend((row[0], row[1], row[2]) for row in result)
    return out


def _pg_literal(values: list[Any], array_type: str) -> str:
    """A column as PostgreSQL's text form of an array (``{1.5,NULL,2}``), written here in one
    pass: psycopg adapts a list element by element in Python (a regex per string to decide its
    quoting), which was half of a large window's store time on PostgreSQL."""
    items: Iterable[str]
    if array_type == "float8[]":
        items = map(_pg_float, values)
    elif array_type == "bigint[]":
        items = ("NULL" if v is None else str(int(v)) for v in values)
    elif array_type == "timestamptz[]":
        items = ("NULL" if v is None else '"' + v.isoformat() + '"' for v in values)
    elif array_type == "boolean[]":
        items = ("NULL" if v is None else "t" if v else "f" for v in values)
    else:  # text: every element quoted, so that no value can read as NULL or a delimiter
        items = (
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
    return "{" + ",".join(items) + "}"


def _pg_float(value: float | None) -> str:
    if value is None:
        return "NULL"
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    # repr is the shortest text that reads back as the same double.
    return repr(float(value))


def _bind(table: Table, name: str, value: Any, conn: Connection) -> Any:
    """``value`` as SQLAlchemy would bind it to the column (e.g. SQLite's datetime text)."""
    column_type = table.c[name].type
    processor = column_type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor is not None else value


def _pg_array(table: Table, name: str) -> str:
    if name in ("scope_id", "node_id"):
        return "bigint[]"
    if name == "span_start":
        return "timestamptz[]"
    if name == "reference":
        return "varchar[]"
    declared = {f.name: f.type for f in _fields_of_table(table)}
    return _PG_ARRAYS[declared[name]]


def _fields_of_table(table: Table) -> tuple[schema.Field, ...]:
    for kind, (scopes, features) in RESULT_TABLES.items():
        if table is scopes:
            return schema.fields_of(schema.SCOPE_ROWS[kind])
        if table is features:
            return schema.fields_of(schema.FEATURE_ROWS[kind])
    raise KeyError(table.name)


def save_snapshot(conn: Connection, scope_id: int, snapshot: bytes) -> None:
    """Keep the Evidently snapshot of a (fleet) drift scope row."""
    conn.execute(delete(analysis_snapshots).where(analysis_snapshots.c.scope_id == scope_id))
    conn.execute(
        insert(analysis_snapshots).values(scope_id=scope_id, snapshot=snapshot, created_at=utcnow())
    )


def snapshot(conn: Connection, scope_id: int) -> bytes | None:
    """The Evidently snapshot kept for a drift scope row, or None."""
    blob = conn.execute(
        select(analysis_snapshots.c.snapshot).where(analysis_snapshots.c.scope_id == scope_id)
    ).scalar()
    return None if blob is None else bytes(blob)


# --- Reading ------------------------------------------------------------------------------------


def scopes(
    conn: Connection,
    model_id: int,
    kind: str,
    *,
    scope_kind: str | None = None,
    scope_key: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[Stored[Any]]:
    """Scope rows of a model and kind, oldest window first; optionally one scope kind or scope,
    and windows starting in ``[start, end)``."""
    table, _ = RESULT_TABLES[kind]
    query = select(table).where(table.c.model_id == model_id)
    if scope_kind is not None:
        query = query.where(table.c.scope_kind == scope_kind)
    if scope_key is not None:
        query = query.where(table.c.scope_key == scope_key)
    if start is not None:
        query = query.where(table.c.window_start >= start)
    if end is not None:
        query = query.where(table.c.window_start < end)
    query = query.order_by(table.c.window_start, table.c.id)
    row_type = schema.SCOPE_ROWS[kind]
    return [_stored(row, row_type) for row in conn.execute(query).mappings()]


def drift(conn: Connection, model_id: int, **where: Any) -> list[Stored[DriftScope]]:
    """Drift scope rows (filters as ``scopes``)."""
    return scopes(conn, model_id, DRIFT, **where)


def quality(conn: Connection, model_id: int, **where: Any) -> list[Stored[QualityScope]]:
    """Data-quality scope rows (filters as ``scopes``)."""
    return scopes(conn, model_id, schema.QUALITY, **where)


def performance(conn: Connection, model_id: int, **where: Any) -> list[Stored[PerformanceScope]]:
    """Performance scope rows (filters as ``scopes``)."""
    return scopes(conn, model_id, schema.PERFORMANCE, **where)


def estimation(conn: Connection, model_id: int, **where: Any) -> list[Stored[EstimationScope]]:
    """Estimated-performance scope rows (filters as ``scopes``)."""
    return scopes(conn, model_id, schema.ESTIMATION, **where)


def multivariate(conn: Connection, model_id: int, **where: Any) -> list[Stored[MultivariateScope]]:
    """Multivariate-drift scope rows (filters as ``scopes``)."""
    return scopes(conn, model_id, schema.MULTIVARIATE, **where)


def latest_checked_estimates(
    conn: Connection, model_id: int, *, since: datetime, before: datetime, min_labelled: int
) -> dict[tuple[str, str], Stored[EstimationScope]]:
    """Per scope, the estimate of its latest window (starting in ``[since, before)``) that had
    at least ``min_labelled`` labelled records: the latest word labels had on whether the
    scope's estimate held. One row per scope, however many windows lie between."""
    table, _ = RESULT_TABLES[schema.ESTIMATION]
    latest = (
        select(
            table.c.scope_kind,
            table.c.scope_key,
            func.max(table.c.window_start).label("window_start"),
        )
        .where(
            table.c.model_id == model_id,
            table.c.window_start >= since,
            table.c.window_start < before,
            table.c.n_labelled >= min_labelled,
        )
        .group_by(table.c.scope_kind, table.c.scope_key)
        .subquery()
    )
    query = select(table).join(
        latest,
        and_(
            table.c.model_id == model_id,
            table.c.scope_kind == latest.c.scope_kind,
            table.c.scope_key == latest.c.scope_key,
            table.c.window_start == latest.c.window_start,
        ),
    )
    found = (_stored(row, EstimationScope) for row in conn.execute(query).mappings())
    return {(row.scope_kind, row.scope_key): row for row in found}


def features(conn: Connection, kind: str, scope_ids: Sequence[int]) -> dict[int, list[Any]]:
    """The feature rows of these scope rows, by scope row id, features in name order."""
    scope_table, table = RESULT_TABLES[kind]
    if table is None:
        raise ValueError(f"{kind} results have no feature rows")
    row_type = schema.FEATURE_ROWS[kind]
    names = [f.name for f in schema.fields_of(row_type)]
    found: dict[int, list[Any]] = {scope_id: [] for scope_id in scope_ids}
    ids = list(scope_ids)
    for start in range(0, len(ids), 5_000):
        query = (
            select(scope_table.c.scope_kind, scope_table.c.scope_key, table)
            .join(scope_table, scope_table.c.id == table.c.scope_id)
            .where(table.c.scope_id.in_(ids[start : start + 5_000]))
            .order_by(table.c.scope_id, table.c.feature)
        )
        for row in conn.execute(query).mappings():
            found[row["scope_id"]].append(row_type(*(row[n] for n in names)))
    return found


def window(conn: Connection, model_id: int, window_start: datetime) -> WindowResults | None:
    """Every result stored for the model's window starting at ``window_start``, or None."""
    where = {"start": window_start, "end": window_start + _EPSILON}
    drift_rows = drift(conn, model_id, **where)
    quality_rows = quality(conn, model_id, **where)
    performance_rows = performance(conn, model_id, **where)
    estimation_rows = estimation(conn, model_id, **where)
    multivariate_rows = multivariate(conn, model_id, **where)
    everything: list[Stored[Any]] = [
        *drift_rows,
        *quality_rows,
        *performance_rows,
        *estimation_rows,
        *multivariate_rows,
    ]
    if not everything:
        return None
    first = everything[0]
    return WindowResults(
        model_id=model_id,
        window_start=first.window_start,
        window_end=first.window_end,
        drift=drift_rows,
        drift_features=features(conn, DRIFT, [r.id for r in drift_rows]),
        quality=quality_rows,
        quality_features=features(conn, schema.QUALITY, [r.id for r in quality_rows]),
        performance=performance_rows,
        estimation=estimation_rows,
        multivariate=multivariate_rows,
    )


def analysed_windows(conn: Connection, model_id: int) -> list[tuple[datetime, datetime]]:
    """``(start, end)`` of every window of the model with drift results, oldest first."""
    table, _ = RESULT_TABLES[DRIFT]
    query = (
        select(table.c.window_start, table.c.window_end)
        .where(table.c.model_id == model_id, table.c.scope_kind == FLEET)
        .order_by(table.c.window_start)
    )
    return [(row.window_start, row.window_end) for row in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class Analysed:
    """When a window was last analysed, on how many rows, and in which revision."""

    window_start: datetime
    window_end: datetime
    revision: int
    n_rows: int
    computed_at: datetime


def analysed_since(conn: Connection, model_id: int, ending_after: datetime) -> list[Analysed]:
    """The model's analysed windows that end after ``ending_after``, oldest first (from their
    fleet drift rows: every analysis stores one)."""
    table, _ = RESULT_TABLES[DRIFT]
    query = (
        select(
            table.c.window_start,
            table.c.window_end,
            table.c.revision,
            table.c.n_rows,
            table.c.computed_at,
        )
        .where(
            table.c.model_id == model_id,
            table.c.scope_kind == FLEET,
            table.c.window_end > ending_after,
        )
        .order_by(table.c.window_start)
    )
    return [
        Analysed(
            row.window_start, row.window_end, int(row.revision), int(row.n_rows), row.computed_at
        )
        for row in conn.execute(query)
    ]


def latest_window_start(conn: Connection, model_id: int) -> datetime | None:
    """When the model's latest analysed window starts, or None."""
    table, _ = RESULT_TABLES[DRIFT]
    return aware(
        conn,
        conn.execute(
            select(func.max(table.c.window_start)).where(table.c.model_id == model_id)
        ).scalar(),
    )


_EPSILON = timedelta(microseconds=1)


def _stored(row: Any, row_type: type) -> Stored[Any]:
    names = [f.name for f in schema.fields_of(row_type)]
    return Stored(
        id=row["id"],
        model_id=row["model_id"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        node_id=row["node_id"],
        model_version_id=row["model_version_id"],
        n_reference=row["n_reference"],
        computed_at=row["computed_at"],
        result=row_type(*(row[n] for n in names)),
        revision=row["revision"],
        n_late=row["n_late"],
        span_start=row["span_start"],
        reference=row["reference"],
    )
