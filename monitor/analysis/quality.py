"""Data quality of a window per scope: missing values, out-of-range values, new categories,
constant columns, and schema drift (missing, unexpected or retyped columns)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from monitor.analysis.columns import NUMERICAL, analysed_columns, numeric_values
from monitor.analysis.engine import DENSE_CELLS
from monitor.analysis.frames import dataclass_frame
from monitor.analysis.profile import ColumnProfile, ReferenceProfile
from monitor.analysis.scopes import FLEET, FLEET_KEY, ScopeKind, ScopeSet

OK = "ok"
MISSING_COLUMN = "missing_column"
UNEXPECTED_COLUMN = "unexpected_column"
TYPE_MISMATCH = "type_mismatch"
DEFAULT_MAX_NEW_CATEGORIES = 20


@dataclass(frozen=True, slots=True)
class QualityRow:
    """One column at one scope."""

    scope_kind: str
    scope_key: str
    feature: str
    role: str
    kind: str
    n_rows: int
    n_missing: int
    missing_share: float | None
    #: Present values of the wrong type (text in a numerical column: a node sending text turns
    #: the whole window column into text, and this count shows which scope did it).
    n_invalid: int
    #: Numerical: present values outside the reference's [min, max] (infinities included).
    n_out_of_range: int | None
    out_of_range_share: float | None
    #: Categorical: rows whose category the reference never had, and how many such categories.
    n_new_category_rows: int | None
    n_new_categories: int | None
    #: At most one distinct present value (None when no value is present).
    constant: bool | None
    status: str


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
class QualityResult:
    """Quality rows per (scope, column), new categories per scope, schema issues."""

    rows: tuple[QualityRow, ...]
    new_categories: tuple[NewCategory, ...]
    schema: tuple[SchemaIssue, ...]

    def row(self, feature: str, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> QualityRow:
        """One column at one scope (the fleet by default)."""
        return self._by_key[(feature, scope_kind, scope_key)]

    @cached_property
    def _by_key(self) -> dict[tuple[str, str, str], QualityRow]:
        return {(r.feature, r.scope_kind, r.scope_key): r for r in self.rows}

    def to_frame(self) -> pd.DataFrame:
        return dataclass_frame(self.rows, QualityRow)


def analyse_quality(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    scopes: Mapping[str, Any] | None = None,
    *,
    max_new_categories: int = DEFAULT_MAX_NEW_CATEGORIES,
) -> QualityResult:
    """Quality of every profiled column at the fleet and every scope (``scopes`` as for
    ``analyse_drift``). ``max_new_categories`` caps the new categories listed per scope and
    column, most frequent first (the counts in the rows cover all of them)."""
    if scopes is None:
        scopes = {"node": window["node_id"].to_numpy()} if "node_id" in window else {}
    scope_set = ScopeSet.build(len(window), scopes)
    kinds, keys = scope_set.labels()
    n_rows = np.concatenate([kind.count() for kind in scope_set.kinds])
    rows: list[QualityRow] = []
    new_categories: list[NewCategory] = []
    schema = _schema(profile, window)
    for column in profile.columns:
        if column.column not in window:
            rows.extend(
                QualityRow(
                    scope_kind=kind_,
                    scope_key=key,
                    feature=column.name,
                    role=column.role,
                    kind=column.kind,
                    n_rows=int(rows_),
                    n_missing=0,
                    missing_share=None,
                    n_invalid=0,
                    n_out_of_range=None,
                    out_of_range_share=None,
                    n_new_category_rows=None,
                    n_new_categories=None,
                    constant=None,
                    status=MISSING_COLUMN,
                )
                for kind_, key, rows_ in zip(kinds, keys, n_rows.tolist(), strict=True)
            )
            continue
        series = window[column.column]
        if column.kind == NUMERICAL:
            figures = _numeric(column, series, scope_set)
        else:
            figures, found = _categorical(column, series, scope_set, max_new_categories)
            new_categories.extend(
                NewCategory(kinds[s], keys[s], column.name, category, count)
                for s, category, count in found
            )
        missing, invalid, out, new_rows, new_kinds, distinct, present = figures
        for i in range(scope_set.total):
            total = int(n_rows[i])
            rows.append(
                QualityRow(
                    scope_kind=kinds[i],
                    scope_key=keys[i],
                    feature=column.name,
                    role=column.role,
                    kind=column.kind,
                    n_rows=total,
                    n_missing=int(missing[i]),
                    missing_share=float(missing[i] / total) if total else None,
                    n_invalid=int(invalid[i]),
                    n_out_of_range=None if out is None else int(out[i]),
                    out_of_range_share=(
                        None if out is None or not present[i] else float(out[i] / present[i])
                    ),
                    n_new_category_rows=None if new_rows is None else int(new_rows[i]),
                    n_new_categories=None if new_kinds is None else int(new_kinds[i]),
                    constant=bool(distinct[i] <= 1) if present[i] else None,
                    status=OK,
                )
            )
    return QualityResult(tuple(rows), tuple(new_categories), tuple(schema))


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
    flags = [rows.astype(np.float64) for rows in (missing_rows, invalid_rows, out_rows)]
    present_values = values[present_rows]
    columns = []
    for kind in scopes.kinds:
        counts = [kind.count(rows) for rows in flags]
        bins = kind.bins[present_rows]
        present = np.bincount(bins, minlength=kind.size + 1)
        # Constant: every present value equals one of them (any one, here the last written).
        one = np.zeros(kind.size + 1)
        one[bins] = present_values
        differing = np.bincount(bins, present_values != one[bins], minlength=kind.size + 1)
        distinct = np.where(differing > 0, 2, np.minimum(present, 1))[: kind.size]
        columns.append((*counts, present[: kind.size], distinct))
    missing, invalid, out, present, distinct = (
        np.concatenate(c) for c in zip(*columns, strict=True)
    )
    return missing, invalid, out, None, None, distinct, present


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
    parts = []
    found: list[tuple[int, str, int]] = []
    for kind, offset in zip(scopes.kinds, scopes.offsets, strict=False):
        missing, present, new_count = (kind.count(rows) for rows in flags)
        scope_of, category, counts = _cells(kind.bins[present_rows], codes[present_rows], kind, k)
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
