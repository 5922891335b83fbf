"""Drift of one window judged against several references: each reference's scopes are
analysed apart (``analyse_drift`` per reference), then their verdicts are decided together,
under one Benjamini-Hochberg family, as if one call had analysed them all.

Why one family: a fleet whose nodes each have their own baseline makes one small analysis
per node. Controlling false discoveries within each of them would allow a false alarm in up
to the FDR level of ALL of them (a thousand steady nodes at 5%: fifty alarms a window); one
family across the window keeps ``analyse_drift``'s promise that on clean data the chance of
even one false alarm in the window is at most the FDR level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.analysis.multiplicity import bh_adjust
from monitor.analysis.policy import DriftPolicy, scope_drifted
from monitor.analysis.spec import METHODS
from monitor.analysis.tables import nullable
from monitor.schema import (
    FEATURE,
    OK,
    DriftFeature,
    DriftScope,
    ResultTable,
    fields_of,
    plain_values,
)


@dataclass(frozen=True, eq=False, slots=True)
class DriftPart:
    """Scope and feature rows of some scopes of one window, all measured against one
    reference (their raw p-values are what counts; their verdicts are decided again)."""

    scopes: ResultTable[DriftScope]
    features: ResultTable[DriftFeature] | None


def judge_together(
    parts: Sequence[DriftPart], policy: DriftPolicy
) -> tuple[ResultTable[DriftScope], ResultTable[DriftFeature]]:
    """The parts' rows, in order, with adjusted p-values and verdicts recomputed over one
    Benjamini-Hochberg family: every (scope, column) pair with status ok in any part.

    A (scope kind, scope key) must appear in one part only."""
    scope_columns = _concat(DriftScope, [p.scopes for p in parts])
    feature_columns = _concat(DriftFeature, [p.features for p in parts if p.features is not None])
    keys = list(zip(scope_columns["scope_kind"], scope_columns["scope_key"], strict=True))
    if len(set(keys)) != len(keys):
        raise ValueError("a scope appears in more than one part")
    n = len(feature_columns["feature"])
    status = np.array(feature_columns["status"], dtype=object)
    p = _floats(feature_columns["p_value"])
    # As in analyse_drift: a pair with status ok is in the family (a NaN p-value counts as 1).
    ok = status == OK
    q = np.full(n, np.nan)
    q[ok] = bh_adjust(p[ok])
    statistic = _floats(feature_columns["statistic"])
    threshold = _floats(feature_columns["threshold"])
    methods = np.array(feature_columns["method"], dtype=object)
    verdict = np.zeros(n, bool)
    # One rule per (method, threshold): a verdict is the method's rule on the joint q-values.
    for method, limit in {(m, t) for m, t in zip(methods[ok], threshold[ok], strict=True)}:
        at = ok & (methods == method) & (threshold == limit)
        verdict[at] = policy.verdicts(METHODS[method], statistic[at], q[at], float(limit))
    feature_columns["adjusted_p_value"] = plain_values(q)
    feature_columns["drifted"] = plain_values(nullable(ok, verdict))

    index = {key: i for i, key in enumerate(keys)}
    owner = np.array(
        [
            index[key]
            for key in zip(feature_columns["scope_kind"], feature_columns["scope_key"], strict=True)
        ],
        dtype=np.intp,
    )
    role_is_feature = np.array(feature_columns["role"], dtype=object) == FEATURE
    total = len(keys)
    n_features = np.bincount(owner[ok & role_is_feature], minlength=total)
    n_drifted = np.bincount(owner[ok & role_is_feature & verdict], minlength=total)
    prediction_seen = np.bincount(owner[ok & ~role_is_feature], minlength=total) > 0
    prediction_drifted = np.bincount(owner[ok & ~role_is_feature & verdict], minlength=total) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_features > 0, n_drifted / np.maximum(n_features, 1), np.nan)
    scope_columns["n_features"] = plain_values(n_features)
    scope_columns["n_drifted"] = plain_values(n_drifted)
    scope_columns["share_drifted"] = plain_values(share)
    scope_columns["drifted"] = plain_values(scope_drifted(n_features, n_drifted))
    scope_columns["prediction_drifted"] = plain_values(
        nullable(prediction_seen, prediction_drifted)
    )
    return ResultTable(DriftScope, scope_columns), ResultTable(DriftFeature, feature_columns)


def _concat(row_type: type, tables: Sequence[ResultTable[Any]]) -> dict[str, list[object]]:
    """Tables of one row type as one set of columns (plain values)."""
    columns: dict[str, list[object]] = {f.name: [] for f in fields_of(row_type)}
    for table in tables:
        for name, values in table.columns.items():
            columns[name].extend(plain_values(values))
    return columns


def _floats(values: list[object]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
