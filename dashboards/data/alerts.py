"""The Alerts page's data: firing and resolved alerts with their transitions and the webhook
messages each caused, the delivery log, endpoints and retrain runs, prepared from
``monitor.storage`` (no Streamlit here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from monitor.storage import activity, alert_rules, fleet, retrains, webhooks
from monitor.storage import alerts as alert_store
from monitor.storage.alerts import Alert

#: Firing alerts read at most (a fleet of a thousand nodes with a per-node rule stays under it).
MAX_OPEN = 5000
#: Resolved alerts, messages and runs of the range read at most (the newest).
MAX_ROWS = 2000
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
IN_FLIGHT = retrains.IN_FLIGHT


@dataclass(frozen=True)
class Setup:
    """What alerting has been set up: rules, endpoints, hooks (the empty states' questions)."""

    rules: int
    enabled_rules: int
    endpoints: int
    hooks: int


@dataclass(frozen=True)
class Tiles:
    """The figures at the top of the page."""

    #: Firing alerts by severity (every severity present).
    firing: dict[str, int]
    resolved_in_range: int
    #: Messages waiting to be sent now (pending or being delivered), and given up in the range.
    pending: int
    failed_in_range: int
    #: Retrain runs holding their model now (queued, running, produced, canary), and by status.
    runs_in_flight: int
    in_flight_by_status: dict[str, int]


@dataclass(frozen=True)
class Overview:
    """The page's top half: setup, tiles, the open alerts and those resolved in the range."""

    setup: Setup
    tiles: Tiles
    #: One row per firing alert (``alert_rows`` without ``resolved_at``), critical first.
    open: pd.DataFrame
    #: One row per alert resolved in the range, latest first.
    resolved: pd.DataFrame
    #: Firing spans per rule for the timeline: open alerts and those resolved in the range.
    spans: pd.DataFrame


ALERT_COLUMNS = [
    "id",
    "rule",
    "kind",
    "model",
    "severity",
    "group",
    "episode",
    "subjects",
    "in_trouble",
    "since",
    "resolved_at",
    "value",
    "bound",
    "summary",
]


def setup(engine: Engine) -> Setup:
    """How many rules, endpoints and hooks there are."""
    with engine.connect() as conn:
        rules = alert_rules.list_rules(conn)
        return Setup(
            rules=len(rules),
            enabled_rules=sum(1 for r in rules if r.enabled),
            endpoints=len(webhooks.list_endpoints(conn)),
            hooks=len(retrains.list_hooks(conn)),
        )


def overview(engine: Engine, start: datetime | None, end: datetime) -> Overview:
    """Setup, tiles, open alerts, alerts resolved in ``[start, end)`` and the timeline's spans."""
    with engine.connect() as conn:
        firing = fleet.firing_alerts(conn)
        open_alerts = alert_store.list_alerts(conn, state=alert_store.FIRING, limit=MAX_OPEN)
        resolved = activity.resolved_between(conn, start, end, limit=MAX_ROWS)
        resolved_count = activity.count_resolved(conn, start, end)
        outbox = fleet.webhook_messages_by_status(conn)
        in_range = activity.message_counts(conn, start, end)
        runs = fleet.retrain_runs_by_status(conn)
    tiles = Tiles(
        firing=firing,
        resolved_in_range=resolved_count,
        pending=sum(outbox[s] for s in webhooks.UNDELIVERED),
        failed_in_range=in_range["failed"],
        runs_in_flight=sum(runs.get(s, 0) for s in IN_FLIGHT),
        in_flight_by_status={s: runs[s] for s in IN_FLIGHT if runs.get(s)},
    )
    open_frame = alert_rows(open_alerts)
    if not open_frame.empty:
        open_frame = (
            open_frame.assign(_order=open_frame["severity"].map(SEVERITY_ORDER).fillna(9))
            .sort_values(["_order", "rule", "group"], kind="stable")
            .drop(columns="_order")
            .reset_index(drop=True)
        )
    return Overview(
        setup=setup(engine),
        tiles=tiles,
        open=open_frame.drop(columns="resolved_at"),
        resolved=alert_rows(resolved),
        spans=spans(open_alerts + resolved, start, end),
    )


def _first_observation(alert: Alert) -> tuple[float | None, float | None]:
    """The last value and bound of the alert's first subject (what its webhook says)."""
    observed = alert.details.get("observations")
    if not isinstance(observed, dict) or not observed:
        return None, None
    subjects = list(alert.subjects) or list(observed)
    first = observed.get(subjects[0]) if subjects else None
    if not isinstance(first, dict):
        first = next(iter(observed.values()))
    if not isinstance(first, dict):
        return None, None
    return _number(first.get("value")), _number(first.get("bound"))


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def alert_rows(found: list[Alert]) -> pd.DataFrame:
    """Alerts as table rows: the subjects in trouble (count and names), since when, the last
    value and bound of the first subject."""
    rows = []
    for a in found:
        value, bound = _first_observation(a)
        rows.append(
            {
                "id": a.id,
                "rule": a.rule,
                "kind": a.kind,
                "model": a.model or "",
                "severity": a.severity,
                "group": a.group_key,
                "episode": a.episode,
                "subjects": len(a.subjects),
                "in_trouble": ", ".join(a.subjects),
                "since": a.fired_at,
                "resolved_at": a.resolved_at,
                "value": value,
                "bound": bound,
                "summary": a.summary,
            }
        )
    frame = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    for column in ("since", "resolved_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def spans(found: list[Alert], start: datetime | None, end: datetime) -> pd.DataFrame:
    """Each alert as a span from firing to resolving (still firing: to ``end``), cut to the
    range, by rule: the timeline's rows."""
    rows = []
    for a in found:
        begin = a.fired_at if start is None else max(a.fired_at, start)
        finish = a.resolved_at or end
        if finish <= begin:
            continue
        rows.append(
            {
                "rule": a.rule,
                "alert": f"#{a.id} {a.group_key}",
                "severity": a.severity,
                "state": a.state,
                "start": begin,
                "end": finish,
                "summary": a.summary,
            }
        )
    columns = ["rule", "alert", "severity", "state", "start", "end", "summary"]
    frame = pd.DataFrame(rows, columns=columns)
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.sort_values(["rule", "start"], kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class AlertDetail:
    """One alert with each subject's last observation and each transition's messages."""

    alert: Alert
    #: subject, state, value, bound (the subjects the alert's details describe).
    observations: pd.DataFrame
    #: seq, kind, at, window, message_id, messages (one line per endpoint).
    events: pd.DataFrame
    #: One row per message of any transition: seq, endpoint, status, attempts, next try,
    #: delivered, last error, and the answers of its attempts.
    messages: pd.DataFrame


def alert_detail(engine: Engine, alert_id: int) -> AlertDetail:
    """An alert's subjects, transitions and the webhook messages of each transition."""
    with engine.connect() as conn:
        alert = alert_store.get_alert(conn, alert_id)
        events = alert_store.alert_events(conn, alert_id)
        by_event = webhooks.messages_for_events(conn, [e.id for e in events])
        attempts = webhooks.attempts_of(conn, [m.id for ms in by_event.values() for m in ms])
    observed = alert.details.get("observations")
    observations = pd.DataFrame(
        [
            {
                "subject": subject,
                "state": o.get("state"),
                "value": _number(o.get("value")),
                "bound": _number(o.get("bound")),
            }
            for subject, o in (observed.items() if isinstance(observed, dict) else [])
            if isinstance(o, dict)
        ],
        columns=["subject", "state", "value", "bound"],
    )
    event_rows, message_rows = [], []
    for e in events:
        sent = by_event.get(e.id, [])
        event_rows.append(
            {
                "seq": e.seq,
                "transition": e.kind,
                "at": e.at,
                "window": e.window_start,
                "webhook_id": e.message_id,
                "messages": ", ".join(f"{m.endpoint}: {m.status}" for m in sent) or "none",
            }
        )
        for m in sent:
            answers = ", ".join(
                str(a.status_code) if a.status_code is not None else (a.error or "no answer")
                for a in attempts.get(m.id, [])
            )
            message_rows.append(
                {
                    "seq": e.seq,
                    "endpoint": m.endpoint,
                    "status": m.status,
                    "attempts": m.attempts,
                    "answers": answers,
                    "next_try": m.next_attempt_at if m.status == "pending" else None,
                    "delivered_at": m.delivered_at,
                    "last_error": m.last_error or "",
                }
            )
    events_frame = pd.DataFrame(
        event_rows, columns=["seq", "transition", "at", "window", "webhook_id", "messages"]
    )
    messages_frame = pd.DataFrame(
        message_rows,
        columns=[
            "seq",
            "endpoint",
            "status",
            "attempts",
            "answers",
            "next_try",
            "delivered_at",
            "last_error",
        ],
    )
    for frame, columns in (
        (events_frame, ("at", "window")),
        (messages_frame, ("next_try", "delivered_at")),
    ):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return AlertDetail(alert, observations, events_frame, messages_frame)


DELIVERY_COLUMNS = [
    "message_id",
    "endpoint",
    "event",
    "alert",
    "status",
    "attempts",
    "created_at",
    "next_try",
    "delivered_at",
    "last_error",
]


def deliveries(
    engine: Engine, start: datetime | None, end: datetime, status: str | None
) -> pd.DataFrame:
    """Webhook messages created in the range (in one status when given), newest first: the
    delivery log, with the alert each transition belongs to."""
    with engine.connect() as conn:
        found = activity.messages_between(conn, start, end, status=status, limit=MAX_ROWS)
    rows = [
        {
            "message_id": m.message_id,
            "endpoint": m.endpoint,
            "event": m.event_type,
            "alert": m.event_id is not None,
            "status": m.status,
            "attempts": m.attempts,
            "created_at": m.created_at,
            "next_try": m.next_attempt_at if m.status == "pending" else None,
            "delivered_at": m.delivered_at,
            "last_error": m.last_error or "",
        }
        for m in found
    ]
    frame = pd.DataFrame(rows, columns=DELIVERY_COLUMNS)
    for column in ("created_at", "next_try", "delivered_at"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def endpoints(engine: Engine) -> pd.DataFrame:
    """Every webhook endpoint with its state (never its secret)."""
    with engine.connect() as conn:
        found = webhooks.list_endpoints(conn)
    frame = pd.DataFrame(
        [
            {
                "endpoint": e.name,
                "url": e.url,
                "state": "enabled" if e.enabled else "disabled",
                "reason": e.disabled_reason or "",
                "failing_since": e.failing_since,
                "defined_by": e.source,
            }
            for e in found
        ],
        columns=["endpoint", "url", "state", "reason", "failing_since", "defined_by"],
    )
    frame["failing_since"] = pd.to_datetime(frame["failing_since"], utc=True)
    return frame


RUN_COLUMNS = [
    "id",
    "model",
    "hook",
    "trigger",
    "status",
    "queued",
    "started",
    "finished",
    "version",
    "gate",
    "candidate_accuracy",
    "production_accuracy",
    "canary",
    "outcome",
]


def runs(engine: Engine, start: datetime | None, end: datetime) -> pd.DataFrame:
    """Retrain runs queued in the range, newest first, each with its gate's and canary's
    figures and its outcome in words."""
    with engine.connect() as conn:
        found = activity.runs_between(conn, start, end, limit=MAX_ROWS)
    rows = []
    for r in found:
        gate, canary = _section(r, "gate"), _section(r, "canary")
        rows.append(
            {
                "id": r.id,
                "model": r.model,
                "hook": r.hook or "",
                "trigger": r.trigger + (f" (alert #{r.alert_id})" if r.alert_id else ""),
                "status": r.status,
                "queued": r.created_at,
                "started": r.started_at,
                "finished": r.finished_at,
                "version": r.version or "",
                "gate": _gate_words(gate),
                "candidate_accuracy": _number(gate.get("candidate_accuracy")),
                "production_accuracy": _number(gate.get("production_accuracy")),
                "canary": _canary_words(canary),
                "outcome": outcome(r),
            }
        )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for column in ("queued", "started", "finished"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _section(run: retrains.Run, key: str) -> dict[str, Any]:
    """One section of a run's details (the gate's or the canary's figures), or {}."""
    found = run.details.get(key)
    return dict(found) if isinstance(found, dict) else {}


def _gate_words(gate: dict[str, Any]) -> str:
    if not gate:
        return ""
    verdict = "passed" if gate.get("passed") else "failed"
    reason = gate.get("reason")
    return f"{verdict}: {reason}" if reason else verdict


def _canary_words(canary: dict[str, Any]) -> str:
    if not canary:
        return ""
    nodes = canary.get("nodes")
    share = _number(canary.get("share"))
    head = f"{len(nodes)} nodes" if isinstance(nodes, list) else "canary"
    if share is not None:
        head += f" (share {share:.2f})"
    judgement = canary.get("judgement")
    if isinstance(judgement, dict) and judgement.get("reason"):
        return f"{head}: {judgement['decision']}, {judgement['reason']}"
    if canary.get("ended_by_hand"):
        return f"{head}: ended by hand"
    return f"{head}: running"


def outcome(run: retrains.Run) -> str:
    """How a run ended (or where it is), in words."""
    version = f"version {run.version}" if run.version else "a version"
    gate, canary = _section(run, "gate"), _section(run, "canary")
    words = {
        "queued": "waiting for a worker",
        "running": (
            "waiting for the pipeline's result"
            if run.details.get("awaiting_result")
            else "its hook is running"
        ),
        "failed": "failed" + (f": {_last_line(run.output)}" if run.output.strip() else ""),
        "timed_out": "timed out: its hook took longer than its timeout",
        "produced": f"produced {version}; the promotion gate has yet to judge it",
        "gated": f"produced {version}, stopped by the promotion gate"
        + (f" ({gate['reason']})" if gate.get("reason") else ""),
        "canary": f"produced {version}, passed the gate; its canary is running",
        "promoted": f"produced {version}, passed the gate and its canary: rolled out to every node",
        "rolled_back": f"produced {version}, passed the gate; rolled back after its canary"
        + (
            f" ({canary['judgement']['reason']})"
            if isinstance(canary.get("judgement"), dict) and canary["judgement"].get("reason")
            else ""
        ),
    }
    return words.get(run.status, run.status.replace("_", " "))


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
