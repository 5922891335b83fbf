"""Model performance on the labelled records of a window, for the fleet and every scope.

Classification: accuracy; precision, recall and F1 of the positive class (or their macro
averages over the labels present in the scope, as scikit-learn's ``average="macro"`` does,
when no positive class is given); ROC AUC from the ``proba:<class>`` columns (one-vs-rest macro
average for more than two classes; None when a scope lacks a class, where scikit-learn raises).
Regression: MAE and RMSE. Every scope reports its label coverage; scopes with fewer than
``min_labels`` labelled records get no metrics. Labels and predictions are compared as text
(``1``, ``1.0`` and ``"1"`` are one class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitor.analysis.policy import DEFAULT_MIN_LABELS
from monitor.analysis.scopes import ScopeSet
from monitor.analysis.tables import table_frame
from monitor.schema import (
    FLEET,
    FLEET_KEY,
    INSUFFICIENT_LABELS,
    OK,
    PREDICTION,
    PROBA_PREFIX,
    ROW_KEY,
    PerformanceScope,
    ResultTable,
)

Task = Literal["classification", "regression"]
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "mae", "rmse")


@dataclass(frozen=True, eq=False)
class PerformanceResult:
    """Every scope's performance (``PerformanceScope`` rows, as columns); ``average`` says how
    precision, recall and F1 were taken."""

    scope_table: ResultTable[PerformanceScope]
    task: str
    average: str | None
    positive_class: str | None
    min_labels: int

    @cached_property
    def scopes(self) -> list[PerformanceScope]:
        return self.scope_table.rows()

    @property
    def rows(self) -> list[PerformanceScope]:
        return self.scopes

    def row(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> PerformanceScope:
        """One scope's metrics (the fleet's by default)."""
        return self._by_key[(scope_kind, scope_key)]

    @cached_property
    def _by_key(self) -> dict[tuple[str, str], PerformanceScope]:
        return {(r.scope_kind, r.scope_key): r for r in self.scopes}

    def to_frame(self) -> pd.DataFrame:
        return table_frame(self.scope_table)


def analyse_performance(
    window: pd.DataFrame,
    labels: Mapping[Any, Any] | pd.Series,
    task: Task,
    *,
    classes: Sequence[Any] | None = None,
    positive_class: Any = None,
    scopes: Mapping[str, Any] | ScopeSet | None = None,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> PerformanceResult:
    """Metrics of the window's predictions against ``labels`` (row key -> true label; the
    window's other records are unlabelled). ``classes`` fixes the label set (default: labels,
    predictions and probability columns seen); ``positive_class`` selects binary metrics."""
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression', not {task!r}")
    if scopes is None:
        scopes = {"node": window["node_id"].to_numpy()} if "node_id" in window else {}
    scope_set = ScopeSet.build(len(window), scopes)
    truth = window[ROW_KEY].map(labels) if len(window) else pd.Series([], dtype=object)
    labelled = truth.notna().to_numpy() & window[PREDICTION].notna().to_numpy()
    kinds, keys = scope_set.labels()
    n_rows = _per_scope(scope_set, np.ones(len(window)))
    n_labelled = _per_scope(scope_set, labelled.astype(np.float64))
    if task == "regression":
        metrics = _regression(window, truth, labelled, scope_set)
        average = None
        positive = None
    else:
        positive = None if positive_class is None else _text(positive_class)
        metrics = _classification(window, truth, labelled, scope_set, classes, positive)
        average = "macro" if positive is None else "binary"
    enough = n_labelled >= max(min_labels, 1)
    nothing = np.full(scope_set.total, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(n_rows > 0, n_labelled / np.maximum(n_rows, 1), np.nan)
    table = ResultTable(
        PerformanceScope,
        {
            "scope_kind": np.array(kinds, dtype=object),
            "scope_key": np.array(keys, dtype=object),
            "status": np.where(enough, OK, INSUFFICIENT_LABELS).astype(object),
            "task": np.full(scope_set.total, task, dtype=object),
            "n_rows": n_rows.astype(np.int64),
            "n_labelled": n_labelled.astype(np.int64),
            "label_coverage": coverage,
            **{
                name: np.where(enough, np.asarray(metrics.get(name, nothing), np.float64), np.nan)
                for name in METRICS
            },
        },
    )
    return PerformanceResult(table, task, average, positive, min_labels)


def _per_scope(scopes: ScopeSet, weights: np.ndarray) -> np.ndarray:
    parts = []
    for kind in scopes.kinds:
        inside = kind.codes >= 0
        parts.append(np.bincount(kind.codes[inside], weights[inside], minlength=kind.size))
    return np.concatenate(parts)


def _regression(
    window: pd.DataFrame, truth: pd.Series, labelled: np.ndarray, scopes: ScopeSet
) -> dict[str, np.ndarray]:
    y_true = pd.to_numeric(truth, errors="coerce").to_numpy(dtype=np.float64)
    y_pred = pd.to_numeric(window[PREDICTION], errors="coerce").to_numpy(dtype=np.float64)
    error = np.where(labelled, y_pred - y_true, 0.0)
    count = _per_scope(scopes, labelled.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mae = _per_scope(scopes, np.abs(error)) / count
        rmse = np.sqrt(_per_scope(scopes, error**2) / count)
    return {"mae": mae, "rmse": rmse}


def _classification(
    window: pd.DataFrame,
    truth: pd.Series,
    labelled: np.ndarray,
    scopes: ScopeSet,
    classes: Sequence[Any] | None,
    positive: str | None,
) -> dict[str, np.ndarray]:
    proba = {c[len(PROBA_PREFIX) :]: c for c in window.columns if c.startswith(PROBA_PREFIX)}
    y_true = _texts(truth[labelled])
    y_pred = _texts(window[PREDICTION][labelled])
    names = [_text(c) for c in classes] if classes is not None else sorted(proba)
    for value in (*pd.unique(y_true), *pd.unique(y_pred)):
        if value not in names:
            names.append(value)
    if positive is not None and positive not in names:
        names.append(positive)
    index = {name: i for i, name in enumerate(names)}
    k = len(names)
    t = np.fromiter((index[v] for v in y_true), np.int64, len(y_true))
    p = np.fromiter((index[v] for v in y_pred), np.int64, len(y_pred))
    out: dict[str, list[np.ndarray]] = {m: [] for m in ("accuracy", "precision", "recall", "f1")}
    out["roc_auc"] = []
    for kind in scopes.kinds:
        codes = kind.codes[labelled]
        inside = codes >= 0
        cells = np.bincount(
            (codes[inside] * k + t[inside]) * k + p[inside], minlength=kind.size * k * k
        ).reshape(kind.size, k, k)
        for name, values in _confusion_metrics(
            cells, None if positive is None else index[positive]
        ).items():
            out[name].append(values)
        out["roc_auc"].append(
            _roc_auc(window, labelled, codes, t, kind.size, names, proba, positive)
        )
    return {name: np.concatenate(parts) for name, parts in out.items()}


def _confusion_metrics(cells: np.ndarray, positive: int | None) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 per scope from scope x true x predicted counts, with
    scikit-learn's zero_division: a 0/0 ratio counts as 0."""
    total = cells.sum(axis=(1, 2))
    tp = np.diagonal(cells, axis1=1, axis2=2).astype(np.float64)
    predicted = cells.sum(axis=1)
    actual = cells.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum(axis=1) / total
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(actual > 0, tp / np.maximum(actual, 1), 0.0)
        denominator = actual + predicted
        f1 = np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
        if positive is not None:
            return {
                "accuracy": accuracy,
                "precision": precision[:, positive],
                "recall": recall[:, positive],
                "f1": f1[:, positive],
            }
        # Macro: over the labels present in the scope (true or predicted), like scikit-learn.
        present = (predicted + actual) > 0
        count = present.sum(axis=1)
        return {
            "accuracy": accuracy,
            "precision": np.where(present, precision, 0).sum(axis=1) / count,
            "recall": np.where(present, recall, 0).sum(axis=1) / count,
            "f1": np.where(present, f1, 0).sum(axis=1) / count,
        }


