"""Judging one window's results by a model's window rules: per (rule, subject), breach, clear or
unknown, with the figure and the bound it was judged against.

Pure and columnar: the job hands over the window's results as tables (``WindowFigures``, plain
pandas, no storage types) and each rule is a few vector operations over the rows of the scopes
it names, whatever the number of nodes and features. A subject is a scope: ``fleet``,
``site:<name>``, ``group:<name>`` or ``node:<name>``. A verdict of "insufficient data" (no drift
verdict, too few labels, a figure the analysis could not compute) is ``unknown``, never a breach.

Performance rules judge the realised figure where labels give one (at least ``min_labels``);
where they do not and the window has an estimate of the figure at that scope, the estimate is
judged with its band and trust verdict (``uncertainty.judge_estimate``) and its observation says
so (``details["estimated"]``). A subject is its scope either way: judged on the estimate in one
window and on labels in the next, it is one subject to M-of-N, grouping and cooldown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from monitor.alerts import rules as r
from monitor.alerts.uncertainty import BREACH, CLEAR, UNKNOWN, judge, judge_estimate

#: Columns of the observations ``evaluate`` returns.
COLUMNS = ("rule", "subject", "state", "value", "bound", "details")

#: Analysis's own minimum of labelled records for a figure (monitor.analysis.performance).
DEFAULT_MIN_LABELS = 30


def subject(scope_kind: str, scope_key: str) -> str:
    """The subject naming a scope: ``fleet``, or ``<kind>:<key>``."""
    return r.FLEET if scope_kind == r.FLEET else f"{scope_kind}:{scope_key}"


Table: TypeAlias = pd.DataFrame | Mapping[str, Any]


@dataclass(frozen=True, eq=False)
class WindowFigures:
    """One window's results as tables, each with ``scope_kind`` and ``scope_key`` columns.

    * ``drift``: a row per scope: ``drifted``, ``prediction_drifted`` (True, False or None: no
      verdict), ``share_drifted`` (NaN: none), ``n_drifted``.
    * ``drift_features``: a row per (scope, feature): ``feature``, ``role``, ``drifted``,
      ``adjusted_p_value``, ``statistic``, ``threshold``.
    * ``quality_features``: a row per (scope, feature): ``feature``, ``role``, and the shares
      ``missing_share``, ``new_category_share``, ``out_of_range_share`` (NaN: not measured).
    * ``performance``: a row per scope: ``status``, ``n_labelled`` and the figures of
      ``monitor.alerts.rules.HIGHER_IS_BETTER + LOWER_IS_BETTER`` (NaN: none).
    * ``estimation``: a row per scope: ``status``, the estimated figures of
      ``monitor.alerts.rules.HIGHER_IS_BETTER`` with their bands ``<figure>_lower`` and
      ``<figure>_upper`` (NaN: none), ``trusted`` (True, False or None), ``trust_evidence``
      and ``trust_reason``; empty when the window has no estimate.
    * ``reference``: the model version's reference figures by metric (performance_drop).
    """

    window_start: datetime
    window_end: datetime
    # Each table is a DataFrame, or its columns by name (numpy arrays or lists, equal lengths).
    drift: Table
    drift_features: Table
    quality_features: Table
    performance: Table
    estimation: Table = field(default_factory=dict)
    reference: Mapping[str, float] = field(default_factory=dict)
    #: Labelled records a figure needs before it is judged at all (the analysis's minimum).
    min_labels: int = DEFAULT_MIN_LABELS
    #: Arrays and cuts made once per window and shared by its rules.
    _cuts: dict[Any, Any] = field(default_factory=dict, repr=False)

    def size(self, table: str) -> int:
        frame = getattr(self, table)
        if isinstance(frame, pd.DataFrame):
            return len(frame)
        return len(next(iter(frame.values()), ()))

    def column(self, table: str, name: str) -> np.ndarray:
        """One column of a table as a numpy array (NaN-able floats for numbers)."""
        key = ("column", table, name)
        if key not in self._cuts:
            frame = getattr(self, table)
            raw = frame.get(name)
            if raw is None:
                values = np.full(self.size(table), np.nan)
            elif name in _OBJECT_COLUMNS:
                values = np.asarray(raw, dtype=object)
            elif isinstance(raw, np.ndarray) and raw.dtype.kind == "f":
                values = raw.astype(np.float64, copy=False)
            else:
                values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
            self._cuts[key] = values
        found: np.ndarray = self._cuts[key]
        return found

    def rows_of(self, table: str, feature: str | None = None) -> np.ndarray:
        """Positions of a table's rows (of one feature's rows), in order."""
        if feature is None:
            return np.arange(self.size(table))
        key = ("by_feature", table)
        if key not in self._cuts:
            codes, names = pd.factorize(self.column(table, "feature"))
            order = np.argsort(codes, kind="stable")  # positions stay in order per feature
            ranked = codes[order]
            wanted = np.arange(len(names))
            lows = np.searchsorted(ranked, wanted, side="left")
            highs = np.searchsorted(ranked, wanted, side="right")
            self._cuts[key] = {
                str(name): order[low:high]
                for name, low, high in zip(names, lows, highs, strict=True)
            }
        found: np.ndarray = self._cuts[key].get(feature, np.array([], dtype=np.int64))
        return found

    def scope_codes(self, table: str) -> np.ndarray:
        """A number per row naming its scope (equal for the rows of one scope)."""
        key = ("scopes", table)
        if key not in self._cuts:
            # From the two key columns' codes (a MultiIndex's factorize builds its tuples in
            # Python: ten times slower on 25,000 rows).
            kind_codes, kinds = pd.factorize(self.column(table, "scope_kind"))
            key_codes, _ = pd.factorize(self.column(table, "scope_key"))
            self._cuts[key] = key_codes.astype(np.int64) * max(len(kinds), 1) + kind_codes
        codes: np.ndarray = self._cuts[key]
        return codes

    def worst_quality(self, figure: str) -> tuple[np.ndarray, np.ndarray]:
        """Per scope, the row of its input feature with the highest ``figure`` (any of them when
        none has one): the rows' positions and their values."""
        key = ("worst", figure)
        if key not in self._cuts:
            table = "quality_features"
            rows = np.flatnonzero(self.column(table, "role") == "feature")
            values = self.column(table, figure)[rows]
            codes = self.scope_codes(table)[rows]
            # The worst row of each scope: sort by (scope, value), keep each scope's last.
            ranked = np.where(np.isnan(values), -np.inf, values)
            order = np.lexsort((ranked, codes))
            last = np.r_[codes[order][1:] != codes[order][:-1], True] if len(order) else order
            picked = order[last.astype(bool)] if len(order) else order
            self._cuts[key] = (rows[picked], values[picked])
        found: tuple[np.ndarray, np.ndarray] = self._cuts[key]
        return found

    def drifted_by_subject(self) -> dict[str, list[str]]:
        """Each subject's drifted input features, by name."""
        if "drifted" not in self._cuts:
            table = "drift_features"
            mask = (self.column(table, "drifted") == True) & (  # noqa: E712 (None: no verdict)
                self.column(table, "role") == "feature"
            )
            rows = np.flatnonzero(mask)
            names: dict[str, list[str]] = {}
            subjects = _subjects(self, table, rows)
            for s, feature in zip(subjects, self.column(table, "feature")[rows], strict=True):
                names.setdefault(s, []).append(str(feature))
            self._cuts["drifted"] = {k: sorted(v) for k, v in names.items()}
        found: dict[str, list[str]] = self._cuts["drifted"]
        return found


