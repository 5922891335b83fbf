"""Data and prediction drift of a window against a reference profile, for every scope at once.

What is computed. For each analysed column (features, ``prediction``, ``proba:<class>``) the
method is the spec's override or the one Evidently 0.7 would pick on the fleet-wide window
(``spec.default_method``), with that method's threshold, and the statistic of every scope
(fleet, each group, each node) is Evidently's own value for that scope's rows: normed
Wasserstein, Jensen-Shannon (on Evidently's bins), the KS p-value, Evidently's chi-square
goodness-of-fit p-value or its z-test p-value. ``evidently_drifted`` is Evidently's verdict on
that number (statistic against threshold), kept for comparison with Evidently's reports.

The verdict (``drifted``) is stricter, because Evidently's rule is made for one comparison of
two large samples and a fleet makes tens of thousands of comparisons per window, many small:

1. Too little data, no verdict: a scope with fewer than ``min_rows`` present values of the
   column gets ``drifted = None`` and status ``insufficient_data`` (its statistic is still
   reported).
2. Every other (scope, column) pair contributes one p-value from a two-sample test of "current
   and reference come from one distribution": the KS p-value itself for KS; Evidently's z-test
   p-value for z; for chi-square a two-sample chi-square test of homogeneity (Evidently's
   goodness-of-fit treats the reference as exact, so a large clean window fails it); for
   Wasserstein the KS test on the same values (Kolmogorov distribution with Stephens'
   correction); for Jensen-Shannon the homogeneity test on the same categories or bins.
   Categories expected fewer than 5 times are pooled so the chi-square approximation holds.
3. Benjamini-Hochberg across all those p-values of the window (every scope kind, every column)
   gives adjusted p-values ``adjusted_p_value``.
4. A p-value method drifts when ``adjusted_p_value <= threshold`` (its significance level, 0.05 by
   default, becomes the false discovery rate). A distance method drifts when the distance is
   at least its threshold (the effect is as large as Evidently requires) AND
   ``adjusted_p_value <= fdr`` (default 0.01: the difference is not sampling noise of a sample that
   size).

So a small node's noisy 0.12 Wasserstein is not drift unless its sample shows a real shift; a
fleet of a million rows differing by a trivial amount is not drift because the distance stays
under the threshold; and a shift confined to a few nodes is still found on those nodes, which
the fleet-wide number (diluted) cannot show. On clean data the chance of even one false alarm
in a window is at most the FDR level (Benjamini-Hochberg with every hypothesis true); when
some columns do drift, at most that share of the flagged pairs is expected to be false.

A scope drifted when at least one of its features drifted (``monitor.analysis.policy``); its
share of drifted features (over feature columns with a verdict) is reported beside it. Results
are the columnar tables ``DriftScope`` and ``DriftFeature`` of ``monitor.schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from monitor.analysis import engine
from monitor.analysis.columns import NUMERICAL, numeric_values
from monitor.analysis.multiplicity import bh_adjust
from monitor.analysis.policy import (
    DEFAULT_FDR,
    DEFAULT_MIN_ROWS,
    DriftPolicy,
    scope_drifted,
)
from monitor.analysis.profile import DISCRETE_LIMIT, ColumnProfile, ReferenceProfile
from monitor.analysis.scopes import ScopeSet
from monitor.analysis.spec import (
    CHI_SQUARE,
    JENSEN_SHANNON,
    KS,
    METHODS,
    WASSERSTEIN,
    Z,
    default_method,
)
from monitor.analysis.tables import FeatureRows, ScopedResult, nullable
from monitor.schema import (
    EMPTY_REFERENCE,
    FEATURE,
    FLEET,
    FLEET_KEY,
    INSUFFICIENT_DATA,
    MISSING_COLUMN,
    OK,
    DriftFeature,
    DriftScope,
    ResultTable,
)

DEFAULT_WORKERS = 2


@dataclass(frozen=True, eq=False)
class DriftResult(ScopedResult[DriftScope, DriftFeature]):
    """One window's drift: a row per scope and a row per (scope, column), as columns."""

    #: The method used per column (result name); None for columns missing from the window.
    methods: Mapping[str, str | None]
    policy: DriftPolicy

    def row(
        self, feature: str, scope_kind: str = FLEET, scope_key: str = FLEET_KEY
    ) -> DriftFeature:
        """One column at one scope (the fleet by default)."""
        return self.feature_row(feature, scope_kind, scope_key)


@dataclass(frozen=True, eq=False, slots=True)
class _Outcome:
    """One column's numbers for every flat scope."""

    column: ColumnProfile
    method: str | None
    threshold: float | None
    test: str | None
    m: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    status: np.ndarray