def _roc_auc(
    window: pd.DataFrame,
    labelled: np.ndarray,
    codes: np.ndarray,
    t: np.ndarray,
    n_scopes: int,
    names: list[str],
    proba: Mapping[str, str],
    positive: str | None,
) -> np.ndarray:
    """ROC AUC per scope: of the positive class, or one-vs-rest averaged over the classes
    (NaN when a scope lacks a class or a probability column is missing)."""
    targets = [positive] if positive is not None else names
    # No class known (no labels, no probabilities, no classes): no AUC, and no 0/0 either.
    if not targets or any(name not in proba for name in targets):
        return np.full(n_scopes, np.nan)
    total = np.zeros(n_scopes)
    for name in targets:
        score = window[proba[name]].to_numpy(dtype=np.float64)[labelled]
        total += _binary_auc(score, t == names.index(name), codes, n_scopes)
    return total / len(targets)


def _binary_auc(
    score: np.ndarray, positive: np.ndarray, codes: np.ndarray, n_scopes: int
) -> np.ndarray:
    """Mann-Whitney AUC per scope (ties count half), which equals the ROC curve's area."""
    keep = (codes >= 0) & ~np.isnan(score)
    score, positive, codes = score[keep], positive[keep], codes[keep]
    order = np.lexsort((score, codes))
    score, positive, codes = score[order], positive[order], codes[order]
    size = score.size
    counts = np.bincount(codes, minlength=n_scopes)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    new_group = np.ones(size, bool)
    new_group[1:] = (score[1:] != score[:-1]) | (codes[1:] != codes[:-1])
    group_start = np.flatnonzero(new_group)
    group_end = np.append(group_start[1:], size) - 1
    group = np.cumsum(new_group) - 1
    # Average 1-based rank of each tie group within its scope.
    rank = (group_start[group] + group_end[group]) / 2.0 - starts[codes] + 1.0
    n_pos = np.bincount(codes, weights=positive.astype(np.float64), minlength=n_scopes)
    n_neg = counts - n_pos
    rank_sum = np.bincount(codes, weights=np.where(positive, rank, 0.0), minlength=n_scopes)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _texts(values: pd.Series) -> np.ndarray:
    # One conversion per distinct value, not per row.
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    texts = np.array([_text(u) for u in uniques] + [""], dtype=object)
    return texts[codes]


def _text(value: Any) -> str:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
