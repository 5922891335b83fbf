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
from monitor.alerts.rules import HIGHER_IS_BETTER, LOWER_IS_BETTER, PERFORMANCE_DROP, Rule
from monitor.alerts.state import (
    FIRED,
    RESOLVED,
    History,
    OpenAlert,
    Transition,
    group_of,
    transitions,
)
from monitor.alerts.uncertainty import BREACH, UNKNOWN
from monitor.storage import alerts as stored
from monitor.storage import registry, results
from monitor.storage.alert_rules import list_rules
from monitor.storage.engine import begin_write
from monitor.storage.nodes import Node, list_nodes

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
) -> list[Change]:
    """Judge the window's stored results by the model's enabled window rules and record what
    follows, in ``conn``'s transaction; the transitions recorded."""
    rules = [
        rule
        for rule in list_rules(conn, model_id=model_id)
        if rule.enabled and not rule.is_node_rule
    ]
    if not rules:
        return []
    found = results.window(conn, model_id, window_start)
    if found is None:
        return []
    needs_reference = any(rule.kind == PERFORMANCE_DROP for rule in rules)
    figures = figures_of(
        found,
        reference=_reference_figures(conn, found) if needs_reference else {},
        min_labels=min_labels,
    )
    observed = evaluate(figures, rules)
    sites, groups = _memberships(list_nodes(conn))
    changes: list[Change] = []
    by_rule = dict(tuple(observed.groupby("rule", sort=False))) if len(observed) else {}
    for index, rule in enumerate(rules):
        changes += _judge(
            conn,
            rule,
            model_id,
            found.window_start,
            found.window_end,
            by_rule.get(index),
            sites,
            groups,
            now,
        )
    return changes


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
        by_rule = dict(tuple(observed.groupby("rule", sort=False))) if len(observed) else {}
        changes: list[Change] = []
        for index, rule in enumerate(rules):
            changes += _judge(
                conn,
                rule,
                None,
                start,
                start + timedelta(seconds=seconds),
                by_rule.get(index),
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
    drift = _table(
        [s.result for s in found.drift],
        ("scope_kind", "scope_key", "drifted", "prediction_drifted", "share_drifted", "n_drifted"),
    )
    drift_features = _table(
        [f for rows in found.drift_features.values() for f in rows],
        (
            "scope_kind",
            "scope_key",
            "feature",
            "role",
            "drifted",
            "adjusted_p_value",
            "statistic",
            "threshold",
        ),
    )
    quality_features = _table(
        [f for rows in found.quality_features.values() for f in rows],
        (
            "scope_kind",
            "scope_key",
            "feature",
            "role",
            "n_rows",
            "missing_share",
            "out_of_range_share",
            "n_new_category_rows",
        ),
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        quality_features["new_category_share"] = pd.to_numeric(
            quality_features["n_new_category_rows"], errors="coerce"
        ) / pd.to_numeric(quality_features["n_rows"], errors="coerce").replace(0, np.nan)
    performance = _table(
        [s.result for s in found.performance],
        ("scope_kind", "scope_key", "status", "n_labelled", *HIGHER_IS_BETTER, *LOWER_IS_BETTER),
    )
    return WindowFigures(
        window_start=found.window_start,
        window_end=found.window_end,
        drift=drift,
        drift_features=drift_features,
        quality_features=quality_features,
        performance=performance,
        reference=dict(reference or {}),
        min_labels=min_labels,
    )


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
        total = None if row is None else sum(row.dropped.get(reason, 0) for reason in _LOSS_REASONS)
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


#: Drop reasons that mean records were lost (as the health job counts them).
_LOSS_REASONS = ("queue_full", "spool_overflow", "expired", "too_large")


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


def _reference_figures(conn: Connection, found: results.WindowResults) -> dict[str, float]:
    """The performance figures of the version the window was judged against: measured on its
    reference data when that holds labels and predictions, else its registered metrics (or
    its card's); empty when it has none."""
    version_ids = [s.model_version_id for s in found.performance if s.scope_kind == "fleet"]
    version_ids += [s.model_version_id for s in found.drift if s.scope_kind == "fleet"]
    version_id = next((v for v in version_ids if v is not None), None)
    if version_id is None:
        return {}
    version = next((v for v in registry.versions(conn, found.model_id) if v.id == version_id), None)
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
    rule: Rule,
    model_id: int | None,
    window_start: datetime,
    window_end: datetime,
    observed: pd.DataFrame | None,
    sites: Mapping[str, str | None],
    groups: Mapping[str, str | None],
    now: datetime,
) -> list[Change]:
    """Record one rule's observations of one window and the alert transitions they call for."""
    assert rule.id is not None
    stored.lock_rule(conn, rule.id)
    stored.record_evaluation(conn, rule.id, model_id, window_start, window_end, now=now)
    windows = stored.judged_windows(conn, rule.id, max(rule.fire_n, rule.resolve_n))
    previous = [
        o for o in stored.observations(conn, rule.id, windows) if o.window_start != window_start
    ]
    opened = stored.open_alerts(conn, rule.id)
    # Unknowns are kept only where they matter (a subject in an alert, or one that breached
    # lately): elsewhere a missing row reads as clear, and nothing was pending anyway.
    watched = {o.subject for o in previous if o.state == BREACH}
    for alert in opened:
        watched |= set(alert.subjects)
    current: list[stored.Observation] = []
    if observed is not None and len(observed):
        keep = (observed["state"] == BREACH) | (
            (observed["state"] == UNKNOWN) & observed["subject"].isin(watched)
        )
        for row in observed[keep.to_numpy()].itertuples(index=False):
            current.append(
                stored.Observation(
                    row.subject,
                    window_start,
                    row.state,
                    _number(row.value),
                    _number(row.bound),
                    row.details or {},
                )
            )
    stored.save_observations(conn, rule.id, window_start, window_end, current, now=now)
    states = {(o.subject, o.window_start): o.state for o in previous}
    states |= {(o.subject, o.window_start): o.state for o in current}
    history = History.build(windows, states)
    subjects = set(history.subjects) | {s for a in opened for s in a.subjects}
    grouping = {s: group_of(rule.group_by, s, sites, groups) for s in subjects}
    found = transitions(
        rule,
        history,
        grouping,
        [OpenAlert(a.group_key, frozenset(a.subjects)) for a in opened],
        stored.last_resolved(conn, rule.id),
        now,
    )
    if not found:
        return []
    latest = {o.subject: o for o in [*sorted(previous, key=lambda o: o.window_start), *current]}
    by_group = {a.group_key: a for a in opened}
    return [
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
    merged: dict[str, Any] = {}
    features: set[str] = set()
    for s in subjects:
        o = latest.get(s)
        if o is not None and o.details:
            features |= set(o.details.get("drifted_features") or ())
            merged |= {k: v for k, v in o.details.items() if k != "drifted_features"}
    if features:
        merged["drifted_features"] = sorted(features)
    summary = payloads.summary(rule.name, rule.kind, transition.group_key, subjects, merged)
    first = latest.get(subjects[0]) if subjects else None
    recovered = dict((alert.details.get("recovered") or {}) if alert else {})
    recovered |= {s: now.isoformat() for s in transition.left}
    details = {
        **merged,
        "recovered": recovered,
        "observations": {
            s: {"state": o.state, "value": o.value, "bound": o.bound}
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
        "value": None if first is None else first.value,
        "bound": None if first is None else first.bound,
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
    log.info(
        "alert %s: %s",
        body["text"].split(" ", 1)[0],
        body["text"],
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


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number
