"""What the Node page shows: one node's card (its state now, as the health job last judged it)
and its timelines over a period: runtime telemetry from its heartbeats beside the drift,
multivariate drift and accuracy (realised on labels, and estimated without them) of its node
scope, window by window, with the moments its model version changed.

The card comes from ``storage.readout.node_states`` (the Fleet page's and the CLI's ``status``
rule for online, degraded, offline, silent, revoked) and the health job's row
(``storage.health``); telemetry from ``storage.telemetry`` (thinned to a bounded number of
points); drift, accuracy and drifted features from the node scope's stored results through
``storage.timelines``. Nothing here judges: every verdict is the stored one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from monitor.commands.results import RECENT_SKEW
from monitor.dashboards.data import estimates
from monitor.schema import ESTIMATION, FLEET, FLEET_KEY, MULTIVARIATE, PERFORMANCE
from monitor.storage import health, models, nodes, readout, registry, telemetry, timelines
from monitor.storage.readout import NODE

#: A node's role that sends heartbeats and records (the other, a labeller, sends labels only).
NODE_ROLE = nodes.NODE
#: A status's colour on the page (Streamlit's colour names).
STATUS_COLOUR = {
    "online": "green",
    "degraded": "orange",
    "offline": "red",
    "silent": "gray",
    "revoked": "gray",
}
#: The drop reason that is the caller's own sampling, not a loss: left out of the drop series.
SAMPLED_OUT = "sampled_out"
#: Rollout events that change what a node may run (a pin only for the node's own group).
ROLLOUT_ACTIONS = ("promote", "canary", "canary_stop", "rollback", "pin", "unpin")
#: Most analysed windows a period reads (the newest of them), like the telemetry's points.
MAX_WINDOWS = 2_000

#: Columns of the telemetry frame before its drop columns (``dropped:<reason>``).
TELEMETRY_COLUMNS = (
    "received_at",
    "ts",
    "model_version",
    "latency_p50_ms",
    "latency_p95_ms",
    "errors",
    "spool_records",
    "queue_depth",
)
DROPPED_PREFIX = "dropped:"
DRIFT_COLUMNS = (
    "window_start",
    "window_end",
    "status",
    "n_rows",
    "n_features",
    "n_drifted",
    "share_drifted",
    "drifted",
    "prediction_drifted",
)
PERFORMANCE_COLUMNS = (
    "window_start",
    "window_end",
    "status",
    "task",
    "n_rows",
    "n_labelled",
    "label_coverage",
    "accuracy",
    "mae",
)
DRIFTED_FEATURE_COLUMNS = (
    "window_start",
    "feature",
    "role",
    "method",
    "statistic",
    "threshold",
    "p_value",
    "adjusted_p_value",
    "n_current",
    "n_reference",
)


def node_names(engine: Engine) -> list[str]:
    """Every node's name, in order (the picker's options)."""
    with engine.connect() as conn:
        return [node.name for node in nodes.list_nodes(conn)]


@dataclass(frozen=True)
class NodeCard:
    """One node as it stands now."""

    name: str
    site: str | None
    group_name: str | None
    #: "node", or "labeller" (a back-office token: no heartbeats, no records of its own).
    role: str
    #: online, degraded, offline, silent or revoked (None: a labeller).
    status: str | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None
    #: When the health job last judged it (None: never), and what it found wrong.
    checked_at: datetime | None
    problems: tuple[str, ...]
    #: The version it runs, as its last judged heartbeat said.
    model_version: str | None
    #: Its clock's skew (device minus received time, seconds) when seen within RECENT_SKEW.
    clock_skew_seconds: float | None
    clock_skew_at: datetime | None
    #: From its last judged heartbeat: SDK drops by reason (totals since the SDK started),
    #: spool backlog and queue depth (records), runtime p95 latency and error count.
    dropped: dict[str, int] = field(default_factory=dict)
    spool_records: int | None = None
    queue_depth: int | None = None
    latency_p95_ms: float | None = None
    errors: int | None = None
    #: The models it is registered for, by name.
    models: tuple[str, ...] = ()

    @property
    def colour(self) -> str:
        return STATUS_COLOUR.get(self.status or "", "gray")

    @property
    def lost(self) -> int:
        """Records the SDK lost (every drop reason but its sampling)."""
        return sum(n for reason, n in self.dropped.items() if reason != SAMPLED_OUT)


def node_card(
    engine: Engine, name: str, now: datetime, offline_after_seconds: int
) -> NodeCard | None:
    """The node called ``name`` now (None: no such node); offline when its last heartbeat is
    older than ``offline_after_seconds`` before ``now``."""
    with engine.connect() as conn:
        states = readout.node_states(conn, now - timedelta(seconds=offline_after_seconds))
        state = next((s for s in states if s.name == name), None)
        if state is None:
            return None
        judged = health.health_by_node(conn).get(name)
        node = nodes.get_node(conn, name)
        granted = nodes.node_model_names(conn).get(node.id, [])
    recent_skew = state.clock_skew_at is not None and state.clock_skew_at >= now - RECENT_SKEW
    return NodeCard(
        name=state.name,
        site=state.site,
        group_name=state.group_name,
        role=state.role,
        status=state.status,
        last_seen_at=state.last_seen_at,
        last_heartbeat_at=state.last_heartbeat_at,
        checked_at=state.checked_at,
        problems=state.problems,
        model_version=state.model_version,
        clock_skew_seconds=state.clock_skew_seconds if recent_skew else None,
        clock_skew_at=state.clock_skew_at if recent_skew else None,
        dropped=dict(judged.dropped) if judged else {},
        spool_records=judged.spool_records if judged else None,
        queue_depth=judged.queue_depth if judged else None,
        latency_p95_ms=judged.latency_p95_ms if judged else None,
        errors=judged.errors if judged else None,
        models=tuple(sorted(granted)),
    )


@dataclass(frozen=True)
class Marker:
    """A moment drawn across the timelines: a change of the version the node runs, or a
    rollout event of the model."""

    at: datetime
    kind: str  # "version" or "rollout"
    text: str


@dataclass(frozen=True)
class NodeTimelines:
    """One node's timelines for one model over a period."""

    node: str
    model: str
    #: One row per heartbeat kept (TELEMETRY_COLUMNS, then ``dropped:<reason>`` per loss
    #: reason seen), oldest first: the ``beats`` heartbeats of the period, or one per bucket of
    #: ``bucket_seconds`` when there are more than a chart needs.
    telemetry: pd.DataFrame
    drop_reasons: tuple[str, ...]
    beats: int
    bucket_seconds: float | None
    markers: tuple[Marker, ...]
    #: The node scope's stored drift and performance rows, one per analysed window in which
    #: the node was judged (DRIFT_COLUMNS, PERFORMANCE_COLUMNS), oldest first.
    drift: pd.DataFrame
    performance: pd.DataFrame
    #: "accuracy" (classification) or "mae" (regression): the performance figure drawn.
    metric: str
    #: Each window's drifted features at the node scope (DRIFTED_FEATURE_COLUMNS), newest
    #: window first.
    drifted_features: pd.DataFrame
    #: Analysed windows of the model in the period (whether or not the node was judged).
    windows: int
    #: The version the node should run now, and why (pinned, canary, production); None:
    #: nothing deployed.
    assigned: str | None = None
    assigned_reason: str | None = None
    #: The node scope's stored estimates (``estimates.ESTIMATE_COLUMNS``) and multivariate
    #: drift (``estimates.MULTIVARIATE_COLUMNS``), one row per window that has one, oldest
    #: first; why the model's performance cannot be estimated (None: it can, or nothing says).
    estimated: pd.DataFrame = field(default_factory=lambda: estimates.estimate_frame([]))
    multivariate: pd.DataFrame = field(default_factory=lambda: estimates.multivariate_frame([]))
    not_estimable: str | None = None


