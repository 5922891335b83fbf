"""Alert evaluation: a window's results (or node health now) -> observations -> alert transitions,
each recorded as an event, queued as a signed webhook and, on firing, starting retrain hooks.

``evaluate_window`` runs inside the transaction that stores the window's results (the worker
calls it right after ``results.save_window``): the results, the observations, the alerts, their
events and the outbox rows commit together or not at all. ``evaluate_nodes`` is its own
scheduled job for node rules; its "windows" are ticks of the clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine

from monitor.alerts import payload as payloads
from monitor.alerts.evaluate import (
    DEFAULT_MIN_LABELS,
    NodeFigures,
    WindowFigures,
    evaluate,
)
from monitor.alerts.evaluate import (
    evaluate_nodes as judge_nodes,
)
from monitor.alerts.rules import (
    FEATURE_DRIFT,
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    PERFORMANCE_DROP,
    PREDICTION_DRIFT,
    SCOPE_DRIFT,
    SHARE_DRIFTED,
    Rule,
    uses_estimates,
)
from monitor.alerts.rules import PERFORMANCE as PERFORMANCE_KIND
from monitor.alerts.rules import QUALITY as QUALITY_KIND
from monitor.alerts.state import (
    FIRED,
    RESOLVED,
    History,
    OpenAlert,
    Transition,
    group_of,
    transitions,
)
from monitor.alerts.uncertainty import BREACH, CLEAR
from monitor.jobs.health import LOSS_REASONS
from monitor.schema import (
    DRIFT,
    ESTIMATION,
    PERFORMANCE,
    QUALITY,
    SCOPE_ROWS,
    ResultTable,
)
from monitor.storage import alerts as stored
from monitor.storage import registry, results
from monitor.storage.alert_rules import list_rules
from monitor.storage.engine import begin_write
from monitor.storage.nodes import Node, list_nodes
from monitor.storage.results import KindResults

log = logging.getLogger(__name__)

#: Subjects an alert's stored details describe one by one (the rest are counted).
DETAILED_SUBJECTS = 50


@dataclass(frozen=True)
class Change:
    """One transition that was recorded: the alert, the event and the rule."""

    rule: str
    alert_id: int
    event: stored.AlertEvent
    text: str


def evaluate_window(
    conn: Connection,
    model_id: int,
    window_start: datetime,
    *,
    now: datetime,
    min_labels: int = DEFAULT_MIN_LABELS,
    found: Mapping[str, KindResults] | None = None,
    window_end: datetime | None = None,
    model_version_id: int | None = None,
) -> list[Change]:
    """Judge the window's results by the model's enabled window rules and record what follows,
    in ``conn``'s transaction; the transitions recorded.

    ``found``: the results just stored by ``results.save_window`` (the worker passes them, with
    ``window_end`` and the version they were judged against), judged as they are rather than
    read back; only the rules of the kinds they hold are judged (a refresh of performance
    judges performance rules). Performance rules read both the realised and the estimated
    figures: the one of the two that ``found`` lacks is read back from what is stored for the
    window. Without ``found``, everything stored for the window is read back through
    ``results.window``."""
    rules = [
        rule
        for rule in list_rules(conn, model_id=model_id)
        if rule.enabled and not rule.is_node_rule
    ]
    if found is not None:
        rules = [rule for rule in rules if _reads(rule) & found.keys()]
    if not rules:
        return []
    needs_reference = any(rule.kind == PERFORMANCE_DROP for rule in rules)
    if found is None or window_end is None:
        stored_results = results.window(conn, model_id, window_start)
        if stored_results is None:
            return []
        version_id = _version_of(stored_results)
        figures = figures_of(
            stored_results,
            reference=_reference_figures(conn, model_id, version_id) if needs_reference else {},
            min_labels=min_labels,
        )
    else:
        wanted = set().union(*(_reads(rule) for rule in rules))
        found = {**found, **_stored_kinds(conn, model_id, window_start, wanted - found.keys())}
        figures = figures_from(
            found,
            window_start,
            window_end,
            reference=(
                _reference_figures(conn, model_id, model_version_id) if needs_reference else {}
            ),
            min_labels=min_labels,
        )
    observed = evaluate(figures, rules)
    grouped = any(rule.group_by in ("site", "group") for rule in rules)
    sites, groups = stored.node_places(conn) if grouped else ({}, {})
    return _judge(
        conn,
        rules,
        model_id,
        figures.window_start,
        figures.window_end,
        observed,
        sites,
        groups,
        now,
    )


def evaluate_nodes(
    engine: Engine,
    *,
    now: datetime,
    offline_after: timedelta,
    tick: timedelta = timedelta(seconds=30),
    clock_skew_for: timedelta = timedelta(hours=1),
) -> int:
    """Judge every enabled node rule on the fleet's health now (the tick ``now`` falls in is
    the rule's window); returns how many transitions it recorded. Heartbeats older than
    ``offline_after`` leave a node's drops and latency unknown."""
    from monitor.storage import health

    with begin_write(engine) as conn:
        rules = [r for r in list_rules(conn) if r.enabled and r.is_node_rule]
        if not rules:
            return 0
        nodes = [n for n in list_nodes(conn) if n.revoked_at is None and n.role == "node"]
        checked = health.health_by_node(conn)
        frame = _node_frame(nodes, checked, now, offline_after)
        observed = judge_nodes(
            NodeFigures(frame, clock_skew_for.total_seconds()),
            rules,
        )
        sites, groups = _memberships(nodes)
        seconds = max(int(tick.total_seconds()), 1)
        epoch = int(now.timestamp()) // seconds * seconds
        start = datetime.fromtimestamp(epoch, UTC)
        changes = _judge(
            conn,
            rules,
            None,
            start,
            start + timedelta(seconds=seconds),
            observed,
            sites,
            groups,
            now,
        )
    return len(changes)