#: Columns that hold text or verdicts (True, False, None) rather than numbers.
_OBJECT_COLUMNS = {
    "scope_kind",
    "scope_key",
    "feature",
    "role",
    "status",
    "drifted",
    "prediction_drifted",
    "trusted",
    "trust_evidence",
    "trust_reason",
}


@dataclass
class _Part:
    """One rule's judgement of its subjects in a window."""

    subjects: np.ndarray
    states: np.ndarray
    values: np.ndarray
    bounds: np.ndarray
    #: Details of the breaches (by position); other rows get none.
    details: dict[int, dict[str, Any]] = field(default_factory=dict)


def evaluate(figures: WindowFigures, rules: Sequence[r.Rule]) -> pd.DataFrame:
    """Every (rule, subject) the rules judge in this window: ``rule`` (the index in ``rules``),
    ``subject``, ``state`` (breach, clear, unknown), ``value``, ``bound`` (NaN: none) and
    ``details`` (a dict for breaches, None otherwise)."""
    parts = [
        (index, _one(figures, rule)) for index, rule in enumerate(rules) if not rule.is_node_rule
    ]
    return _combine(parts)


def _combine(parts: Sequence[tuple[int, _Part]]) -> pd.DataFrame:
    parts = [(i, p) for i, p in parts if len(p.subjects)]
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})
    details: list[Any] = []
    for _, part in parts:
        mine: list[Any] = [None] * len(part.subjects)
        for position, found in part.details.items():
            mine[position] = found
        details += mine
    return pd.DataFrame(
        {
            "rule": np.concatenate([np.full(len(p.subjects), i) for i, p in parts]),
            "subject": np.concatenate([p.subjects for _, p in parts]),
            "state": np.concatenate([p.states for _, p in parts]),
            "value": np.concatenate([p.values for _, p in parts]),
            "bound": np.concatenate([p.bounds for _, p in parts]),
            "details": details,
        }
    )