def node_timelines(
    engine: Engine, name: str, model: str, start: datetime | None, end: datetime
) -> NodeTimelines:
    """The timelines of node ``name`` for ``model``: heartbeats received in ``[start, end)``
    and the windows that end after ``start`` and start before ``end`` (None: from the first)."""
    with engine.connect() as conn:
        node = nodes.get_node(conn, name)
        found = models.get_model(conn, model)
        sent = telemetry.node_telemetry(conn, node.id, model_id=found.id, start=start, end=end)
        period: dict[str, Any] = {
            "ending_after": start,
            "starting_before": end,
            "limit": MAX_WINDOWS,
        }
        windows = timelines.window_starts(conn, found.id, **period)
        matrix = timelines.drift_matrix(conn, found.id, NODE, name, **period)
        kinds = (PERFORMANCE, ESTIMATION, MULTIVARIATE)
        stored = timelines.scope_timelines(conn, found.id, kinds, NODE, name, **period)
        performance = stored[PERFORMANCE]
        # A model that cannot be estimated stores the fleet's row alone, saying why.
        fleet = (
            timelines.estimation_timeline(conn, found.id, FLEET, FLEET_KEY, **period | {"limit": 1})
            if windows and not stored[ESTIMATION]
            else []
        )
        history = registry.rollout_history(conn, found.id)
        assignment = registry.assignment_for(conn, found.id, found.name, node)
    frame, reasons = _telemetry_frame(sent.beats)
    markers = [
        Marker(change.received_at, "version", _change_text(change))
        for change in sent.version_changes
    ]
    markers += [
        Marker(event["at"], "rollout", _rollout_text(event))
        for event in history
        if (start is None or event["at"] >= start)
        and event["at"] < end
        and _concerns(event, node.group_name)
    ]
    perf = pd.DataFrame(
        [
            {
                "window_start": row.window_start,
                "window_end": row.window_end,
                **{c: getattr(row.result, c) for c in PERFORMANCE_COLUMNS[2:]},
            }
            for row in performance
        ],
        columns=list(PERFORMANCE_COLUMNS),
    )
    regression = any(row.result.task == "regression" for row in performance)
    return NodeTimelines(
        node=name,
        model=found.name,
        telemetry=frame,
        drop_reasons=reasons,
        beats=sent.total,
        bucket_seconds=sent.bucket_seconds,
        markers=tuple(sorted(markers, key=lambda m: m.at)),
        drift=pd.DataFrame(
            [
                {
                    "window_start": row.window_start,
                    "window_end": row.window_end,
                    **{c: getattr(row.result, c) for c in DRIFT_COLUMNS[2:]},
                }
                for row in matrix.windows
            ],
            columns=list(DRIFT_COLUMNS),
        ),
        performance=perf,
        metric="mae" if regression else "accuracy",
        drifted_features=_drifted_features(matrix),
        windows=len(windows),
        assigned=assignment.version.version if assignment else None,
        assigned_reason=assignment.reason if assignment else None,
        estimated=estimates.estimate_frame(stored[ESTIMATION]),
        multivariate=estimates.multivariate_frame(
            estimates.multivariate_rows(stored[MULTIVARIATE], f"Node {name}")
        ),
        not_estimable=estimates.not_estimable(fleet),
    )


