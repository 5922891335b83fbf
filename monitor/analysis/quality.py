"""Data quality of a window per scope: missing values, out-of-range values, new categories,
constant columns, and schema drift (missing, unexpected or retyped columns)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.analysis.columns import NUMERICAL, analysed_columns, numeric_values
from monitor.analysis.engine import DENSE_CELLS
from monitor.analysis.policy import QualityThresholds
from monitor.analysis.profile import ColumnProfile, ReferenceProfile
from monitor.analysis.scopes import ScopeKind, ScopeSet
from monitor.analysis.tables import FeatureRows, ScopedResult, nullable
from monitor.schema import (
    FLEET,
    FLEET_KEY,
    MISSING_COLUMN,
    OK,
    TYPE_MISMATCH,
    UNEXPECTED_COLUMN,
    QualityFeature,
    QualityScope,
    ResultTable,
)

DEFAULT_MAX_NEW_CATEGORIES = 20


@dataclass(frozen=True, slots=True)
class NewCategory:
    """A category the reference never had, seen at one scope."""

    scope_kind: str
    scope_key: str
    feature: str
    category: str
    count: int


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    """A column missing from the window, unexpected in it, or of another type."""

    feature: str
    issue: str
    expected: str | None
    actual: str | None


@dataclass(frozen=True, eq=False)
class QualityResult(ScopedResult[QualityScope, QualityFeature]):
    """Quality per scope and per (scope, column), the new categories seen, schema issues.

    A schema issue also shows in the fleet's row of its column: ``missing_column`` and
    ``type_mismatch`` as its status, an unexpected column as a fleet row of its own."""

    new_categories: tuple[NewCategory, ...]
    schema: tuple[SchemaIssue, ...]
    thresholds: QualityThresholds

    def row(
        self, feature: str, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> QualityFeature:
        """One column at one scope (the fleet by default)."""
        return self.feature_row(feature, scope_kind, scope_key)


def analyse_quality(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    scopes: Mapping[str, Any] | ScopeSet | None = None,
    *,
    max_new_categories: int = DEFAULT_MAX_NEW_CATEGORIES,
    thresholds: QualityThresholds | None = None,
) -> QualityResult:
    """Quality of every profiled column at the fleet and every scope (``scopes`` as for
    ``analyse_drift``), judged by ``thresholds``. ``max_new_categories`` caps the new
    categories listed per scope and column, most frequent first (the counts in the rows cover
    all of them)."""
    thresholds = thresholds or QualityThresholds()
    if scopes is None:
        scopes = {"node": window["node_id"].to_numpy()} if "node_id" in window else {}
    scope_set = ScopeSet.build(len(window), scopes)
    kinds, keys = scope_set.labels()
    kind_array = np.array(kinds, dtype=object)
    key_array = np.array(keys, dtype=object)
    total = scope_set.total
    n_rows = np.concatenate([kind.count() for kind in scope_set.kinds]).astype(np.int64)
    rows = FeatureRows(QualityFeature, kind_array, key_array)
    new_categories: list[NewCategory] = []
    issues = _schema(profile, window)
    retyped = {i.feature for i in issues if i.issue == TYPE_MISMATCH}
    nothing = np.full(total, np.nan)
    none = np.full(total, None, dtype=object)
    for column in profile.columns:
        listed = np.full(total, None, dtype=object)
        if column.column not in window:
            status = np.full(total, MISSING_COLUMN, dtype=object)
            zeros = np.zeros(total, np.int64)
            missing = invalid = zeros
            out = new_rows = new_kinds = None
            distinct = present = zeros
        else:
            series = window[column.column]
            status = np.full(total, OK, dtype=object)
            if column.name in retyped:
                status[0] = TYPE_MISMATCH  # the fleet's row
            if column.kind == NUMERICAL:
                figures = _numeric(column, series, scope_set)
            else:
                figures, found = _categorical(column, series, scope_set, max_new_categories)
                for s, category, count in found:
                    new_categories.append(
                        NewCategory(kinds[s], keys[s], column.name, category, count)
                    )
                    if listed[s] is None:
                        listed[s] = {}
                    listed[s][category] = count
            missing, invalid, out, new_rows, new_kinds, distinct, present = figures
        with np.errstate(invalid="ignore", divide="ignore"):
            missing_share = np.where(n_rows > 0, missing / np.maximum(n_rows, 1), np.nan)
            out_share = (
                nothing
                if out is None
                else np.where(present > 0, out / np.maximum(present, 1), np.nan)
            )
        missing_column = status == MISSING_COLUMN
        issue = thresholds.issues(
            n_rows,
            missing_share,
            out_share,
            np.zeros(total) if new_rows is None else new_rows.astype(np.float64),
            np.asarray(invalid),
        )
        rows.add(
            column.name,
            column.role,
            column.kind,
            n_rows=n_rows,
            n_missing=np.asarray(missing, np.int64),
            missing_share=np.where(missing_column, np.nan, missing_share),
            n_invalid=np.asarray(invalid, np.int64),
            n_out_of_range=none if out is None else np.asarray(out, np.int64),
            out_of_range_share=out_share,
            n_new_category_rows=none if new_rows is None else np.asarray(new_rows, np.int64),
            n_new_categories=none if new_kinds is None else np.asarray(new_kinds, np.int64),
            new_categories=listed,
            constant=nullable(present > 0, distinct <= 1),
            issue=nullable(~missing_column, issue),
            status=status,
        )
    for item in issues:
        if item.issue != UNEXPECTED_COLUMN:
            continue
        # An unexpected column: one fleet row saying so, no figures.
        rows.add_row(
            scope_kind=FLEET,
            scope_key=FLEET_KEY,
            feature=item.feature,
            role="feature",
            column_kind=item.actual,
            n_rows=int(n_rows[0]) if total else 0,
            n_missing=0,
            missing_share=np.nan,
            n_invalid=0,
            n_out_of_range=None,
            out_of_range_share=np.nan,
            n_new_category_rows=None,
            n_new_categories=None,
            new_categories=None,
            constant=None,
            issue=None,
            status=UNEXPECTED_COLUMN,
        )
    features = rows.table()
    return QualityResult(
        _scope_table(features, len(profile.columns), kind_array, key_array, n_rows),
        features,
        tuple(new_categories),
        tuple(issues),
        thresholds,
    )


def _scope_table(
    features: ResultTable[QualityFeature],
    width: int,
    kinds: np.ndarray,
    keys: np.ndarray,
    n_rows: np.ndarray,
) -> ResultTable[QualityScope]:
    """Per scope: features judged, features with an issue, the worst shares. Feature rows come
    column by column, each with every scope in order, so a scope's rows are ``i + k * total``."""
    total = len(kinds)
    columns = features.columns
    judged_rows = width * total

    def grid(name: str, dtype: Any = np.float64) -> np.ndarray:
        values = np.asarray(columns[name])[:judged_rows]
        if dtype is bool:
            values = np.array([bool(v) for v in values], dtype=bool)
        return values.astype(dtype).reshape(width, total)

    if width and total:
        issue = grid("issue", bool)
        status = np.asarray(columns["status"])[:judged_rows]
        judged = status.reshape(width, total) != MISSING_COLUMN
        with np.errstate(invalid="ignore"):
            max_missing = np.nanmax(np.where(judged, grid("missing_share"), -np.inf), axis=0)
            max_out = np.nanmax(np.where(judged, grid("out_of_range_share"), -np.inf), axis=0)
        n_features = judged.sum(axis=0)
        n_issues = issue.sum(axis=0)
    else:
        n_features = n_issues = np.zeros(total, np.int64)
        max_missing = max_out = np.full(total, -np.inf)
    return ResultTable(
        QualityScope,
        {
            "scope_kind": kinds,
            "scope_key": keys,
            "status": np.full(total, OK, dtype=object),
            "n_rows": n_rows,
            "n_features": n_features.astype(np.int64),
            "n_issues": n_issues.astype(np.int64),
            "has_issues": n_issues > 0,
            "max_missing_share": np.where(np.isfinite(max_missing), max_missing, np.nan),
            "max_out_of_range_share": np.where(np.isfinite(max_out), max_out, np.nan),
        },
    )