def _one(figures: WindowFigures, rule: r.Rule) -> _Part:
    kind, params = rule.kind, rule.params
    if kind in (r.SCOPE_DRIFT, r.PREDICTION_DRIFT, r.SHARE_DRIFTED):
        table = "drift"
        rows = _in_scope(figures, table, figures.rows_of(table), rule)
        share = figures.column(table, "share_drifted")[rows]
        if kind == r.SHARE_DRIFTED:
            bound = float(params["min_share"])
            states = _compare(share, share >= bound)
            return _Part(_subjects(figures, table, rows), states, share, np.full(len(rows), bound))
        column = "drifted" if kind == r.SCOPE_DRIFT else "prediction_drifted"
        states = _verdicts(figures.column(table, column)[rows])
        part = _Part(_subjects(figures, table, rows), states, share, np.full(len(rows), np.nan))
        if kind == r.SCOPE_DRIFT:
            names = figures.drifted_by_subject() if (states == BREACH).any() else {}
            part.details = {
                int(i): {"drifted_features": names.get(part.subjects[i], [])}
                for i in np.flatnonzero(states == BREACH)
            }
        return part
    if kind == r.FEATURE_DRIFT:
        table = "drift_features"
        feature = str(params["feature"])
        rows = _in_scope(figures, table, figures.rows_of(table, feature), rule)
        states = _verdicts(figures.column(table, "drifted")[rows])
        part = _Part(
            _subjects(figures, table, rows),
            states,
            figures.column(table, "adjusted_p_value")[rows],
            figures.column(table, "threshold")[rows],
        )
        part.details = {
            int(i): {"feature": feature, "drifted_features": [feature]}
            for i in np.flatnonzero(states == BREACH)
        }
        return part
    if kind in (r.PERFORMANCE, r.PERFORMANCE_DROP):
        return _performance(figures, rule)
    if kind == r.QUALITY:
        return _quality(figures, rule)
    raise ValueError(f"not a window rule: {kind}")


def _performance(figures: WindowFigures, rule: r.Rule) -> _Part:
    metric = str(rule.params["metric"])
    table = "performance"
    rows = _in_scope(figures, table, figures.rows_of(table), rule)
    worse_up = r.lower_is_better(metric)
    if rule.kind == r.PERFORMANCE:
        bound = float(rule.params["above" if worse_up else "below"])
        reference = None
    else:
        reference = figures.reference.get(metric)
        drop = float(rule.params["drop"])
        bound = (
            np.nan if reference is None else (reference + drop if worse_up else reference - drop)
        )
    value = figures.column(table, metric)[rows]
    n = figures.column(table, "n_labelled")[rows]
    judged = judge(
        metric, value, n, bound, confidence=r.confidence(rule), min_labels=figures.min_labels
    )
    part = _Part(_subjects(figures, table, rows), judged.states, value, np.full(len(rows), bound))
    part.details = {
        int(i): _clean(
            {
                "metric": metric,
                "n_labelled": n[i],
                "interval": [judged.low[i], judged.high[i]],
                "confidence": r.confidence(rule),
                "reference": reference,
            }
        )
        for i in np.flatnonzero(judged.states == BREACH)
    }
    if r.uses_estimates(rule) and figures.size("estimation") and metric in r.HIGHER_IS_BETTER:
        # Labels decide where enough of them gave a figure; elsewhere the estimate does.
        realised = ~np.isnan(value) & (n >= max(figures.min_labels, 1))
        _with_estimates(figures, rule, part, realised, metric, bound, reference)
    return part