def _telemetry_frame(beats: list[telemetry.Beat]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The beats as a frame with a column per loss reason seen in any of them (a beat without
    it counts None: it did not say)."""
    reasons = tuple(sorted({r for beat in beats for r in beat.dropped if r != SAMPLED_OUT}))
    rows = [
        {
            **{column: getattr(beat, column) for column in TELEMETRY_COLUMNS},
            **{DROPPED_PREFIX + r: beat.dropped.get(r) for r in reasons},
        }
        for beat in beats
    ]
    columns = [*TELEMETRY_COLUMNS, *(DROPPED_PREFIX + r for r in reasons)]
    return pd.DataFrame(rows, columns=columns), reasons


def _drifted_features(matrix: timelines.FeatureMatrix) -> pd.DataFrame:
    rows = [
        {
            "window_start": window.window_start,
            **{c: getattr(cell, c) for c in DRIFTED_FEATURE_COLUMNS[1:]},
        }
        for window in reversed(matrix.windows)
        for feature in matrix.features
        if (cell := matrix.cell(window.window_start, feature)) is not None and cell.drifted
    ]
    return pd.DataFrame(rows, columns=list(DRIFTED_FEATURE_COLUMNS))


def _concerns(event: dict[str, Any], group: str | None) -> bool:
    """Whether a rollout event can change what a node of ``group`` runs."""
    if event["action"] not in ROLLOUT_ACTIONS:
        return False
    if event["action"] in ("pin", "unpin"):
        return group is not None and (event.get("details") or {}).get("group") == group
    return True


def _change_text(change: telemetry.VersionChange) -> str:
    return f"version {change.previous} → {change.version}"


def _rollout_text(event: dict[str, Any]) -> str:
    action = str(event["action"])
    version = event.get("version")
    details = event.get("details") or {}
    text = f"{action} {version}" if version else action
    if action == "canary" and isinstance(details.get("share"), (int, float)):
        text += f" ({details['share']:.0%})"
    if action in ("pin", "unpin") and details.get("group"):
        text += f" for {details['group']}"
    return text