_Figures = tuple[
    np.ndarray,
    np.ndarray,
    np.ndarray | None,
    np.ndarray | None,
    np.ndarray | None,
    np.ndarray,
    np.ndarray,
]


def _numeric(column: ColumnProfile, series: pd.Series, scopes: ScopeSet) -> _Figures:
    numeric = column.numeric
    assert numeric is not None
    values, _ = numeric_values(series)
    missing_rows = series.isna().to_numpy()
    invalid_rows = np.isnan(values) & ~missing_rows
    present_rows = ~missing_rows & ~invalid_rows
    if numeric.n:
        low, high = numeric.sorted[0], numeric.sorted[-1]
        with np.errstate(invalid="ignore"):
            out_rows = present_rows & ~((values >= low) & (values <= high))
    else:
        out_rows = present_rows
    # Each row is in one of four states; one count per (cell, state) gives every figure.
    state = np.where(missing_rows, 0, np.where(invalid_rows, 1, np.where(out_rows, 3, 2)))
    n_cells = scopes.n_cells
    per_cell = np.bincount(scopes.cells * 4 + state, minlength=n_cells * 4).reshape(n_cells, 4)
    counts = scopes.per_scope(per_cell)
    missing, invalid = counts[:, 0], counts[:, 1]
    out, present = counts[:, 3], counts[:, 2] + counts[:, 3]
    # Constant: every present value of a scope equals one of them. Per cell: one present
    # value (any, here the last written) and whether another differs from it; a scope of
    # several cells is constant when none differs inside and their values agree.
    cells = scopes.cells[present_rows]
    present_values = values[present_rows]
    one = np.zeros(n_cells)
    one[cells] = present_values
    differing = np.bincount(cells, present_values != one[cells], minlength=n_cells) > 0
    has = per_cell[:, 2] + per_cell[:, 3] > 0
    distinct = []
    for cell_map in scopes.cell_maps:
        low_one = cell_map.reduce(np.minimum, np.where(has, one, np.inf), np.inf)
        high_one = cell_map.reduce(np.maximum, np.where(has, one, -np.inf), -np.inf)
        differs = cell_map.sum(differing.astype(np.int64)) > 0
        distinct.append(np.where(differs | (low_one < high_one), 2, 0))
    distinct_all = np.concatenate(distinct)
    distinct_all = np.where(distinct_all > 0, 2, np.minimum(present, 1))
    return missing, invalid, out, None, None, distinct_all, present