def _with_estimates(
    figures: WindowFigures,
    rule: r.Rule,
    part: _Part,
    realised: np.ndarray,
    metric: str,
    bound: float,
    reference: float | None,
) -> None:
    """Judge the estimate of ``metric`` for the part's subjects without a realised figure (and
    the estimated scopes it lacks), in place."""
    table = "estimation"
    rows = _in_scope(figures, table, figures.rows_of(table), rule)
    rows = rows[~np.isnan(figures.column(table, metric)[rows])]
    if not len(rows):
        return
    subjects = _subjects(figures, table, rows)
    # Where each estimated scope sits among the realised rows (-1: it has none).
    at = pd.Index(part.subjects).get_indexer(subjects)
    known = np.zeros(len(rows), dtype=bool)
    known[at >= 0] = realised[at[at >= 0]]
    rows, subjects, at = rows[~known], subjects[~known], at[~known]
    if not len(rows):
        return
    value = figures.column(table, metric)[rows]
    trusted = figures.column(table, "trusted")[rows]
    judged = judge_estimate(
        metric,
        value,
        figures.column(table, f"{metric}_lower")[rows],
        figures.column(table, f"{metric}_upper")[rows],
        trusted,
        bound,
    )
    new = at < 0
    # Positions in the part of each judged estimate: the realised row it replaces, or a new one.
    placed = at.copy()
    placed[new] = len(part.subjects) + np.arange(int(new.sum()))
    part.subjects = np.concatenate([part.subjects, subjects[new]])
    part.states = np.concatenate([part.states, judged.states[new]])
    part.values = np.concatenate([part.values, value[new]])
    part.bounds = np.concatenate([part.bounds, np.full(int(new.sum()), bound)])
    replaced = ~new
    part.states[at[replaced]] = judged.states[replaced]
    part.values[at[replaced]] = value[replaced]
    for i in at[replaced].tolist():
        part.details.pop(i, None)
    # Details of the breaches, from plain Python values taken once (not a cleaning per row).
    hits = np.flatnonzero(judged.states == BREACH)
    if not len(hits):
        return
    lows, highs = _plain(judged.low[hits]), _plain(judged.high[hits])
    verdicts = [None if t is None else bool(t) for t in trusted[hits].tolist()]
    evidence = _texts(figures.column(table, "trust_evidence")[rows][hits])
    reasons = _texts(figures.column(table, "trust_reason")[rows][hits])
    ref = None if reference is None else float(reference)
    for j, at_ in enumerate(placed[hits].tolist()):
        part.details[at_] = {
            "metric": metric,
            "estimated": True,
            "band": [lows[j], highs[j]],
            "trusted": verdicts[j],
            "trust_evidence": evidence[j],
            "trust_reason": reasons[j],
            "reference": ref,
        }


def _plain(values: np.ndarray) -> list[float | None]:
    return [None if v != v else v for v in values.astype(np.float64).tolist()]


def _texts(values: np.ndarray) -> list[str | None]:
    return [v if isinstance(v, str) else None for v in values.tolist()]


def _quality(figures: WindowFigures, rule: r.Rule) -> _Part:
    figure = str(rule.params["figure"])
    bound = float(rule.params["above"])
    table = "quality_features"
    wanted = rule.params.get("feature")
    if wanted is None:
        # Any feature: the worst one per scope.
        worst, values = figures.worst_quality(figure)
        keep = _scope_mask(figures, table, worst, rule)
        rows, value = worst[keep], values[keep]
    else:
        rows = _in_scope(figures, table, figures.rows_of(table, str(wanted)), rule)
        value = figures.column(table, figure)[rows]
    states = _compare(value, value > bound)
    part = _Part(_subjects(figures, table, rows), states, value, np.full(len(rows), bound))
    features = figures.column(table, "feature")[rows]
    part.details = {
        int(i): {"figure": figure, "feature": str(features[i])}
        for i in np.flatnonzero(states == BREACH)
    }
    return part


# --- helpers ------------------------------------------------------------------------------------


def _scope_mask(figures: WindowFigures, table: str, rows: np.ndarray, rule: r.Rule) -> np.ndarray:
    """Which of these rows belong to the scopes a rule names."""
    kinds = figures.column(table, "scope_kind")[rows]
    if rule.scope == r.FLEET:
        return np.asarray(kinds == r.FLEET, dtype=bool)
    if rule.scope == r.EACH_NODE:
        return np.asarray(kinds == r.NODE, dtype=bool)
    mask = np.asarray(kinds == rule.scope, dtype=bool)
    if rule.scope_key is not None:
        mask &= figures.column(table, "scope_key")[rows] == rule.scope_key
    return mask


