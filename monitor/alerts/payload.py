"""The webhook payload of an alert transition, its JSON Schema, and its one-paragraph text.

The body is a JSON object::

    {"type": "alert.fired" | "alert.updated" | "alert.resolved",
     "timestamp": "2026-01-01T10:15:00+00:00",
     "data": {"alert_id": 7, "rule": "site drift", "kind": "feature_drift", "model": "pump",
              "severity": "warning", "state": "firing", "group": "site:hot-humid",
              "episode": 1, "subjects": ["node:n1", ...], "joined": [...], "left": [...],
              "window": {"start": ..., "end": ...}, "summary": "...", "value": 0.01,
              "bound": 0.05, "details": {...}, "fired_at": ..., "resolved_at": null,
              "event": {"seq": 1, "message_id": "msg_..."}},
     "text": "FIRING [warning] site drift: 12 nodes at site hot-humid drift on vibration ..."}

``text`` is a Slack-compatible summary (a Slack incoming webhook shows it as is); ``data`` is
for machines. ``PAYLOAD_SCHEMA`` is its JSON Schema (draft 2020-12).

A performance alert judged on an estimate (no labels yet) says so everywhere: ``data.estimated``
is true, ``data.details`` holds ``estimated``, ``band``, ``trusted``, ``trust_evidence`` and
``trust_reason``, and the summary (hence ``text``, the CLI, the read API and the dashboard, which
all show the stored summary) reads "site a: estimated accuracy 0.80 (0.77-0.83) below 0.85 —
not trusted: ...".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.alerts.rules import LOWER_IS_BETTER, PERFORMANCE, PERFORMANCE_DROP
from monitor.alerts.state import FIRED, RESOLVED, UPDATED

EVENT_TYPES = {FIRED: "alert.fired", UPDATED: "alert.updated", RESOLVED: "alert.resolved"}

_TIME = {"type": ["string", "null"], "format": "date-time"}
_NAMES = {"type": "array", "items": {"type": "string"}}

PAYLOAD_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edge-monitor alert transition",
    "description": "The body of an alert.fired, alert.updated or alert.resolved webhook.",
    "type": "object",
    "required": ["type", "timestamp", "data", "text"],
    "additionalProperties": False,
    "properties": {
        "type": {"enum": list(EVENT_TYPES.values())},
        "timestamp": {"type": "string", "format": "date-time"},
        "text": {"type": "string", "description": "Slack-compatible one-paragraph summary"},
        "data": {
            "type": "object",
            "required": [
                "alert_id",
                "rule",
                "kind",
                "model",
                "severity",
                "state",
                "group",
                "episode",
                "subjects",
                "joined",
                "left",
                "window",
                "summary",
                "fired_at",
                "resolved_at",
                "event",
            ],
            "properties": {
                "alert_id": {"type": "integer"},
                "rule": {"type": "string"},
                "kind": {"type": "string"},
                "model": {"type": ["string", "null"]},
                "severity": {"enum": ["info", "warning", "critical"]},
                "state": {"enum": ["firing", "resolved"]},
                "group": {
                    "type": "string",
                    "description": "fleet, site:X, group:G, node:N or rule",
                },
                "episode": {"type": "integer", "minimum": 1},
                "subjects": {**_NAMES, "description": "the subjects in trouble now"},
                "joined": {**_NAMES, "description": "subjects that joined in this transition"},
                "left": {**_NAMES, "description": "subjects that recovered in this transition"},
                "window": {
                    "type": "object",
                    "required": ["start", "end"],
                    "properties": {"start": _TIME, "end": _TIME},
                },
                "summary": {"type": "string"},
                "estimated": {
                    "type": "boolean",
                    "description": "a performance figure estimated without labels was judged "
                    "(details: band, trusted, trust_evidence, trust_reason)",
                },
                "value": {"type": ["number", "null"]},
                "bound": {"type": ["number", "null"]},
                "details": {"type": "object"},
                "fired_at": {"type": "string", "format": "date-time"},
                "resolved_at": _TIME,
                "event": {
                    "type": "object",
                    "required": ["seq", "message_id"],
                    "properties": {
                        "seq": {"type": "integer", "minimum": 1},
                        "message_id": {"type": "string", "pattern": "^msg_[a-z2-7]+$"},
                    },
                },
            },
        },
    },
}


def summary(
    rule_name: str,
    kind: str,
    group: str,
    subjects: Sequence[str],
    details: Mapping[str, Any] | None = None,
    *,
    value: float | None = None,
    bound: float | None = None,
) -> str:
    """What is wrong, in one phrase: "12 nodes at site hot-humid drift on vibration_mm_s".

    A performance figure is told with the first subject's ``value`` against its ``bound``:
    "fleet: accuracy 0.70 (0.67-0.73) below 0.80", or "site a: estimated accuracy 0.80
    (0.77-0.83) below 0.85 — not trusted: <why>" when the figure was an estimate."""
    details = details or {}
    where = _where(group, subjects)
    if kind in (PERFORMANCE, PERFORMANCE_DROP) and value is not None:
        return f"{where}: {_performance(details, subjects, value, bound)}"
    features = details.get("drifted_features") or []
    if kind in ("scope_drift", "feature_drift") and features:
        shown = ", ".join(features[:5]) + (
            f" and {len(features) - 5} more" if len(features) > 5 else ""
        )
        return f"{where} drift on {shown}"
    what = {
        "scope_drift": "drift",
        "feature_drift": "drift",
        "share_drifted": "have too many drifted features",
        "prediction_drift": "drift in prediction",
        "performance": f"{details.get('metric', 'performance')} beyond its bound",
        "performance_drop": f"{details.get('metric', 'performance')} below its reference",
        "quality": f"{details.get('figure', 'data quality')} too high",
        "node_offline": "offline",
        "clock_skew": "clock skew",
        "sdk_drops": "dropping records",
        "latency_p95": "p95 latency too high",
    }.get(kind, kind)
    return f"{where}: {what}"


