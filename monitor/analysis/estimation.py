"""Performance estimated without labels, for the fleet and every scope of a window at once.

NannyML's confidence-based performance estimation (CBPE): the model's class probabilities are
calibrated on the reference's labels (``monitor.analysis.calibration``), and each scored row
then adds its calibrated probabilities to an expected confusion matrix (row: true class,
column: the predicted class). Accuracy, precision, recall and F1 follow from the matrix, as
NannyML computes them; ROC AUC is the area under the curve that the calibrated probabilities
trace when rows are taken in order of the model's own score (NannyML's ``estimate_roc_auc``).
Sampling errors are NannyML's: components measured on the reference, divided by the square
root of the scope's scored rows.

Everything is per scope without a loop over scopes: expected matrices are sums per cell
(``ScopeSet``), and the ROC curves of every scope of a kind come from one sort by score, then a
stable sort by scope code, so that each scope is one contiguous segment of segment-wise sums.

Beyond NannyML, each band also holds the calibration's own uncertainty (the sampling error at
the reference's size: a scope's estimate is no more certain than the reference it was
calibrated on) and is widened by the scope's shift allowance (how far its mix of predicted
classes moved from the reference's, beyond noise: the calibration was measured on the
reference's mix); the estimate is checked against whatever labels the window has, and a trust
verdict is given (``monitor.analysis.trust``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from monitor.analysis.calibration import Calibrator, calibrator_for
from monitor.analysis.performance import _text
from monitor.analysis.policy import EstimationPolicy
from monitor.analysis.scopes import ScopeSet
from monitor.analysis.tables import table_frame
from monitor.analysis.trust import ScopeChecks, TrustEvidence, judge
from monitor.schema import (
    FEATURE_PREFIX,
    FLEET,
    FLEET_KEY,
    INSUFFICIENT_DATA,
    NO_PROBABILITIES,
    NO_REFERENCE_LABELS,
    NODE_ID,
    NOT_CLASSIFICATION,
    OK,
    PREDICTION,
    PROBA_PREFIX,
    ROW_KEY,
    EstimationScope,
    ResultTable,
    proba_column,
)

CLASSIFICATION = "classification"
LABEL = "label"
FIGURES = ("accuracy", "precision", "recall", "f1", "roc_auc")
#: Fixed-width confidence bins of the calibration error measured on labelled rows.
ECE_BINS = 10
#: The features the model leans on: the most important that together carry this share of the
#: total importance, at most this many.
LEANED_SHARE = 0.8
LEANED_MAX = 5
#: Reference rows the features the model leans on are measured on.
LEANED_SAMPLE = 10_000
#: NannyML widens its multiclass ROC AUC sampling error by this factor.
MULTICLASS_AUC_FACTOR = 1.2
DEFAULT_POLICY = EstimationPolicy()


@dataclass(frozen=True, eq=False)
class Estimator:
    """A model version's calibration, fitted once on its reference (window-shaped: features,
    ``prediction``, ``proba:<class>``, ``label``), and what estimating with it needs.

    ``status`` is OK, or why the model's performance cannot be estimated: it is not a
    classifier, or its reference has no labels or probabilities to calibrate on."""

    status: str
    task: str
    classes: tuple[str, ...] = ()
    #: The class whose precision, recall, F1 and ROC AUC are reported (None: macro averages).
    positive_class: str | None = None
    #: Input features the model leans on (their importance for its calibrated confidence).
    leaned_on: tuple[str, ...] = ()
    #: A two-class model is calibrated on one class's probability: the positive class, or the
    #: second class without one (index into ``classes``).
    scored_class: int = -1
    #: One calibrator for a two-class model (of ``scored_class``), one per class beyond.
    calibrators: tuple[Calibrator, ...] = ()
    #: The reference's share of rows predicted as each class.
    reference_shares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: Per figure, its sampling error times the square root of the rows (NannyML's components).
    error_scales: Mapping[str, float] = field(default_factory=dict)
    #: Reference rows the calibration was fitted on.
    n_reference: int = 0

    @property
    def sd_reference(self) -> float:
        """The standard deviation of the reference's per-row correctness."""
        return self.error_scales.get("accuracy", float("nan"))

    def reference_error(self, figure: str = "accuracy") -> float:
        """The calibration's own uncertainty in a figure: its sampling error at the reference's
        size. Calibrated on ``n_reference`` rows, the estimate of a scope of any size is no
        more certain than that, and the error is shared by every window (a bias, not noise)."""
        if self.n_reference <= 0:
            return float("nan")
        return self.error_scales.get(figure, float("nan")) / float(np.sqrt(self.n_reference))

    @property
    def scored_classes(self) -> tuple[str, ...]:
        """The classes whose probabilities an estimate needs: the scored class of a two-class
        model, every class beyond."""
        if len(self.classes) == 2:
            return (self.classes[self.scored_class],)
        return self.classes

    @property
    def proba_columns(self) -> tuple[str, ...]:
        """The window columns of ``scored_classes``."""
        return tuple(proba_column(c) for c in self.scored_classes)

    @classmethod
    def fit(
        cls,
        reference: pd.DataFrame,
        *,
        task: str,
        classes: Sequence[Any] | None,
        positive_class: Any,
    ) -> Estimator:
        """Calibrate on the reference's labelled rows (NannyML's ``needs_calibration`` decides
        per class whether isotonic calibration helps) and measure the sampling-error
        components and the features the model leans on."""
        if task != CLASSIFICATION:
            return cls(NOT_CLASSIFICATION, task)
        names = _class_names(reference, classes, positive_class)
        positive = None if positive_class is None else _text(positive_class)
        k = len(names)
        if k < 2 or LABEL not in reference:
            return cls(NO_REFERENCE_LABELS, task, tuple(names), positive)
        scored = names.index(positive) if positive is not None else 1
        needed = [names[scored]] if k == 2 else names
        if any(proba_column(c) not in reference for c in needed):
            return cls(NO_REFERENCE_LABELS, task, tuple(names), positive)
        proba = _proba(reference, needed)
        truth = _codes(reference[LABEL], names)
        if PREDICTION in reference:
            pred = _codes(reference[PREDICTION], names)
        elif k == 2:  # a reference without predictions: the model's own decision rule
            pred = np.where(proba[:, 0] >= 0.5, scored, 1 - scored)
        else:
            pred = proba.argmax(axis=1)
        usable = (truth >= 0) & (pred >= 0) & np.isfinite(proba).all(axis=1)
        if not usable.any():
            return cls(NO_REFERENCE_LABELS, task, tuple(names), positive)
        proba, truth, pred = proba[usable], truth[usable], pred[usable]
        if k == 2:
            calibrators: tuple[Calibrator, ...] = (calibrator_for(proba[:, 0], truth == scored),)
        else:
            calibrators = tuple(calibrator_for(proba[:, c], truth == c) for c in range(k))
        estimator = cls(
            OK,
            task,
            tuple(names),
            positive,
            (),
            scored,
            calibrators,
            np.bincount(pred, minlength=k) / pred.size,
            _error_scales(truth, pred, proba, names, positive, scored),
            int(pred.size),
        )
        calibrated = estimator.calibrate(proba)
        # Binary: the calibrated probability of the class it is calibrated on; more classes:
        # the model's confidence in what it predicted.
        target = calibrated[:, scored] if k == 2 else calibrated[np.arange(pred.size), pred]
        return dataclasses.replace(estimator, leaned_on=_leaned_on(reference[usable], target))

    def calibrate(self, proba: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of every class (rows x classes) from the columns of
        ``proba_columns``; more than two classes are renormalised to sum to one (uniform
        where every calibrated probability is zero), as NannyML does."""
        if len(self.classes) == 2:
            p = self.calibrators[0](proba[:, 0])
            out = np.empty((p.size, 2))
            out[:, self.scored_class] = p
            out[:, 1 - self.scored_class] = 1.0 - p
            return out
        calibrated = np.column_stack([c(proba[:, i]) for i, c in enumerate(self.calibrators)])
        total = calibrated.sum(axis=1, keepdims=True)
        uniform = np.full_like(calibrated, 1.0 / len(self.classes))
        return np.divide(calibrated, total, out=uniform, where=total != 0)


@dataclass(frozen=True, eq=False)
class EstimationResult:
    """Every scope's estimate (``EstimationScope`` rows, as columns), the fleet first."""

    scope_table: ResultTable[EstimationScope]

    @cached_property
    def rows(self) -> list[EstimationScope]:
        return self.scope_table.rows()

    def row(self, scope_kind: str = FLEET, scope_key: str = FLEET_KEY) -> EstimationScope:
        """One scope's estimate (the fleet's by default)."""
        return self._by_key[(scope_kind, scope_key)]

    @cached_property
    def _by_key(self) -> dict[tuple[str, str], EstimationScope]:
        return {(r.scope_kind, r.scope_key): r for r in self.rows}

    def to_frame(self) -> pd.DataFrame:
        return table_frame(self.scope_table)


def estimate_performance(
    estimator: Estimator,
    window: pd.DataFrame,
    scopes: Mapping[str, Any] | ScopeSet | None,
    *,
    labels: Mapping[Any, Any] | pd.Series,
    evidence: TrustEvidence | None = None,
    policy: EstimationPolicy = DEFAULT_POLICY,
) -> EstimationResult:
    """The window's expected performance at every scope, with bands, the check against the
    labels given (row key -> true label), and a trust verdict per scope judged with
    ``evidence`` (the window's drift per scope and each scope's labelled history)."""
    if scopes is None:
        scopes = {"node": window[NODE_ID].to_numpy()} if NODE_ID in window else {}
    scope_set = ScopeSet.build(len(window), scopes)
    if estimator.status != OK:
        return _fleet_only(estimator, scope_set, estimator.status)
    if any(c not in window for c in estimator.proba_columns):
        return _fleet_only(estimator, scope_set, NO_PROBABILITIES)
    scored = _Scored.of(estimator, window, scope_set)
    n_scored, figures, allowance = _estimates(estimator, scored, scope_set)
    n = np.maximum(n_scored, 1).astype(np.float64)
    errors = {name: estimator.error_scales[name] / np.sqrt(n) for name in FIGURES}
    n_labelled, realised, promised, ece = _labelled(estimator, window, labels, scored, scope_set)
    enough = n_scored >= policy.min_rows
    has_labels = enough & (n_labelled > 0)
    kinds, keys = scope_set.labels()
    columns: dict[str, Any] = {
        "scope_kind": np.array(kinds, dtype=object),
        "scope_key": np.array(keys, dtype=object),
        "status": np.where(enough, OK, INSUFFICIENT_DATA).astype(object),
        "task": np.full(scope_set.total, estimator.task, dtype=object),
        "n_rows": scope_set.per_scope(scope_set.count_cells()).astype(np.int64),
        "n_scored": n_scored.astype(np.int64),
    }
    for name in FIGURES:
        value = np.where(enough, figures[name], np.nan)
        half = policy.band_errors * (errors[name] + estimator.reference_error(name)) + allowance
        columns[name] = value
        columns[f"{name}_lower"] = np.clip(value - half, 0.0, 1.0)
        columns[f"{name}_upper"] = np.clip(value + half, 0.0, 1.0)
    columns |= {
        "sampling_error": np.where(enough, errors["accuracy"], np.nan),
        "shift_allowance": np.where(enough, allowance, np.nan),
        "n_labelled": n_labelled,
        "realised_accuracy": np.where(has_labels, realised, np.nan),
        "expected_accuracy": np.where(has_labels, promised, np.nan),
        "calibration_error": np.where(has_labels, ece, np.nan),
    }
    checks = ScopeChecks(
        kinds=kinds,
        keys=keys,
        estimated=enough,
        accuracy=columns["accuracy"],
        n_labelled=n_labelled,
        realised=columns["realised_accuracy"],
        expected=columns["expected_accuracy"],
        shift_allowance=columns["shift_allowance"],
        members=_Members(scope_set),
    )
    verdicts = judge(
        checks,
        evidence,
        sd_reference=estimator.sd_reference,
        reference_error=estimator.reference_error(),
        leaned_on=estimator.leaned_on,
        policy=policy,
    )
    columns |= {
        "trusted": verdicts.trusted,
        "trust_evidence": verdicts.evidence,
        "trust_reason": verdicts.reason,
    }
    return EstimationResult(ResultTable(EstimationScope, columns))


@dataclass(frozen=True, eq=False)
class _Scored:
    """The window's scored rows (a prediction among the classes and finite probabilities):
    their uncalibrated and calibrated probabilities, predicted class, calibrated confidence in
    it and cell; ``rows`` picks them from the window (None: every row is scored)."""

    rows: np.ndarray | None
    proba: np.ndarray
    calibrated: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray
    cells: np.ndarray

    @classmethod
    def of(cls, estimator: Estimator, window: pd.DataFrame, scopes: ScopeSet) -> _Scored:
        proba = _proba(window, estimator.scored_classes)
        if PREDICTION in window:
            pred = _codes(window[PREDICTION], list(estimator.classes))
        else:
            pred = np.full(len(window), -1, np.int64)
        scored = (pred >= 0) & np.isfinite(proba).all(axis=1)
        rows = None if scored.all() else np.flatnonzero(scored)
        if rows is not None:
            proba, pred = proba[rows], pred[rows]
        calibrated = estimator.calibrate(proba)
        confidence = calibrated[np.arange(pred.size), pred]
        cells = scopes.cells if rows is None else scopes.cells[rows]
        return cls(rows, proba, calibrated, pred, confidence, cells)

    def only(self, values: np.ndarray) -> np.ndarray:
        """A per-row array of the window restricted to the scored rows."""
        return values if self.rows is None else values[self.rows]


def _estimates(
    estimator: Estimator, scored: _Scored, scopes: ScopeSet
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Per scope: scored rows, every estimated figure, and the shift allowance."""
    k = len(estimator.classes)
    # Expected confusion per cell: true class x predicted class, then summed per scope.
    key = scored.cells * k + scored.pred
    size = scopes.n_cells * k
    predicted = np.bincount(key, minlength=size).reshape(scopes.n_cells, k)
    # Built as [cell, predicted, true], turned to [cell, true, predicted].
    expected = (
        np.stack(
            [np.bincount(key, scored.calibrated[:, c], minlength=size) for c in range(k)], axis=1
        )
        .reshape(scopes.n_cells, k, k)
        .transpose(0, 2, 1)
    )
    n_scored = scopes.per_scope(predicted.sum(axis=1))
    figures = _confusion_figures(scopes.per_scope(expected), n_scored, estimator)
    figures["roc_auc"] = _roc_auc(estimator, scored, scopes)
    allowance = _shift_allowance(scopes.per_scope(predicted), n_scored, estimator)
    return n_scored, figures, allowance


def _shift_allowance(
    predicted: np.ndarray, n_scored: np.ndarray, estimator: Estimator
) -> np.ndarray:
    """How far each scope's mix of predicted classes moved from the reference's beyond noise:
    the total-variation distance of the shares, less ``sum_c sqrt(s_c (1 - s_c) / n)`` of the
    reference's shares ``s`` (for two classes: ``|s - s_ref| - 2 sqrt(s_ref (1 - s_ref) / n)``),
    never below 0."""
    n = np.maximum(n_scored, 1).astype(np.float64)
    ref = estimator.reference_shares
    distance = 0.5 * np.abs(predicted / n[:, None] - ref[None, :]).sum(axis=1)
    noise = np.sqrt(ref * (1 - ref)).sum() / np.sqrt(n)
    return np.maximum(0.0, distance - noise)


# --- per-scope figures --------------------------------------------------------------------------


def _confusion_figures(
    matrix: np.ndarray, n_scored: np.ndarray, estimator: Estimator
) -> dict[str, np.ndarray]:
    """Accuracy, precision, recall and F1 from scope x true x predicted expected counts, as
    NannyML's ``estimate_*`` functions compute them (0 where a denominator is 0); of the
    positive class, or averaged over every class (NannyML's macro)."""
    tp = np.diagonal(matrix, axis1=1, axis2=2)
    predicted = matrix.sum(axis=1)
    actual = matrix.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(n_scored > 0, tp.sum(axis=1) / n_scored, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        denominator = predicted + actual
        f1 = np.where(denominator > 0, 2 * tp / denominator, 0.0)
    if estimator.positive_class is not None:
        c = estimator.classes.index(estimator.positive_class)
        precision, recall, f1 = precision[:, c], recall[:, c], f1[:, c]
    else:
        precision, recall, f1 = precision.mean(axis=1), recall.mean(axis=1), f1.mean(axis=1)
    empty = n_scored == 0
    return {
        "accuracy": accuracy,
        "precision": np.where(empty, np.nan, precision),
        "recall": np.where(empty, np.nan, recall),
        "f1": np.where(empty, np.nan, f1),
    }


def _auc_targets(estimator: Estimator) -> list[tuple[int, int]]:
    """(class, probability column) pairs whose ROC AUC is averaged: the positive class's; a
    two-class model's scored class (the other's curve has the same area); else every class."""
    classes = estimator.classes
    if len(classes) == 2:
        return [(estimator.scored_class, 0)]
    if estimator.positive_class is not None:
        c = classes.index(estimator.positive_class)
        return [(c, c)]
    return [(c, c) for c in range(len(classes))]


def _roc_auc(estimator: Estimator, scored: _Scored, scopes: ScopeSet) -> np.ndarray:
    """NannyML's estimated ROC AUC of every scope, averaged over the targets."""
    targets = _auc_targets(estimator)
    total = np.zeros(scopes.total)
    for c, column in targets:
        total += _segment_auc(
            scored.proba[:, column],
            scored.calibrated[:, c],
            scored.only,
            scopes,
            ties_share_weight=len(estimator.classes) == 2,
        )
    return total / len(targets)


def _segment_auc(
    score: np.ndarray, weight: np.ndarray, only: Any, scopes: ScopeSet, *, ties_share_weight: bool
) -> np.ndarray:
    """``estimate_roc_auc`` per scope: rows by descending score, each adds its calibrated
    probability ``w`` to the expected true positives and ``1 - w`` to the false positives; the
    area is the trapezoid sum ``sum (1 - w_i) (2 T_(i-1) + w_i) / (2 T F)`` with ``T_(i-1)`` the
    expected positives before row ``i`` in its scope, ``T`` and ``F`` the scope's totals.

    Rows of equal score are one step of the curve (as scikit-learn's ROC takes them): each
    adds ``(1 - w_i) (2 T_g + W_g)``, with ``T_g`` the expected positives before its group and
    ``W_g`` the group's. Where equal scores have equal calibrated probabilities (a class's
    calibrator is a function of its score: ``ties_share_weight``), that equals the row-by-row
    sum NannyML takes, in any order; with renormalised probabilities it makes the area
    independent of the order of equal scores, which NannyML leaves to its sort."""
    order = np.argsort(-score)
    w_sorted = weight[order]
    s_sorted = None if ties_share_weight else score[order]
    out = np.full(scopes.total, np.nan)
    for kind, offset in zip(scopes.kinds, scopes.offsets, strict=False):
        if kind.size == 0:
            continue
        if kind.name == FLEET and scopes.whole_fleet:
            w, s = w_sorted, s_sorted
            counts = np.array([w.size])
        else:
            unsorted = only(kind.sort_codes)[order]
            # Stable: each scope's rows stay in order of descending score.
            perm = np.argsort(unsorted, kind="stable")
            w = w_sorted[perm]
            s = None if s_sorted is None else s_sorted[perm]
            counts = np.bincount(unsorted, minlength=kind.size + 1)
        if not w.size:
            continue
        # Segments are contiguous: with ``R`` the running sum over all segments and ``B`` its
        # value where a segment starts, ``2 T_(i-1) + w_i = 2 R_i - w_i - 2 B``, so a segment's
        # sum is ``sum (1 - w_i) (2 R_i - w_i) - 2 B F``: no per-row offset is needed.
        running = np.cumsum(w)
        ends = np.cumsum(counts)
        starts = ends - counts
        filled = counts > 0
        base = np.zeros(counts.size)
        later = filled & (starts > 0)
        base[later] = running[starts[later] - 1]
        if s is None:
            level = 2.0 * running
            level -= w
        else:
            # A group of equal scores: ``2 T_g + W_g`` is the running sum before it plus the
            # running sum at its end (less 2 B).
            new = np.empty(w.size, bool)
            new[0] = True
            np.not_equal(s[1:], s[:-1], out=new[1:])
            new[starts[filled]] = True
            heads = np.flatnonzero(new)
            sizes = np.diff(np.append(heads, w.size))
            level = np.repeat(running[heads] - w[heads] + running[heads + sizes - 1], sizes)
        level *= 1.0 - w
        t = np.zeros(counts.size)
        t[filled] = running[ends[filled] - 1] - base[filled]
        f = counts - t
        area = np.zeros(counts.size)
        area[filled] = np.add.reduceat(level, starts[filled]) - 2.0 * base[filled] * f[filled]
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = np.where((t > 0) & (f > 0), area / (2.0 * t * f), np.nan)
        out[offset : offset + kind.size] = auc[: kind.size]
    return out


def _labelled(
    estimator: Estimator,
    window: pd.DataFrame,
    labels: Mapping[Any, Any] | pd.Series,
    scored: _Scored,
    scopes: ScopeSet,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per scope, on its scored rows that have a label: how many, the accuracy they realise,
    the accuracy their calibrated confidence promised, and the expected calibration error of
    that confidence (10 fixed-width bins)."""
    series = labels if isinstance(labels, pd.Series) else pd.Series(labels, dtype=object)
    series = series[series.notna()]
    total = scopes.total
    if not len(series) or not len(scored.pred):
        zeros = np.zeros(total)
        return zeros.astype(np.int64), zeros + np.nan, zeros + np.nan, zeros + np.nan
    series = series[~series.index.duplicated(keep="last")]
    where = scored.only(series.index.get_indexer(window[ROW_KEY].to_numpy()))
    labelled = np.flatnonzero(where >= 0)
    codes, uniques = pd.factorize(series.to_numpy(dtype=object)[where[labelled]])
    texts = np.array([_text(u) for u in uniques], dtype=object)
    names = np.array(estimator.classes, dtype=object)
    correct = (texts[codes] == names[scored.pred[labelled]]).astype(np.float64)
    promised = scored.confidence[labelled]
    bins = np.minimum((promised * ECE_BINS).astype(np.intp), ECE_BINS - 1)
    key = scored.cells[labelled] * ECE_BINS + bins
    size = scopes.n_cells * ECE_BINS
    count = np.bincount(key, minlength=size).reshape(-1, ECE_BINS)
    right = np.bincount(key, correct, minlength=size).reshape(-1, ECE_BINS)
    sure = np.bincount(key, promised, minlength=size).reshape(-1, ECE_BINS)
    n = scopes.per_scope(count).sum(axis=1)
    right_per_bin = scopes.per_scope(right)
    sure_per_bin = scopes.per_scope(sure)
    with np.errstate(invalid="ignore", divide="ignore"):
        realised = right_per_bin.sum(axis=1) / n
        expected = sure_per_bin.sum(axis=1) / n
        ece = np.abs(right_per_bin - sure_per_bin).sum(axis=1) / n
    return n.astype(np.int64), realised, expected, ece


class _Members:
    """Which scopes of one kind lie within a scope of another (through the cells)."""

    def __init__(self, scopes: ScopeSet) -> None:
        self.kinds = {kind.name: i for i, kind in enumerate(scopes.kinds)}
        self.offsets = scopes.offsets
        codes = np.full((scopes.n_cells, len(scopes.kinds)), -1, np.int64)
        for i, (kind, cell_map) in enumerate(zip(scopes.kinds, scopes.cell_maps, strict=True)):
            runs = np.diff(np.append(cell_map.starts, cell_map.order.size))
            per_cell = np.repeat(cell_map.scopes, runs)
            codes[cell_map.order, i] = np.where(per_cell < kind.size, per_cell, -1)
        self.codes = codes

    def __call__(self, scope: int, kind: str) -> list[int]:
        """Flat indices of the ``kind`` scopes within flat scope ``scope``."""
        if kind not in self.kinds or not self.codes.size:
            return []
        parent = int(np.searchsorted(self.offsets, scope, side="right")) - 1
        inside = self.codes[:, parent] == scope - self.offsets[parent]
        child = self.kinds[kind]
        found = np.unique(self.codes[inside, child])
        return [int(c) + self.offsets[child] for c in found if c >= 0]


def _fleet_only(estimator: Estimator, scopes: ScopeSet, status: str) -> EstimationResult:
    """The single fleet row of a window whose performance cannot be estimated."""
    n_rows = int(scopes.kinds[0].count()[0]) if scopes.kinds else 0
    values: dict[str, Any] = {f: None for f in EstimationScope.__dataclass_fields__}
    values |= {
        "scope_kind": FLEET,
        "scope_key": FLEET_KEY,
        "status": status,
        "task": estimator.task,
        "n_rows": n_rows,
        "n_scored": 0,
        "n_labelled": 0,
    }
    row = EstimationScope(**values)
    return EstimationResult(ResultTable.from_rows(EstimationScope, [row]))


# --- fitting ------------------------------------------------------------------------------------


def _class_names(
    reference: pd.DataFrame, classes: Sequence[Any] | None, positive: Any
) -> list[str]:
    """The model's classes as text: as given, else those the reference has probabilities for
    (sorted); a positive class not among them joins them."""
    if classes:
        given = [_text(c) for c in classes]
    else:
        given = sorted(
            str(c)[len(PROBA_PREFIX) :]
            for c in reference.columns
            if str(c).startswith(PROBA_PREFIX)
        )
    names = list(dict.fromkeys(given))
    if positive is not None and _text(positive) not in names:
        names.append(_text(positive))
    return names


def _proba(frame: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """The probability columns of ``classes`` as floats (NaN where missing or not a number)."""
    return np.column_stack(
        [
            pd.to_numeric(frame[proba_column(c)], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            for c in classes
        ]
    )


def _codes(values: pd.Series, names: Sequence[str]) -> np.ndarray:
    """Each value's index in ``names``, compared as text (-1: missing or not a class). One
    conversion per distinct value, not per row."""
    index = {name: i for i, name in enumerate(names)}
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        uniques: Sequence[Any] = values.cat.categories
    else:
        codes, uniques = pd.factorize(values.to_numpy(dtype=object), use_na_sentinel=True)
    lookup = np.array([index.get(_text(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[np.where(codes < 0, len(uniques), codes)]


def _error_scales(
    truth: np.ndarray,
    pred: np.ndarray,
    proba: np.ndarray,
    names: Sequence[str],
    positive: str | None,
    scored: int,
) -> dict[str, float]:
    """NannyML's sampling-error components on the reference, as ``error * sqrt(rows)``: the
    binary formulas for a positive class's figures, the multiclass ones for macro averages."""
    k = len(names)
    scales = {"accuracy": float(np.std(truth == pred))}
    if positive is not None:
        c = names.index(positive)
        y, p = truth == c, pred == c
        scales["precision"] = _binary_scale(y, p, "precision")
        scales["recall"] = _binary_scale(y, p, "recall")
        scales["f1"] = _binary_scale(y, p, "f1")
    else:
        for name in ("precision", "recall", "f1"):
            terms = [_class_term(truth == c, pred == c, name) for c in range(k)]
            scales[name] = _combined(terms, k)
    if k == 2:
        spread, fraction = _auroc_terms(truth == scored, proba[:, 0])
        scales["roc_auc"] = float(np.std(spread) / np.sqrt(fraction))
    elif positive is not None:
        c = names.index(positive)
        spread, fraction = _auroc_terms(truth == c, proba[:, c])
        scales["roc_auc"] = float(np.std(spread) / np.sqrt(fraction))
    else:
        terms = []
        for c in range(k):
            spread, fraction = _auroc_terms(truth == c, proba[:, c])
            terms.append((float(np.var(spread)), fraction))
        scales["roc_auc"] = _combined(terms, k) * MULTICLASS_AUC_FACTOR
    return scales


def _counts(y: np.ndarray, p: np.ndarray) -> tuple[int, int, int]:
    tp = int(np.sum(y & p))
    return tp, int(np.sum(~y & p)), int(np.sum(y & ~p))


def _binary_scale(y: np.ndarray, p: np.ndarray, figure: str) -> float:
    """NannyML's binary component of one figure: the spread of its per-row observations over
    the share of rows that are relevant to it."""
    tp, fp, fn = _counts(y, p)
    n = y.size
    with np.errstate(invalid="ignore", divide="ignore"):
        if figure == "precision":
            hits, relevant, fraction = tp, tp + fp, (tp + fp) / n
            factor = 1.0
        elif figure == "recall":
            hits, relevant, fraction = tp, tp + fn, int(np.sum(y)) / n
            factor = 1.0
        else:
            hits, relevant = tp, tp + fn + fp
            fraction = relevant / n
            # NannyML scales the F1 observations so that their mean is the F1 score.
            factor = relevant / ((fn + fp) * 0.5 + tp) if relevant else np.nan
        share = hits / relevant if relevant else np.nan
        return float(factor * np.sqrt(share * (1 - share)) / np.sqrt(fraction))


def _class_term(y: np.ndarray, p: np.ndarray, figure: str) -> tuple[float, float]:
    """NannyML's multiclass component of one class: (variance of its observations, share of
    rows relevant to it)."""
    tp, fp, fn = _counts(y, p)
    n = y.size
    if figure == "precision":
        relevant, fraction = tp + fp, int(np.sum(p)) / n
    elif figure == "recall":
        relevant, fraction = tp + fn, int(np.sum(y)) / n
    else:
        relevant = tp + fn + fp
        fraction = relevant / n
    share = tp / relevant if relevant else np.nan
    return share * (1 - share), fraction


def _combined(terms: Sequence[tuple[float, float]], k: int) -> float:
    """NannyML's ``sqrt(sum(variance / fraction)) / classes`` (times sqrt of rows); classes
    that no row is relevant to add nothing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        parts = np.array([v / f for v, f in terms if f > 0 and np.isfinite(v)])
    return float(np.sqrt(parts.sum()) / k)


def _auroc_terms(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, float]:
    """NannyML's AUROC components: for each positive row (of the rarer class), the share of
    negatives ranked below it, and the share of positives. Replicates its rank arithmetic
    (including its sort) so that the figures agree."""
    y = truth.astype(np.int64)
    s = score
    if y.mean() > 0.5:
        y = 1 - y
        s = 1 - s
    y = y[np.argsort(s)]
    ranks = np.unique(y * np.arange(y.size))[1:]
    below = ranks - np.arange(ranks.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return below / n_neg, n_pos / y.size


def _leaned_on(reference: pd.DataFrame, target: np.ndarray) -> tuple[str, ...]:
    """The input features the model's calibrated confidence depends on most: importance is
    |Spearman correlation| for numerical features and the correlation ratio (eta) for
    categorical ones; the most important that together carry 80% of the total, at most 5.

    Measured on a seeded sample of at most ``LEANED_SAMPLE`` rows: which features matter most
    is settled long before that, and ranking every feature of a large reference was most of
    the fit's time."""
    if len(reference) > LEANED_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(len(reference), LEANED_SAMPLE, False))
        reference, target = reference.iloc[rows], target[rows]
    importance: dict[str, float] = {}
    for column in reference.columns:
        name = str(column)
        if not name.startswith(FEATURE_PREFIX):
            continue
        values = reference[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            keep = np.isfinite(x)
            value = _spearman(x[keep], target[keep])
        else:
            value = _eta(values, target)
        importance[name[len(FEATURE_PREFIX) :]] = value if np.isfinite(value) else 0.0
    total = sum(importance.values())
    if total <= 0:
        return ()
    chosen: list[str] = []
    carried = 0.0
    for name, value in sorted(importance.items(), key=lambda item: -item[1]):
        if carried >= LEANED_SHARE * total or len(chosen) == LEANED_MAX or value <= 0:
            break
        chosen.append(name)
        carried += value
    return tuple(chosen)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(abs(stats.spearmanr(x, y).statistic))


def _eta(values: pd.Series, y: np.ndarray) -> float:
    """The correlation ratio: the share of ``y``'s spread that the categories explain, as a
    correlation (rows without a category are left out)."""
    codes, _ = pd.factorize(values.astype(object), use_na_sentinel=True)
    keep = codes >= 0
    codes, y = codes[keep], y[keep]
    if y.size < 2:
        return 0.0
    count = np.bincount(codes)
    means = np.bincount(codes, y) / np.maximum(count, 1)
    between = float(np.sum(count * (means - y.mean()) ** 2))
    spread = float(np.sum((y - y.mean()) ** 2))
    return float(np.sqrt(between / spread)) if spread > 0 else 0.0