def _in_scope(figures: WindowFigures, table: str, rows: np.ndarray, rule: r.Rule) -> np.ndarray:
    """The positions among ``rows`` of the scopes a rule names."""
    if not len(rows):
        return rows
    return rows[_scope_mask(figures, table, rows, rule)]


def _subjects(figures: WindowFigures, table: str, rows: np.ndarray) -> np.ndarray:
    if table in ("drift", "performance", "estimation"):
        # A row per scope: every subject once for the window, then picked.
        key = ("subjects", table)
        if key not in figures._cuts:
            every = np.arange(figures.size(table))
            figures._cuts[key] = _subject_names(figures, table, every)
        named: np.ndarray = figures._cuts[key]
        return named[rows]
    return _subject_names(figures, table, rows)


def _subject_names(figures: WindowFigures, table: str, rows: np.ndarray) -> np.ndarray:
    kinds = figures.column(table, "scope_kind")[rows]
    keys = figures.column(table, "scope_key")[rows]
    if not len(rows):
        return np.array([], dtype=object)
    return np.where(kinds == r.FLEET, r.FLEET, kinds + ":" + keys.astype(str).astype(object))


def _floats(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _verdicts(values: np.ndarray) -> np.ndarray:
    """True/False/None verdicts as breach/clear/unknown."""
    states = np.full(len(values), UNKNOWN, dtype=object)
    states[values == True] = BREACH  # noqa: E712 (element-wise, None stays unknown)
    states[values == False] = CLEAR  # noqa: E712
    return states


def _compare(value: np.ndarray, breached: np.ndarray) -> np.ndarray:
    states = np.where(breached, BREACH, CLEAR).astype(object)
    states[np.isnan(value)] = UNKNOWN
    return states


def _clean(details: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe: NaN as None, numpy numbers as Python's."""

    def plain(value: Any) -> Any:
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and value != value:
            return None
        return value

    return {k: plain(v) for k, v in details.items()}


# --- Node rules ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NodeFigures:
    """Every live node's health now, one row per node: ``name``, ``site``, ``group``,
    ``heartbeat_age_seconds`` (NaN: never sent one), ``clock_skew_age_seconds`` (NaN: no
    implausible record time seen), ``clock_skew_seconds``, ``lost`` (records lost since the
    previous check, NaN: unknown), ``latency_p95_ms`` (NaN: not reported) and ``stale`` (its
    health figures are older than the node's offline limit: unknown)."""

    nodes: pd.DataFrame
    #: How long after its last implausible record time a node still shows clock skew.
    clock_skew_for_seconds: float = 3600.0


def evaluate_nodes(figures: NodeFigures, rules: Sequence[r.Rule]) -> pd.DataFrame:
    """Per (node rule, node subject) its state now, as ``evaluate`` returns them."""
    parts: list[tuple[int, _Part]] = []
    for index, rule in enumerate(rules):
        if not rule.is_node_rule:
            continue
        table = figures.nodes
        if rule.scope == r.NODE:
            table = table[(table["name"] == rule.scope_key).to_numpy()]
        elif rule.scope in (r.SITE, r.GROUP) and rule.scope_key is not None:
            table = table[(table[rule.scope] == rule.scope_key).to_numpy()]
        stale = table["stale"].to_numpy(dtype=bool)
        if rule.kind == r.NODE_OFFLINE:
            value = _floats(table, "heartbeat_age_seconds")
            bound = float(rule.params["for_seconds"])
            states = _compare(value, value > bound)
        elif rule.kind == r.CLOCK_SKEW:
            age = _floats(table, "clock_skew_age_seconds")
            value = _floats(table, "clock_skew_seconds")
            bound = figures.clock_skew_for_seconds
            states = np.where(age <= bound, BREACH, CLEAR).astype(object)
        else:
            column, name = (
                ("lost", "above") if rule.kind == r.SDK_DROPS else ("latency_p95_ms", "above_ms")
            )
            value = _floats(table, column)
            bound = float(rule.params[name])
            states = _compare(value, value > bound)
            states[stale] = UNKNOWN
        subjects = np.asarray(
            ["node:" + str(name) for name in table["name"].to_numpy(dtype=object)], dtype=object
        )
        parts.append((index, _Part(subjects, states, value, np.full(len(table), bound))))
    return _combine(parts)
