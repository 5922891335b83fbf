"""The Models page's data: a model's versions and stages, its deployment, the canary's progress,
the rollout history as spans, and which node runs which version, prepared from
``monitor.storage`` (no Streamlit here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from monitor.storage import models, registry, results, retrains, rollouts
from monitor.storage.registry import Deployment

#: Rollout events read at most (the newest).
MAX_EVENTS = 1000

VERSION_COLUMNS = [
    "version",
    "stage",
    "role",
    "registered_at",
    "promoted_at",
    "reference_rows",
    "deployable",
    "assigned_nodes",
    "reporting_nodes",
    "metrics",
    "gate",
]
NODE_COLUMNS = [
    "node",
    "site",
    "group",
    "assigned",
    "reason",
    "reported",
    "checked_at",
    "records_version",
    "records_at",
    "mismatch",
]


@dataclass(frozen=True)
class Canary:
    """Where the running canary stands."""

    version: str
    share: float
    #: The nodes it is assigned to now.
    nodes: tuple[str, ...]
    #: Started by a retrain run (its id), else by hand (None: no job will judge it).
    run_id: int | None
    started_at: datetime | None
    #: Analysed windows that count so far (the first after the start does not: nodes swap).
    windows_judged: int
    windows_wanted: int


@dataclass(frozen=True)
class ModelView:
    """One model on the Models page."""

    model: str
    #: One row per version, oldest first.
    versions: pd.DataFrame
    production: str | None
    previous: str | None
    canary: Canary | None
    #: Pinned group -> version.
    pins: dict[str, str]
    #: One row per node of the model (``NODE_COLUMNS``), by name.
    nodes: pd.DataFrame
    #: Nodes per version: assigned and reported (long form: version, side, nodes).
    per_version: pd.DataFrame
    #: Rollout spans (version, role, start, end) and the events (at, action, version, details).
    spans: pd.DataFrame
    events: pd.DataFrame


def model_view(
    engine: Engine, model: str, canary_windows: int, start: datetime | None, end: datetime
) -> ModelView:
    """Everything the Models page shows of ``model``; rollout events of ``[start, end)``
    (spans cut to it). ``canary_windows``: ``MONITOR_RETRAIN_CANARY_WINDOWS``, for a canary
    whose run did not record its own."""
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        versions = registry.versions(conn, found.id)
        deployment = registry.deployment(conn, found.id)
        history = list(reversed(registry.rollout_history(conn, found.id, limit=MAX_EVENTS)))
        runs = retrains.list_runs(conn, model_id=found.id, limit=200)
        nodes = rollouts.node_versions(conn, found.id)
        canary = _canary(conn, found.id, deployment, runs, history, nodes, canary_windows)
    node_frame = pd.DataFrame(
        [
            {
                "node": n.node,
                "site": n.site or "",
                "group": n.group_name or "",
                "assigned": n.assigned or "",
                "reason": n.reason or "",
                "reported": n.reported or "",
                "checked_at": n.reported_at,
                "records_version": n.records_version or "",
                "records_at": n.records_at,
                "mismatch": n.mismatch,
            }
            for n in nodes
        ],
        columns=NODE_COLUMNS,
    )
    for column in ("checked_at", "records_at"):
        node_frame[column] = pd.to_datetime(node_frame[column], utc=True)
    gates = {
        r.version: r.details["gate"]
        for r in reversed(runs)  # oldest first: the newest run of a version wins
        if r.version and isinstance(r.details.get("gate"), dict)
    }
    assigned = node_frame["assigned"].value_counts().to_dict()
    reported = node_frame["reported"].value_counts().to_dict()
    version_frame = pd.DataFrame(
        [
            {
                "version": v.version,
                "stage": v.stage,
                "role": _role(v.id, deployment),
                "registered_at": v.registered_at,
                "promoted_at": v.promoted_at,
                "reference_rows": v.reference_rows,
                "deployable": v.deployable,
                "assigned_nodes": int(assigned.get(v.version, 0)),
                "reporting_nodes": int(reported.get(v.version, 0)),
                "metrics": _figures(v.metrics),
                "gate": _gate(gates.get(v.version)),
            }
            for v in versions
        ],
        columns=VERSION_COLUMNS,
    )
    for column in ("registered_at", "promoted_at"):
        version_frame[column] = pd.to_datetime(version_frame[column], utc=True)
    return ModelView(
        model=found.name,
        versions=version_frame,
        production=_name(deployment.production),
        previous=_name(deployment.previous),
        canary=canary,
        pins={group: v.version for group, v in deployment.pins.items()},
        nodes=node_frame,
        per_version=_per_version(node_frame),
        spans=rollout_spans(history, start, end),
        events=_events(history, start, end),
    )


def _name(version: registry.Version | None) -> str | None:
    return None if version is None else version.version


def _role(version_id: int, deployment: Deployment) -> str:
    """What the version does in the rollout, in words."""
    roles = []
    if deployment.production is not None and deployment.production.id == version_id:
        roles.append("production")
    if deployment.canary is not None and deployment.canary.id == version_id:
        roles.append(f"canary ({deployment.canary_share:.0%})")
    groups = [g for g, v in deployment.pins.items() if v.id == version_id]
    if groups:
        roles.append("pinned: " + ", ".join(groups))
    if deployment.previous is not None and deployment.previous.id == version_id:
        roles.append("previous (rollback target)")
    return "; ".join(roles)


def _figures(metrics: dict[str, Any] | None) -> str:
    """A version's registered metrics: the numbers, rounded, by name."""
    if not metrics:
        return ""
    shown = [
        f"{key} {value:.4g}"
        for key, value in sorted(metrics.items())
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    return ", ".join(shown)


def _gate(figures: dict[str, Any] | None) -> str:
    """The promotion gate's verdict on the version, with its accuracies."""
    if not figures:
        return ""
    verdict = "passed" if figures.get("passed") else "failed"
    accuracies = [
        f"{label} {value:.4f}"
        for label, value in (
            ("candidate", figures.get("candidate_accuracy")),
            ("production", figures.get("production_accuracy")),
        )
        if isinstance(value, int | float)
    ]
    return verdict + (f" ({', '.join(accuracies)})" if accuracies else "")


def _per_version(nodes: pd.DataFrame) -> pd.DataFrame:
    """Nodes per version, assigned and reported, for the bar chart."""
    rows = []
    for side, column in (("assigned", "assigned"), ("reported", "reported")):
        counts = nodes.loc[nodes[column] != "", column].value_counts()
        rows += [
            {"version": str(v), "side": side, "nodes": int(n)}
            for v, n in counts.sort_index().items()
        ]
    return pd.DataFrame(rows, columns=["version", "side", "nodes"])


def _canary(
    conn: Connection,
    model_id: int,
    deployment: Deployment,
    runs: list[retrains.Run],
    history: list[dict[str, Any]],
    nodes: list[rollouts.NodeVersion],
    canary_windows: int,
) -> Canary | None:
    """The running canary's progress, counted as the canary job counts it."""
    if deployment.canary is None:
        return None
    version = deployment.canary.version
    run = next((r for r in runs if r.status == "canary" and r.version == version), None)
    recorded = dict(run.details.get("canary") or {}) if run is not None else {}
    started: datetime | None = None
    if "started_at" in recorded:
        started = datetime.fromisoformat(str(recorded["started_at"]))
    else:
        started = next(
            (
                e["at"]
                for e in reversed(history)
                if e["action"] == "canary" and e["version"] == version
            ),
            None,
        )
    judged = 0
    if started is not None:
        windows = [
            w for w in results.analysed_since(conn, model_id, started) if w.window_start >= started
        ]
        judged = max(len(windows) - 1, 0)
    return Canary(
        version=version,
        share=deployment.canary_share,
        nodes=tuple(n.node for n in nodes if n.reason == "canary"),
        run_id=run.id if run is not None else None,
        started_at=started,
        windows_judged=judged,
        windows_wanted=int(recorded.get("windows", canary_windows)),
    )


def rollout_spans(
    history: list[dict[str, Any]], start: datetime | None, end: datetime
) -> pd.DataFrame:
    """The rollout as spans (oldest events first in ``history``): each version's time as
    production, as the canary and pinned to a group; open spans run to ``end``; cut to the
    range."""
    rows: list[dict[str, Any]] = []
    open_spans: dict[str, tuple[str, datetime]] = {}  # role -> (version, since)

    def close(role: str, at: datetime) -> None:
        if role in open_spans:
            version, since = open_spans.pop(role)
            rows.append({"version": version, "role": role, "start": since, "end": at})

    for event in history:
        action, version, at = event["action"], event["version"], event["at"]
        details = event.get("details") or {}
        if action in ("promote", "rollback") and version is not None:
            close("production", at)
            if open_spans.get("canary", (None,))[0] == version:
                close("canary", at)
            open_spans["production"] = (version, at)
        elif action == "canary" and version is not None:
            close("canary", at)
            open_spans["canary"] = (version, at)
        elif action == "canary_stop":
            close("canary", at)
        elif action == "pin" and version is not None:
            role = f"pinned: {details.get('group')}"
            close(role, at)
            open_spans[role] = (version, at)
        elif action == "unpin":
            close(f"pinned: {details.get('group')}", at)
    for role in list(open_spans):
        close(role, end)
    cut = []
    for row in rows:
        begin = row["start"] if start is None else max(row["start"], start)
        finish = min(row["end"], end)
        if finish > begin:
            cut.append({**row, "start": begin, "end": finish})
    frame = pd.DataFrame(cut, columns=["version", "role", "start", "end"])
    for column in ("start", "end"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame.sort_values(["start", "role"], kind="stable").reset_index(drop=True)


def _events(history: list[dict[str, Any]], start: datetime | None, end: datetime) -> pd.DataFrame:
    """Rollout events of the range, newest first."""
    frame = pd.DataFrame(
        [
            {
                "at": e["at"],
                "action": e["action"],
                "version": e["version"] or "",
                "details": ", ".join(
                    f"{k}: {v}" for k, v in sorted((e["details"] or {}).items()) if v is not None
                ),
            }
            for e in reversed(history)
            if (start is None or e["at"] >= start) and e["at"] < end
        ],
        columns=["at", "action", "version", "details"],
    )
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame
