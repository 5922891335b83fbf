"""Judging one window's results by a model's window rules: per (rule, subject), breach, clear or
unknown, with the figure and the bound it was judged against.

Pure and columnar: the job hands over the window's results as tables (``WindowFigures``, plain
pandas, no storage types) and each rule is a few vector operations over the rows of the scopes
it names, whatever the number of nodes and features. A subject is a scope: ``fleet``,
``site:<name>``, ``group:<name>`` or ``node:<name>``. A verdict of "insufficient data" (no drift
verdict, too few labels, a figure the analysis could not compute) is ``unknown``, never a breach.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from monitor.alerts import rules as r
from monitor.alerts.uncertainty import BREACH, CLEAR, UNKNOWN, judge

#: Columns of the observations ``evaluate`` returns.
COLUMNS = ("rule", "subject", "state", "value", "bound", "details")

#: Analysis's own minimum of labelled records for a figure (monitor.analysis.performance).
DEFAULT_MIN_LABELS = 30


def subject(scope_kind: str, scope_key: str) -> str:
    """The subject naming a scope: ``fleet``, or ``<kind>:<key>``."""
    return r.FLEET if scope_kind == r.FLEET else f"{scope_kind}:{scope_key}"


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
    * ``reference``: the model version's reference figures by metric (performance_drop).
    """

    window_start: datetime
    window_end: datetime
    drift: pd.DataFrame
    drift_features: pd.DataFrame
    quality_features: pd.DataFrame
    performance: pd.DataFrame
    reference: Mapping[str, float] = field(default_factory=dict)
    #: Labelled records a figure needs before it is judged at all (the analysis's minimum).
    min_labels: int = DEFAULT_MIN_LABELS


def empty_table(*columns: str) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in ("scope_kind", "scope_key", *columns)}
    )


def evaluate(figures: WindowFigures, rules: Sequence[r.Rule]) -> pd.DataFrame:
    """Every (rule, subject) the rules judge in this window: ``rule`` (the index in ``rules``),
    ``subject``, ``state`` (breach, clear, unknown), ``value``, ``bound`` (NaN: none) and
    ``details`` (a dict for breaches and unknowns, None for clears)."""
    parts = [
        _one(figures, index, rule) for index, rule in enumerate(rules) if not rule.is_node_rule
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)


def _one(figures: WindowFigures, index: int, rule: r.Rule) -> pd.DataFrame:
    kind, params = rule.kind, rule.params
    if kind in (r.SCOPE_DRIFT, r.PREDICTION_DRIFT, r.SHARE_DRIFTED):
        rows = _in_scope(figures.drift, rule)
        if kind == r.SHARE_DRIFTED:
            value = _floats(rows, "share_drifted")
            bound = float(params["min_share"])
            states = _compare(value, bound, value >= bound)
            return _frame(index, rows, states, value, np.full(len(rows), bound))
        column = "drifted" if kind == r.SCOPE_DRIFT else "prediction_drifted"
        states = _verdicts(rows[column])
        value = _floats(rows, "share_drifted")
        frame = _frame(index, rows, states, value, np.full(len(rows), np.nan))
        if kind == r.SCOPE_DRIFT:
            frame["details"] = _with_drifted_features(figures, frame)
        return frame
    if kind == r.FEATURE_DRIFT:
        features = figures.drift_features
        rows = _in_scope(features[features["feature"] == params["feature"]], rule)
        states = _verdicts(rows["drifted"])
        value = _floats(rows, "adjusted_p_value")
        frame = _frame(index, rows, states, value, _floats(rows, "threshold"))
        frame["details"] = [
            None
            if s == CLEAR
            else {"feature": params["feature"], "drifted_features": [params["feature"]]}
            for s in states
        ]
        return frame
    if kind in (r.PERFORMANCE, r.PERFORMANCE_DROP):
        return _performance(figures, index, rule)
    if kind == r.QUALITY:
        return _quality(figures, index, rule)
    raise ValueError(f"not a window rule: {kind}")


def _performance(figures: WindowFigures, index: int, rule: r.Rule) -> pd.DataFrame:
    metric = str(rule.params["metric"])
    rows = _in_scope(figures.performance, rule)
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
    value = _floats(rows, metric)
    n = _floats(rows, "n_labelled")
    judged = judge(
        metric,
        value,
        n,
        bound,
        confidence=r.confidence(rule),
        min_labels=figures.min_labels,
    )
    frame = _frame(index, rows, judged.states, value, np.full(len(rows), bound))
    frame["details"] = [
        None
        if state == CLEAR
        else _clean(
            {
                "metric": metric,
                "n_labelled": nl,
                "interval": [lo, hi],
                "confidence": r.confidence(rule),
                "reference": reference,
            }
        )
        for state, nl, lo, hi in zip(judged.states, n, judged.low, judged.high, strict=True)
    ]
    return frame


def _quality(figures: WindowFigures, index: int, rule: r.Rule) -> pd.DataFrame:
    figure = str(rule.params["figure"])
    bound = float(rule.params["above"])
    features = figures.quality_features
    features = features[features["role"] == "feature"] if "role" in features else features
    wanted = rule.params.get("feature")
    if wanted is not None:
        features = features[features["feature"] == wanted]
    rows = _in_scope(features, rule)
    if not len(rows):
        return _frame(index, rows, np.array([], dtype=object), np.array([]), np.array([]))
    # Any feature: the worst one per scope.
    values = pd.to_numeric(rows[figure], errors="coerce").astype(np.float64)
    keyed = pd.DataFrame(
        {
            "scope_kind": rows["scope_kind"].to_numpy(),
            "scope_key": rows["scope_key"].to_numpy(),
            "feature": rows["feature"].to_numpy(),
            "value": values.to_numpy(),
        }
    )
    worst_at = (
        keyed["value"]
        .fillna(-np.inf)
        .groupby([keyed["scope_kind"], keyed["scope_key"]], sort=False)
        .idxmax()
    )
    worst = keyed.loc[worst_at.to_numpy()].reset_index(drop=True)
    value = worst["value"].to_numpy()
    states = _compare(value, bound, value > bound)
    frame = _frame(index, worst, states, value, np.full(len(worst), bound))
    frame["details"] = [
        None if s == CLEAR else {"figure": figure, "feature": f}
        for s, f in zip(states, worst["feature"], strict=True)
    ]
    return frame


# --- helpers ------------------------------------------------------------------------------------


def _in_scope(table: pd.DataFrame, rule: r.Rule) -> pd.DataFrame:
    """The rows of the scopes a rule names."""
    if not len(table):
        return table
    kinds = table["scope_kind"]
    if rule.scope == r.FLEET:
        mask = kinds == r.FLEET
    elif rule.scope == r.EACH_NODE:
        mask = kinds == r.NODE
    else:
        mask = kinds == rule.scope
        if rule.scope_key is not None:
            mask &= table["scope_key"] == rule.scope_key
    return table[mask.to_numpy()]


def _floats(rows: pd.DataFrame, column: str) -> np.ndarray:
    if column not in rows:
        return np.full(len(rows), np.nan)
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _verdicts(values: pd.Series) -> np.ndarray:
    """True/False/None verdicts as breach/clear/unknown."""
    v = values.to_numpy(dtype=object)
    states = np.full(len(v), UNKNOWN, dtype=object)
    states[v == True] = BREACH  # noqa: E712 (element-wise, None stays unknown)
    states[v == False] = CLEAR  # noqa: E712
    return states


def _compare(value: np.ndarray, bound: float, breached: np.ndarray) -> np.ndarray:
    states = np.where(breached, BREACH, CLEAR).astype(object)
    states[np.isnan(value)] = UNKNOWN
    return states


def _frame(
    index: int, rows: pd.DataFrame, states: np.ndarray, value: np.ndarray, bound: np.ndarray
) -> pd.DataFrame:
    kinds = rows["scope_kind"].to_numpy(dtype=object)
    keys = rows["scope_key"].to_numpy(dtype=object)
    subjects = np.where(kinds == r.FLEET, r.FLEET, kinds + ":" + keys) if len(rows) else kinds
    return pd.DataFrame(
        {
            "rule": np.full(len(rows), index),
            "subject": subjects,
            "state": states,
            "value": value,
            "bound": bound,
            "details": [None if s == CLEAR else {} for s in states],
        }
    )


def _with_drifted_features(figures: WindowFigures, frame: pd.DataFrame) -> list[Any]:
    """Each breaching or unknown subject's drifted features (input features, by name)."""
    wanted = set(frame["subject"][frame["state"] != CLEAR])
    if not wanted:
        return list(frame["details"])
    features = figures.drift_features
    drifted = features[
        (features["drifted"].to_numpy(dtype=object) == True)  # noqa: E712 (None is not drifted)
        & (features["role"] == "feature").to_numpy()
    ]
    names: dict[str, list[str]] = {}
    if len(drifted):
        kinds = drifted["scope_kind"].to_numpy(dtype=object)
        subjects = np.where(
            kinds == r.FLEET, r.FLEET, kinds + ":" + drifted["scope_key"].to_numpy(dtype=object)
        )
        for s, feature in zip(subjects, drifted["feature"], strict=True):
            if s in wanted:
                names.setdefault(s, []).append(str(feature))
    return [
        None if state == CLEAR else {"drifted_features": sorted(names.get(s, []))}
        for s, state in zip(frame["subject"], frame["state"], strict=True)
    ]


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
    parts = []
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
            states = _compare(value, bound, value > bound)
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
            states = _compare(value, bound, value > bound)
            states[stale] = UNKNOWN
        kinds = np.full(len(table), r.NODE, dtype=object)
        rows = pd.DataFrame(
            {"scope_kind": kinds, "scope_key": table["name"].to_numpy(dtype=object)}
        )
        parts.append(_frame(index, rows, states, value, np.full(len(table), bound)))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in COLUMNS})
    return pd.concat(parts, ignore_index=True)