def _categorical(
    column: ColumnProfile, series: pd.Series, scopes: ScopeSet, limit: int
) -> tuple[_Figures, list[tuple[int, str, int]]]:
    vocabulary = column.vocabulary
    assert vocabulary is not None
    codes, new = vocabulary.encode(series)
    known = len(vocabulary.values)
    k = known + len(new)
    present_rows = codes >= 0
    flags = [rows.astype(np.float64) for rows in (~present_rows, present_rows, codes >= known)]
    # With few enough categories: one count per (cell, category), column 0 for missing.
    dense = scopes.n_cells * (k + 1) <= DENSE_CELLS
    per_cell = (
        np.bincount(scopes.cells * (k + 1) + codes + 1, minlength=scopes.n_cells * (k + 1)).reshape(
            scopes.n_cells, k + 1
        )
        if dense
        else None
    )
    parts = []
    found: list[tuple[int, str, int]] = []
    for kind, cell_map, offset in zip(
        scopes.kinds, scopes.cell_maps, scopes.offsets[:-1], strict=True
    ):
        if per_cell is not None:
            matrix = cell_map.sum(per_cell)
            missing, present = matrix[:, 0], matrix[:, 1:].sum(axis=1)
            new_count = matrix[:, known + 1 :].sum(axis=1)
            scope_of, category = np.nonzero(matrix[:, 1:])
            counts = matrix[:, 1:][scope_of, category]
        else:
            missing, present, new_count = (kind.count(rows) for rows in flags)
            scope_of, category, counts = _cells(
                kind.bins[present_rows], codes[present_rows], kind, k
            )
        distinct = np.bincount(scope_of, minlength=kind.size)
        is_new = category >= known
        new_kinds = np.bincount(scope_of[is_new], minlength=kind.size)
        # The most frequent new categories of each scope, up to the limit.
        order = np.lexsort((-counts[is_new], scope_of[is_new]))
        scope_new = scope_of[is_new][order]
        category_new = category[is_new][order]
        count_new = counts[is_new][order]
        listed = (np.arange(scope_new.size) - np.searchsorted(scope_new, scope_new)) < limit
        for s, c, n in zip(
            scope_new[listed].tolist(),
            category_new[listed].tolist(),
            count_new[listed].tolist(),
            strict=True,
        ):
            found.append((offset + s, str(new[c - known]), n))
        parts.append((missing, np.zeros(kind.size), new_count, new_kinds, distinct, present))
    missing, invalid, new_count, new_kinds, distinct, present = (
        np.concatenate(c) for c in zip(*parts, strict=True)
    )
    return (missing, invalid, None, new_count, new_kinds, distinct, present), found


def _cells(
    bins: np.ndarray, codes: np.ndarray, kind: ScopeKind, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The occupied (scope, category) cells, by scope then category, and their counts."""
    if (kind.size + 1) * k <= DENSE_CELLS:
        counts = np.bincount(bins * k + codes, minlength=(kind.size + 1) * k)[: kind.size * k]
        cells = np.flatnonzero(counts)
        counts = counts[cells]
    else:
        inside = bins < kind.size
        cells, counts = np.unique(bins[inside] * k + codes[inside], return_counts=True)
    scope_of, category = np.divmod(cells, k)
    return scope_of, category, counts


def _schema(profile: ReferenceProfile, window: pd.DataFrame) -> list[SchemaIssue]:
    issues = []
    expected = {c.column: c for c in profile.columns}
    skipped = {name for name, _ in profile.skipped}
    for column in profile.columns:
        if column.column not in window:
            issues.append(SchemaIssue(column.name, MISSING_COLUMN, column.kind, None))
            continue
        dtype = window[column.column].dtype
        numeric_dtype = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(
            dtype
        )
        if (column.kind == NUMERICAL) != numeric_dtype and not _numbered_categories(column):
            issues.append(SchemaIssue(column.name, TYPE_MISMATCH, column.kind, str(dtype)))
    for ref in analysed_columns(window):
        if ref.column not in expected and ref.name not in skipped:
            issues.append(
                SchemaIssue(ref.name, UNEXPECTED_COLUMN, None, str(window[ref.column].dtype))
            )
    return issues


def _numbered_categories(column: ColumnProfile) -> bool:
    # Categories that are numbers (an integer code Evidently infers as categorical) arrive as
    # numbers: not a type change.
    if column.vocabulary is None:
        return False
    values = column.vocabulary.values
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