def _performance(
    details: Mapping[str, Any], subjects: Sequence[str], value: float, bound: float | None
) -> str:
    metric = str(details.get("metric", "performance"))
    errors = metric in LOWER_IS_BETTER
    estimated = bool(details.get("estimated"))
    low, high = details.get("band" if estimated else "interval") or (None, None)
    figure = _figure(value, errors)
    if low is not None and high is not None:
        figure += f" ({_figure(low, errors)}-{_figure(high, errors)})"
    side = "above" if errors else "below"
    # The bound as the rule gave it (0.995 is not 0.99), to four significant digits.
    compare = f"{side} its bound" if bound is None else f"{side} {bound:.4g}"
    if details.get("reference") is not None:
        compare += f" (reference {_figure(details['reference'], errors)})"
    said = f"{'estimated ' if estimated else ''}{metric}"
    if len(subjects) > 1:
        # Many subjects: the bound they broke, and the one subject the figure is of.
        line = f"{said} {compare}; {subjects[0].replace(':', ' ', 1)} at {figure}"
    else:
        line = f"{said} {figure} {compare}"
    if not estimated:
        return line
    trusted, reason = details.get("trusted"), details.get("trust_reason")
    if trusted is True:
        return f"{line} — trusted"
    verdict = "not trusted" if trusted is False else "trust unknown"
    if not reason:
        return f"{line} — {verdict}"
    # The trust verdict's own sentence may open with it ("not trusted: calibration broke ...").
    return f"{line} — {verdict}: {str(reason).removeprefix(verdict + ': ')}"


def _figure(value: float, errors: bool) -> str:
    # Shares and scores in hundredths; errors (mae, rmse) in their own units.
    return f"{value:.3g}" if errors else f"{value:.2f}"


def _where(group: str, subjects: Sequence[str]) -> str:
    nodes = [s for s in subjects if s.startswith("node:")]
    kind, _, key = group.partition(":")
    if nodes and len(nodes) == len(subjects) and len(nodes) > 1:
        at = f" at {kind} {key}" if kind in ("site", "group") else ""
        return f"{len(nodes)} nodes{at}"
    if len(subjects) == 1:
        return subjects[0].replace(":", " ", 1)
    if not subjects:
        return group.replace(":", " ", 1)
    return f"{len(subjects)} scopes"


def text(
    *,
    transition: str,
    severity: str,
    rule: str,
    summary: str,
    model: str | None,
    window_start: datetime | None,
    window_end: datetime | None,
) -> str:
    """The Slack-compatible line: "FIRING [warning] site drift: <summary> (pump, window
    10:00-10:15)"."""
    head = {FIRED: "FIRING", UPDATED: "UPDATED", RESOLVED: "RESOLVED"}[transition]
    where = []
    if model:
        where.append(model)
    if window_start is not None and window_end is not None:
        fmt = "%H:%M" if window_start.date() == window_end.date() else "%Y-%m-%d %H:%M"
        where.append(
            f"window {window_start:%Y-%m-%d} {window_start:%H:%M}-{window_end.strftime(fmt)}"
        )
    tail = f" ({', '.join(where)})" if where else ""
    return f"{head} [{severity}] {rule}: {summary}{tail}"


def build(
    *,
    transition: str,
    timestamp: datetime,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    """The payload object of a transition (``data`` as the schema's ``data``)."""
    window = data.get("window") or {}
    return {
        "type": EVENT_TYPES[transition],
        "timestamp": timestamp.isoformat(),
        "data": dict(data),
        "text": text(
            transition=transition,
            severity=str(data["severity"]),
            rule=str(data["rule"]),
            summary=str(data["summary"]),
            model=data.get("model"),
            window_start=_parse(window.get("start")),
            window_end=_parse(window.get("end")),
        ),
    }


def encode(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes sent (and signed): compact JSON, keys in order."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
