"""The node-health job: online, degraded, offline or silent, from each node's heartbeats.

A node is ``offline`` when its last heartbeat is older than ``offline_after``, ``silent`` when
it never sent one, ``degraded`` when it shows trouble, and ``online`` otherwise. Trouble is
what its last heartbeat shows (an SDK backlog over ``backlog_records``, internal SDK errors,
records lost to a full queue or spool, expired records, or runtime errors) and two things the
collector saw:

* **Clock skew**: the node sent a record time its clock cannot have been right about (before
  2000, or more than a day ahead), within ``clock_skew_for`` (1 hour) before the check. The
  collector stored those records at the time they arrived; ``details["clock_skew"]`` gives the
  last skew seen (device time minus received time, seconds) and when. It clears by itself an
  hour after the last such record: a node whose clock was fixed needs no one to clear it, and
  one whose clock is still wrong keeps sending such records, which keep it shown.
* **Backlog**: more than half of its batches received in the last ``backlog_window`` (1 hour)
  arrived more than ``backlog_lag`` (10 minutes) after their newest record, i.e. the median
  delay exceeds it: the node is delivering what it spooled while it could not send.
  ``details["backlog"]`` gives the counts and the age, when it arrived, of the oldest record
  delivered in that window. One aggregate query over the batches received in the window.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from monitor.storage import health, heartbeats
from monitor.storage.models import version_names
from monitor.storage.nodes import Node, list_nodes
from monitor.storage.records import Delivery, deliveries
from monitor.storage.types import utcnow

log = logging.getLogger(__name__)

#: Nodes whose change is spelled out in the log line; the rest are counted.
LOGGED_CHANGES = 10

#: Drop reasons that mean data was lost (sampling and rejections are not a node's trouble).
LOSS_REASONS = ("queue_full", "spool_overflow", "expired", "too_large")


@dataclass(frozen=True)
class HealthRules:
    """Thresholds of the health verdict."""

    offline_after: timedelta = timedelta(minutes=2)
    backlog_records: int = 10_000
    #: How long after its last implausible record time a node shows clock skew.
    clock_skew_for: timedelta = timedelta(hours=1)
    #: Batches received this long before a check are judged for backlog delivery.
    backlog_window: timedelta = timedelta(hours=1)
    #: A batch received this long after its newest record was made arrived late.
    backlog_lag: timedelta = timedelta(minutes=10)


def check_fleet(
    conn: Connection, rules: HealthRules | None = None, now: datetime | None = None
) -> list[health.NodeHealth]:
    """Judge every live node from its latest heartbeat and store the verdicts."""
    rules = rules or HealthRules()
    now = now or utcnow()
    latest = heartbeats.latest_heartbeats(conn)
    versions = version_names(conn)
    live = [node for node in list_nodes(conn) if node.revoked_at is None]
    delivered = deliveries(conn, now - rules.backlog_window, rules.backlog_lag.total_seconds())
    verdicts = [
        _judge(node, latest.get(node.id), delivered.get(node.id), versions, rules, now)
        for node in live
    ]
    before = {name: row.status for name, row in health.health_by_node(conn).items()}
    health.save_health(conn, verdicts)
    _log_changes([node.name for node in live], verdicts, before)
    return verdicts


def _log_changes(
    names: list[str], verdicts: list[health.NodeHealth], before: dict[str, str]
) -> None:
    """One INFO line for a run that changed a node's status (a first verdict counts); a run
    that changed nothing logs nothing: it repeats every few seconds."""
    changed = {
        name: (before.get(name), verdict.status)
        for name, verdict in zip(names, verdicts, strict=True)
        if before.get(name) != verdict.status
    }
    if not changed:
        return
    counts = Counter(verdict.status for verdict in verdicts)
    shown = [
        f"{name} {old} -> {new}" if old else f"{name} {new}"
        for name, (old, new) in list(changed.items())[:LOGGED_CHANGES]
    ]
    if len(changed) > LOGGED_CHANGES:
        shown.append(f"and {len(changed) - LOGGED_CHANGES} more")
    log.info(
        "node health: %s; fleet: %s",
        ", ".join(shown),
        ", ".join(f"{count} {status}" for status, count in sorted(counts.items())),
        extra={
            "changed": {name: new for name, (_, new) in changed.items()},
            "statuses": dict(counts),
        },
    )


def _judge(
    node: Node,
    beat: heartbeats.Heartbeat | None,
    delivery: Delivery | None,
    versions: dict[int, str],
    rules: HealthRules,
    now: datetime,
) -> health.NodeHealth:
    last_heartbeat_at = node.last_heartbeat_at
    details: dict[str, Any] = {}
    sdk: dict[str, Any] = beat.sdk if beat else {}
    runtime: dict[str, Any] = (beat.runtime or {}) if beat else {}
    dropped = {str(k): int(v) for k, v in (sdk.get("dropped") or {}).items() if _is_int(v)}
    spool = _int(sdk.get("spool_records"))
    errors = _int(runtime.get("errors_total", runtime.get("errors")))
    problems = []
    if spool is not None and spool > rules.backlog_records:
        problems.append(f"{spool} records waiting in the spool")
    if _int(sdk.get("internal_errors")):
        problems.append(f"{sdk['internal_errors']} SDK internal errors")
    lost = sum(dropped.get(reason, 0) for reason in LOSS_REASONS)
    if lost:
        problems.append(
            f"{lost} records lost ({', '.join(r for r in LOSS_REASONS if dropped.get(r))})"
        )
    if errors:
        problems.append(f"{errors} runtime errors")
    if (
        node.clock_skew_seconds is not None
        and node.clock_skew_at is not None
        and now - node.clock_skew_at <= rules.clock_skew_for
    ):
        skew = node.clock_skew_seconds
        details["clock_skew"] = {"seconds": skew, "at": node.clock_skew_at.isoformat()}
        problems.append(
            f"clock skew: its clock was {_duration(abs(skew))} {'behind' if skew < 0 else 'ahead'}"
            " (records stored at the time they arrived)"
        )
    if delivery is not None and 2 * delivery.late > delivery.batches:
        details["backlog"] = {
            "batches": delivery.batches,
            "late_batches": delivery.late,
            "oldest_record_age_seconds": delivery.oldest_age_seconds,
            "oldest_record_ts": delivery.oldest_ts.isoformat(),
        }
        problems.append(
            f"backlog: delivering records up to {_duration(delivery.oldest_age_seconds)} old "
            f"({delivery.late} of {delivery.batches} batches in the last "
            f"{_duration(rules.backlog_window.total_seconds())} arrived more than "
            f"{_duration(rules.backlog_lag.total_seconds())} late)"
        )
    if last_heartbeat_at is None:
        status = "silent"
    elif now - last_heartbeat_at > rules.offline_after:
        status = "offline"
    else:
        status = "degraded" if problems else "online"
    return health.NodeHealth(
        node_id=node.id,
        status=status,
        checked_at=now,
        last_heartbeat_at=last_heartbeat_at,
        model_version=_model_version(runtime, beat, versions),
        dropped=dropped,
        spool_records=spool,
        queue_depth=_int(sdk.get("queue_depth")),
        latency_p95_ms=_float(_latency(runtime).get("p95")),
        errors=errors,
        details={"problems": problems, **details},
    )


def _duration(seconds: float) -> str:
    """A duration for a person: the largest unit that leaves a number of at least 1."""
    for unit, size in (("years", 365 * 86_400.0), ("days", 86_400.0), ("h", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def _latency(runtime: dict[str, Any]) -> dict[str, Any]:
    latency = runtime.get("latency_ms")
    return latency if isinstance(latency, dict) else {}


def _model_version(
    runtime: dict[str, Any], beat: heartbeats.Heartbeat | None, versions: dict[int, str]
) -> str | None:
    # The runtime knows what it serves right after a hot swap; the SDK's label may lag.
    if runtime.get("model_version") is not None:
        return str(runtime["model_version"])
    if beat is not None and beat.model_version_id is not None:
        return versions.get(beat.model_version_id)
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any) -> int | None:
    return int(value) if _is_int(value) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