# --- Turning results into tables ----------------------------------------------------------------


def figures_of(
    found: results.WindowResults,
    *,
    reference: Mapping[str, float] | None = None,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> WindowFigures:
    """A window's stored results as the tables the pure evaluation reads."""
    drift = _table([s.result for s in found.drift], _DRIFT_COLUMNS)
    drift_features = _table(
        [f for rows in found.drift_features.values() for f in rows], _DRIFT_FEATURE_COLUMNS
    )
    quality_features = _with_new_category_share(
        _table(
            [f for rows in found.quality_features.values() for f in rows],
            _QUALITY_FEATURE_COLUMNS,
        )
    )
    performance = _table([s.result for s in found.performance], _PERFORMANCE_COLUMNS)
    estimation = _table([s.result for s in found.estimation], _ESTIMATION_COLUMNS)
    return WindowFigures(
        window_start=found.window_start,
        window_end=found.window_end,
        drift=drift,
        drift_features=drift_features,
        quality_features=quality_features,
        performance=performance,
        estimation=estimation,
        reference=dict(reference or {}),
        min_labels=min_labels,
    )


#: Which kind of results each window rule reads.
_RESULT_OF = {
    SCOPE_DRIFT: DRIFT,
    FEATURE_DRIFT: DRIFT,
    SHARE_DRIFTED: DRIFT,
    PREDICTION_DRIFT: DRIFT,
    PERFORMANCE_KIND: PERFORMANCE,
    PERFORMANCE_DROP: PERFORMANCE,
    QUALITY_KIND: QUALITY,
}


def _reads(rule: Rule) -> set[str]:
    """The kinds of results a window rule judges: a performance rule reads the estimate too."""
    kind = _RESULT_OF[rule.kind]
    return {kind, ESTIMATION} if uses_estimates(rule) else {kind}


def _stored_kinds(
    conn: Connection, model_id: int, window_start: datetime, kinds: set[str]
) -> dict[str, KindResults]:
    """The scope rows stored for the window of these kinds (performance, estimation: the
    kinds performance rules read beside the ones just computed); a kind without rows is left
    out."""
    out: dict[str, KindResults] = {}
    for kind in sorted(kinds & {PERFORMANCE, ESTIMATION}):
        rows = results.scopes(conn, model_id, kind, start=window_start, end=window_start + _INSTANT)
        if rows:
            out[kind] = KindResults(
                ResultTable.from_rows(SCOPE_ROWS[kind], [row.result for row in rows])
            )
    return out


#: The smallest step of a stored time: windows starting in [start, start + _INSTANT) are one.
_INSTANT = timedelta(microseconds=1)

_DRIFT_COLUMNS = (
    "scope_kind",
    "scope_key",
    "drifted",
    "prediction_drifted",
    "share_drifted",
    "n_drifted",
)
_DRIFT_FEATURE_COLUMNS = (
    "scope_kind",
    "scope_key",
    "feature",
    "role",
    "drifted",
    "adjusted_p_value",
    "statistic",
    "threshold",
)
_QUALITY_FEATURE_COLUMNS = (
    "scope_kind",
    "scope_key",
    "feature",
    "role",
    "n_rows",
    "missing_share",
    "out_of_range_share",
    "n_new_category_rows",
)
_PERFORMANCE_COLUMNS = (
    "scope_kind",
    "scope_key",
    "status",
    "n_labelled",
    *HIGHER_IS_BETTER,
    *LOWER_IS_BETTER,
)
_ESTIMATION_COLUMNS = (
    "scope_kind",
    "scope_key",
    "status",
    *(f"{m}{end}" for m in HIGHER_IS_BETTER for end in ("", "_lower", "_upper")),
    "trusted",
    "trust_evidence",
    "trust_reason",
)


def figures_from(
    found: Mapping[str, KindResults],
    window_start: datetime,
    window_end: datetime,
    *,
    reference: Mapping[str, float] | None = None,
    min_labels: int = DEFAULT_MIN_LABELS,
) -> WindowFigures:
    """The tables the pure evaluation reads, straight from results as analysis hands them to
    ``results.save_window`` (columns, no row objects: a 1,000-node window has 25,000 feature
    rows per kind). Kinds that are absent (estimation among them) give empty tables."""

    def columns(table: Any, names: Sequence[str]) -> dict[str, Any]:
        if table is None or not len(table):
            return {c: np.array([], dtype=object) for c in names}
        return {c: table.columns[c] for c in names}

    drift = found.get(DRIFT)
    quality = found.get(QUALITY)
    performance = found.get(PERFORMANCE)
    estimation = found.get(ESTIMATION)
    quality_features = columns(quality.features if quality else None, _QUALITY_FEATURE_COLUMNS)
    return WindowFigures(
        window_start=window_start,
        window_end=window_end,
        drift=columns(drift.scopes if drift else None, _DRIFT_COLUMNS),
        drift_features=columns(drift.features if drift else None, _DRIFT_FEATURE_COLUMNS),
        quality_features=_with_new_category_share(quality_features),
        performance=columns(performance.scopes if performance else None, _PERFORMANCE_COLUMNS),
        estimation=columns(estimation.scopes if estimation else None, _ESTIMATION_COLUMNS),
        reference=dict(reference or {}),
        min_labels=min_labels,
    )


def _with_new_category_share(table: Any) -> Any:
    """The share of a (scope, feature)'s rows with a category the reference never had."""
    rows = _floats(table["n_rows"])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = _floats(table["n_new_category_rows"]) / np.where(rows > 0, rows, np.nan)
    table["new_category_share"] = share
    return table


def _floats(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(np.float64)
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _version_of(found: results.WindowResults) -> int | None:
    version_ids = [s.model_version_id for s in found.performance if s.scope_kind == "fleet"]
    version_ids += [s.model_version_id for s in found.drift if s.scope_kind == "fleet"]
    return next((v for v in version_ids if v is not None), None)


def _table(rows: Sequence[Any], columns: Sequence[str]) -> pd.DataFrame:
    # Column by column from the rows' attributes: no per-row dict.
    return pd.DataFrame(
        {c: pd.Series([getattr(row, c) for row in rows], dtype=object) for c in columns}
    )


def _memberships(nodes: Sequence[Node]) -> tuple[dict[str, str | None], dict[str, str | None]]:
    return {n.name: n.site for n in nodes}, {n.name: n.group_name for n in nodes}


def _node_frame(
    nodes: Sequence[Node], checked: Mapping[str, Any], now: datetime, offline_after: timedelta
) -> pd.DataFrame:
    def age(moment: datetime | None) -> float:
        return np.nan if moment is None else (now - moment).total_seconds()

    lost = []
    for node in nodes:
        row = checked.get(node.name)
        total = None if row is None else sum(row.dropped.get(reason, 0) for reason in LOSS_REASONS)
        lost.append(_LOST.since_last(node.id, total))
    heard = [age(n.last_heartbeat_at) for n in nodes]
    return pd.DataFrame(
        {
            "name": [n.name for n in nodes],
            "site": [n.site for n in nodes],
            "group": [n.group_name for n in nodes],
            "heartbeat_age_seconds": np.asarray(heard, dtype=np.float64),
            "clock_skew_age_seconds": np.asarray(
                [age(n.clock_skew_at) for n in nodes], dtype=np.float64
            ),
            "clock_skew_seconds": np.asarray(
                [np.nan if n.clock_skew_seconds is None else n.clock_skew_seconds for n in nodes],
                dtype=np.float64,
            ),
            "lost": np.asarray(lost, dtype=np.float64),
            "latency_p95_ms": np.asarray(
                [
                    np.nan
                    if checked.get(n.name) is None or checked[n.name].latency_p95_ms is None
                    else checked[n.name].latency_p95_ms
                    for n in nodes
                ],
                dtype=np.float64,
            ),
            # Never heard from, or not for longer than the offline limit: stale figures.
            "stale": ~(np.asarray(heard, dtype=np.float64) <= offline_after.total_seconds()),
        }
    )


class _LostCounter:
    """A node's SDK loss counters are totals since it started: the records lost since this
    process last looked are the difference (a smaller total means the SDK restarted: all of
    it is new). The first look at a node has nothing to compare with: unknown."""

    def __init__(self) -> None:
        self._seen: dict[int, int] = {}
        self._lock = threading.Lock()

    def since_last(self, node_id: int, total: int | None) -> float:
        if total is None:
            return np.nan
        with self._lock:
            before = self._seen.get(node_id)
            self._seen[node_id] = total
        if before is None:
            return np.nan
        return float(total - before if total >= before else total)


_LOST = _LostCounter()


# --- The reference figure of performance_drop ---------------------------------------------------

_REFERENCE_LOCK = threading.Lock()
_REFERENCE_FIGURES: dict[tuple[int, datetime | None], dict[str, float]] = {}


def _reference_figures(conn: Connection, model_id: int, version_id: int | None) -> dict[str, float]:
    """The performance figures of the version the window was judged against: measured on its
    reference data when that holds labels and predictions, else its registered metrics (or
    its card's); empty when it has none."""
    if version_id is None:
        return {}
    version = next((v for v in registry.versions(conn, model_id) if v.id == version_id), None)
    if version is None:
        return {}
    key = (version.id, version.registered_at)
    with _REFERENCE_LOCK:
        if key in _REFERENCE_FIGURES:
            return _REFERENCE_FIGURES[key]
    figures = _measured(conn, version) or _registered(version)
    with _REFERENCE_LOCK:
        _REFERENCE_FIGURES[key] = figures
    return figures


def _measured(conn: Connection, version: registry.Version) -> dict[str, float]:
    from monitor.analysis import analyse_performance
    from monitor.jobs.reference import ReferenceCache
    from monitor.schema import PREDICTION, ROW_KEY

    reference = ReferenceCache(size=1).get(conn, version)
    if reference is None:
        return {}
    frame = reference.frame
    if "label" not in frame.columns or PREDICTION not in frame.columns:
        return {}
    frame = frame.assign(**{ROW_KEY: np.arange(len(frame))})
    labels = pd.Series(frame["label"].to_numpy(), index=frame[ROW_KEY].to_numpy())
    schema = reference.schema
    card = reference.card
    if schema is not None:
        task, classes, positive = schema.task, schema.classes or None, schema.positive_class
    else:
        task = card.get("task", "classification")
        classes, positive = card.get("classes"), card.get("positive_class")
    measured = analyse_performance(
        frame,
        labels,
        task,  # type: ignore[arg-type]  # a DataSchema holds only valid tasks
        classes=classes,
        positive_class=positive,
        scopes={},
        min_labels=1,
    ).row()
    out = {}
    for metric in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER):
        value = getattr(measured, metric)
        if value is not None and value == value:
            out[metric] = float(value)
    return out


def _registered(version: registry.Version) -> dict[str, float]:
    for source in (version.metrics, (version.card or {}).get("metrics")):
        if isinstance(source, Mapping):
            found = {
                metric: float(source[metric])
                for metric in (*HIGHER_IS_BETTER, *LOWER_IS_BETTER)
                if isinstance(source.get(metric), int | float)
                and not isinstance(source.get(metric), bool)
            }
            if found:
                return found
    return {}


# --- From observations to alerts ----------------------------------------------------------------


def _judge(
    conn: Connection,
    rules: Sequence[Rule],
    model_id: int | None,
    window_start: datetime,
    window_end: datetime,
    observed: pd.DataFrame,
    sites: Mapping[str, str | None],
    groups: Mapping[str, str | None],
    now: datetime,
) -> list[Change]:
    """Record the rules' observations of one window and the alert transitions they call for
    (a few statements for all the rules together; more only where an alert changes)."""
    ids = [rule.id for rule in rules if rule.id is not None]
    stored.lock_rules(conn, ids)
    stored.record_evaluations(conn, ids, model_id, window_start, window_end, now=now)
    windows = stored.judged_windows(
        conn, {rule.id: max(rule.fire_n, rule.resolve_n) for rule in rules if rule.id is not None}
    )
    earlier = stored.observations(
        conn, {rule_id: [w for w in ws if w != window_start] for rule_id, ws in windows.items()}
    )
    opened = stored.open_alerts(conn, ids)
    resolved = stored.last_resolved(conn, ids)
    # Only breaches, and unknowns where they matter (a subject in an alert, or one that
    # breached lately), are written: a missing row reads as clear.
    interesting = observed[(observed["state"] != CLEAR).to_numpy()] if len(observed) else observed
    by_rule = dict(tuple(interesting.groupby("rule", sort=False))) if len(interesting) else {}
    current: dict[int, list[stored.Observation]] = {}
    for index, rule in enumerate(rules):
        assert rule.id is not None
        watched = {o.subject for o in earlier[rule.id] if o.state == BREACH}
        for alert in opened[rule.id]:
            watched |= set(alert.subjects)
        rows = by_rule.get(index)
        current[rule.id] = []
        if rows is None:
            continue
        states = rows["state"].to_numpy()
        subjects = rows["subject"].to_numpy()
        seen = np.fromiter((s in watched for s in subjects), dtype=bool, count=len(subjects))
        keep = np.flatnonzero((states == BREACH) | seen)
        values = rows["value"].to_numpy(dtype=np.float64)
        bounds = rows["bound"].to_numpy(dtype=np.float64)
        details = rows["details"].to_numpy()
        current[rule.id] = [
            stored.Observation(
                subjects[i],
                window_start,
                states[i],
                None if values[i] != values[i] else float(values[i]),
                None if bounds[i] != bounds[i] else float(bounds[i]),
                details[i] or {},
            )
            for i in keep.tolist()
        ]
    stored.save_observations(conn, window_start, window_end, current, now=now)
    # Full windows only: a rule with fewer judged windows than it looks at keeps them all.
    stored.forget_observations(
        conn,
        {
            rule.id: windows[rule.id][0]
            for rule in rules
            if rule.id is not None and len(windows[rule.id]) >= max(rule.fire_n, rule.resolve_n)
        },
    )
    changes: list[Change] = []
    for rule in rules:
        assert rule.id is not None
        previous, mine = earlier[rule.id], current[rule.id]
        states = {(o.subject, o.window_start): o.state for o in [*previous, *mine]}
        history = History.build(windows[rule.id], states)
        alerts_now = opened[rule.id]
        # Only a subject that breached lately can join an alert: only those need a group.
        breached = (history.states == BREACH).any(axis=1) if history.states.size else []
        grouping = {
            s: group_of(rule.group_by, s, sites, groups)
            for s, hit in zip(history.subjects, breached, strict=True)
            if hit
        }
        found = transitions(
            rule,
            history,
            grouping,
            [OpenAlert(a.group_key, frozenset(a.subjects)) for a in alerts_now],
            resolved[rule.id],
            now,
        )
        if not found:
            continue
        latest = {o.subject: o for o in [*sorted(previous, key=lambda o: o.window_start), *mine]}
        by_group = {a.group_key: a for a in alerts_now}
        changes += [
            _record(
                conn,
                rule,
                model_id,
                t,
                by_group.get(t.group_key),
                latest,
                window_start,
                window_end,
                now,
            )
            for t in found
        ]
    return changes


def _record(
    conn: Connection,
    rule: Rule,
    model_id: int | None,
    transition: Transition,
    alert: stored.Alert | None,
    latest: Mapping[str, stored.Observation],
    window_start: datetime,
    window_end: datetime,
    now: datetime,
) -> Change:
    assert rule.id is not None
    subjects = transition.subjects if transition.kind != RESOLVED else transition.left
    first = latest.get(subjects[0]) if subjects else None
    before = stored.get_alert(conn, alert.id) if alert is not None else None
    merged: dict[str, Any] = {}
    value, bound = (None, None) if first is None else (first.value, first.bound)
    if rule.kind in (PERFORMANCE_KIND, PERFORMANCE_DROP):
        # One subject's figure, band and trust, the one ``value`` and ``bound`` describe: the
        # subjects' details differ (one judged on labels, another on an estimate).
        merged, value, bound = _performance_details(rule, subjects, first, before)
    else:
        features: set[str] = set()
        for s in subjects:
            o = latest.get(s)
            if o is not None and o.details:
                features |= set(o.details.get("drifted_features") or ())
                merged |= {k: v for k, v in o.details.items() if k != "drifted_features"}
        if features:
            merged["drifted_features"] = sorted(features)
    summary = payloads.summary(
        rule.name,
        rule.kind,
        transition.group_key,
        subjects,
        merged,
        value=value,
        bound=bound,
    )
    recovered = dict((before.details.get("recovered") or {}) if before else {})
    recovered |= {s: now.isoformat() for s in transition.left}
    details = {
        **merged,
        "recovered": recovered,
        "observations": {
            s: {"state": o.state, "value": o.value, "bound": o.bound}
            | ({"estimated": True} if (o.details or {}).get("estimated") else {})
            for s in list(subjects)[:DETAILED_SUBJECTS]
            if (o := latest.get(s)) is not None
        },
    }
    if alert is None:
        alert_id = stored.open_alert(
            conn,
            rule_id=rule.id,
            model_id=model_id,
            group_key=transition.group_key,
            severity=rule.severity,
            summary=summary,
            subjects=transition.subjects,
            details=details,
            window_start=window_start,
            now=now,
        )
        episode = None
    else:
        alert_id = alert.id
        stored.update_alert(
            conn,
            alert_id,
            subjects=transition.subjects,
            summary=summary,
            details=details,
            window_start=window_start,
            now=now,
            resolve=transition.kind == RESOLVED,
        )
        episode = alert.episode
    current = stored.get_alert(conn, alert_id)
    seq = stored.next_seq(conn, alert_id)
    data = {
        "alert_id": alert_id,
        "rule": rule.name,
        "kind": rule.kind,
        "model": rule.model,
        "severity": rule.severity,
        "state": current.state,
        "group": transition.group_key,
        "episode": episode or current.episode,
        "subjects": list(transition.subjects),
        "joined": list(transition.joined),
        "left": list(transition.left),
        "window": {"start": window_start.isoformat(), "end": window_end.isoformat()},
        "summary": summary,
        "estimated": bool(merged.get("estimated")),
        "value": value,
        "bound": bound,
        "details": {k: v for k, v in details.items() if k != "observations"},
        "fired_at": current.fired_at.isoformat(),
        "resolved_at": None if current.resolved_at is None else current.resolved_at.isoformat(),
        "event": {"seq": seq, "message_id": stored.message_id(alert_id, seq)},
    }
    body = payloads.build(transition=transition.kind, timestamp=now, data=data)
    event = stored.add_event(
        conn,
        alert_id,
        kind=transition.kind,
        window_start=window_start,
        payload=body,
        seq=seq,
        now=now,
    )
    from monitor.storage import webhooks

    webhooks.enqueue(
        conn,
        message_id=event.message_id,
        event_type=body["type"],
        body=payloads.encode(body),
        endpoints=rule.endpoints,
        event_id=event.id,
        now=now,
    )
    head, rest = body["text"].split(" ", 1)
    log.info(
        "alert %s: %s",
        head,
        rest,
        extra={"alert_id": alert_id, "rule": rule.name, "transition": transition.kind},
    )
    if transition.kind == FIRED and rule.hooks and model_id is not None:
        from monitor.storage import retrains

        for hook in rule.hooks:
            run = retrains.request_run(
                conn, hook_name=hook, model_id=model_id, alert_id=alert_id, trigger="alert", now=now
            )
            log.info(
                "alert %s started retrain hook %s: %s",
                alert_id,
                hook,
                f"run {run}"
                if run is not None
                else "not started (disabled, cooling down, or a run of the model in flight)",
            )
    return Change(rule.name, alert_id, event, body["text"])


def _performance_details(
    rule: Rule,
    subjects: Sequence[str],
    first: stored.Observation | None,
    before: stored.Alert | None,
) -> tuple[dict[str, Any], float | None, float | None]:
    """The details, value and bound a performance alert's transition tells: those of its first
    subject's latest observation. A subject that recovers may have none in the windows read
    (its breach is older), or one read back without details: the alert's own details, written
    when that subject last changed it, stand in for what they describe of the same subject
    (how it was judged: on labels or on an estimate, its interval or band)."""
    value, bound = (None, None) if first is None else (first.value, first.bound)
    if first is not None and first.details:
        return dict(first.details), value, bound
    found: dict[str, Any] = {"metric": rule.params.get("metric")}
    # The alert's details are those of its first subject when they were written.
    if before is None or not subjects or before.subjects[:1] != (subjects[0],):
        return found, value, bound
    seen = (before.details.get("observations") or {}).get(subjects[0])
    if not seen or (first is not None and (seen.get("value"), seen.get("bound")) != (value, bound)):
        return found, value, bound
    found |= {k: v for k, v in before.details.items() if k not in ("recovered", "observations")}
    return found, seen.get("value"), seen.get("bound")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number