def analyse_drift(
    profile: ReferenceProfile,
    window: pd.DataFrame,
    scopes: Mapping[str, Any] | ScopeSet | None = None,
    *,
    min_rows: int = DEFAULT_MIN_ROWS,
    fdr: float = DEFAULT_FDR,
    policy: DriftPolicy | None = None,
    workers: int = DEFAULT_WORKERS,
) -> DriftResult:
    """Drift of every analysed column at the fleet and every scope.

    ``scopes`` maps a scope kind (e.g. "node", "site") to one key per window row (None or NaN:
    the row belongs to no scope of that kind); by default, nodes from ``node_id``. The fleet is
    always analysed, with kind "fleet" and key "". ``workers`` threads analyse columns side by
    side (numpy's sorts and searches release the GIL); each needs about 60 bytes per row.
    ``policy`` (default: one of ``min_rows`` and ``fdr``) decides the verdicts.
    """
    policy = policy or DriftPolicy(min_rows=min_rows, fdr=fdr)
    min_rows = policy.min_rows
    if scopes is None:
        scopes = {"node": window["node_id"].to_numpy()} if "node_id" in window else {}
    scope_set = ScopeSet.build(len(window), scopes)

    def outcome(column: ColumnProfile) -> _Outcome:
        return _outcome(column, window, scope_set, min_rows)

    if workers > 1 and len(profile.columns) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drift") as pool:
            outcomes = list(pool.map(outcome, profile.columns))
    else:
        outcomes = [outcome(column) for column in profile.columns]
    return _assemble(outcomes, scope_set, policy)


def _outcome(
    column: ColumnProfile, window: pd.DataFrame, scopes: ScopeSet, min_rows: int
) -> _Outcome:
    total = scopes.total
    empty = np.full(total, np.nan)
    if column.column not in window:
        status = np.full(total, MISSING_COLUMN, dtype=object)
        m = np.zeros(total, np.int64)
        return _Outcome(column, column.method, column.threshold, None, m, empty, empty, status)
    series = window[column.column]
    if column.kind == NUMERICAL:
        assert column.numeric is not None
        values, _ = numeric_values(series)
        method = column.method or default_method(
            NUMERICAL, column.n, _numeric_n_values(values, column)
        )
        stats = _numeric_outcome(values, column, method, scopes)
    else:
        assert column.vocabulary is not None
        codes, new = column.vocabulary.encode(series)
        n_values = len(column.vocabulary.values) + len(new)
        method = column.method or default_method(column.kind, column.n, n_values)
        reference = np.concatenate([column.vocabulary.counts, np.zeros(len(new), np.int64)])
        stats = _count_outcome(engine.count_stats(codes, reference, scopes), method)
    m, statistic, p_value, test = stats
    status = np.where(m >= min_rows, OK, INSUFFICIENT_DATA).astype(object)
    if column.n == 0:
        status[:] = EMPTY_REFERENCE
        statistic = empty
    statistic = np.where(m > 0, statistic, np.nan)
    return _Outcome(column, method, _threshold(column, method), test, m, statistic, p_value, status)


def _numeric_n_values(values: np.ndarray, column: ColumnProfile) -> int:
    """Distinct values of reference and window together, exactly while it matters (<= 6)."""
    numeric = column.numeric
    assert numeric is not None
    if numeric.uniques is None or numeric.n_unique > 5:
        return numeric.n_unique
    finite = values[np.isfinite(values)]
    new = np.unique(finite[~np.isin(finite, numeric.uniques)])
    return numeric.n_unique + int(new.size)


def _numeric_outcome(
    values: np.ndarray, column: ColumnProfile, method: str, scopes: ScopeSet
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    numeric = column.numeric
    assert numeric is not None
    n = numeric.n
    if method in (WASSERSTEIN, KS):
        found = engine.numeric_stats(values, numeric, scopes, wasserstein=method == WASSERSTEIN)
        if method == WASSERSTEIN:
            assert found.wasserstein is not None
            p = engine.ks_pvalues_asymptotic(found.ks_num, n, found.m)
            return found.m, found.wasserstein, p, "ks-asymptotic"
        p = engine.ks_pvalues_exact(found.ks_num, n, found.m)
        return found.m, p, p, "ks"
    if method == JENSEN_SHANNON and numeric.n_unique > DISCRETE_LIMIT:
        return _count_outcome(engine.binned_stats(values, numeric, scopes), method)
    assert numeric.uniques is not None and numeric.unique_counts is not None
    codes, n_new = _numeric_codes(values, numeric.uniques)
    reference = np.concatenate([numeric.unique_counts, np.zeros(n_new, np.int64)])
    return _count_outcome(engine.count_stats(codes, reference, scopes), method)


def _numeric_codes(values: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, int]:
    """Numbers as categories: the index of each value among the reference's distinct values,
    then new values after them (-1 for missing and infinite values)."""
    finite = np.isfinite(values)
    at = np.minimum(np.searchsorted(uniques, values), max(uniques.size - 1, 0))
    hit = finite & (uniques[at] == values) if uniques.size else np.zeros(values.size, bool)
    codes = np.where(hit, at, -1).astype(np.int64)
    miss = finite & ~hit
    if not miss.any():
        return codes, 0
    new, inverse = np.unique(values[miss], return_inverse=True)
    codes[miss] = uniques.size + inverse
    return codes, int(new.size)


def _count_outcome(
    found: engine.CountScopeStats, method: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    if method == JENSEN_SHANNON:
        return found.m, found.jensenshannon, found.homogeneity_p, "chi2-homogeneity"
    if method == CHI_SQUARE:
        return found.m, found.chisquare_p, found.homogeneity_p, "chi2-homogeneity"
    if method == Z:
        return found.m, found.z_p, found.z_p, "z"
    raise ValueError(f"{method!r} is not a method on counts")


def _threshold(column: ColumnProfile, method: str) -> float:
    if column.threshold is not None:
        return column.threshold
    return METHODS[method].default_threshold


def _assemble(outcomes: list[_Outcome], scopes: ScopeSet, policy: DriftPolicy) -> DriftResult:
    total = scopes.total
    # One Benjamini-Hochberg family: every (scope, column) pair with a verdict in this window.
    tested = [o.status == OK for o in outcomes]
    family = np.concatenate([o.p_value[t] for o, t in zip(outcomes, tested, strict=True)])
    adjusted = bh_adjust(family)
    kinds, keys = scopes.labels()
    kind_array = np.array(kinds, dtype=object)
    key_array = np.array(keys, dtype=object)
    n_features = np.zeros(total, np.int64)
    n_drifted = np.zeros(total, np.int64)
    n_evidently = np.zeros(total, np.int64)
    n_evidently_drifted = np.zeros(total, np.int64)
    prediction_seen = np.zeros(total, bool)
    prediction_drifted = np.zeros(total, bool)
    rows = FeatureRows(DriftFeature, kind_array, key_array)
    start = 0
    for outcome, ok in zip(outcomes, tested, strict=True):
        column = outcome.column
        q = np.full(total, np.nan)
        q[ok] = adjusted[start : start + int(ok.sum())]
        start += int(ok.sum())
        stat = outcome.statistic
        has_stat = ~np.isnan(stat)
        threshold = np.nan if outcome.threshold is None else outcome.threshold
        if outcome.method is None:
            raw = verdict = np.zeros(total, bool)
        else:
            method = METHODS[outcome.method]
            raw = np.asarray(method.evidently_verdicts(stat, threshold))
            verdict = policy.verdicts(method, stat, q, threshold)
        if column.role == FEATURE:
            n_features += ok
            n_drifted += ok & verdict
            n_evidently += has_stat
            n_evidently_drifted += has_stat & raw
        else:
            prediction_seen |= ok
            prediction_drifted |= ok & verdict
        rows.add(
            column.name,
            column.role,
            column.kind,
            method=np.full(total, outcome.method, dtype=object),
            test=np.full(total, outcome.test, dtype=object),
            statistic=stat,
            threshold=np.full(total, threshold, dtype=np.float64),
            p_value=np.where(ok, outcome.p_value, np.nan),
            adjusted_p_value=q,
            drifted=nullable(ok, verdict),
            evidently_drifted=nullable(has_stat, raw),
            n_current=outcome.m,
            n_reference=np.full(total, column.n, dtype=np.int64),
            status=outcome.status,
        )
    features = rows.table()
    n_rows = np.concatenate([kind.count() for kind in scopes.kinds])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_features > 0, n_drifted / np.maximum(n_features, 1), np.nan)
        evidently_share = np.where(
            n_evidently > 0, n_evidently_drifted / np.maximum(n_evidently, 1), np.nan
        )
    scope_rows = ResultTable(
        DriftScope,
        {
            "scope_kind": kind_array,
            "scope_key": key_array,
            "status": np.where((n_features > 0) | prediction_seen, OK, INSUFFICIENT_DATA).astype(
                object
            ),
            "n_rows": n_rows.astype(np.int64),
            "n_features": n_features,
            "n_drifted": n_drifted,
            "share_drifted": share,
            "drifted": scope_drifted(n_features, n_drifted),
            "prediction_drifted": nullable(prediction_seen, prediction_drifted),
            "evidently_share_drifted": evidently_share,
        },
    )
    methods = {o.column.name: o.method for o in outcomes}
    return DriftResult(scope_rows, features, methods, policy)


def _float(value: float) -> float | None:
    return None if value != value else float(value)  # NaN -> None
