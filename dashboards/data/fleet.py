"""What the Fleet page shows: every node's state now beside its drift and accuracy in the latest
analysed window, per-site figures, and the tiles' counts, prepared without reading a record.

Node status, last seen, clock skew and model version come from ``storage.readout.node_states``
through ``commands.results.fleet_status`` (the CLI's ``status``: both say the same), runtime
telemetry from the health job's rows (``storage.health``), drift verdicts and drifted features
from the stored results of the latest analysed window, accuracy from the latest window with
labels, records per hour from the accepted batches (one grouped query), open alerts from the
alerts table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine

from monitor import wire
from monitor.commands import results as readers
from monitor.schema import DRIFT, PerformanceScope
from monitor.storage import alerts, fleet, models, readout, registry, results
from monitor.storage.readout import FLEET, FLEET_KEY, NODE, SITE, WindowSummary
from monitor.storage.results import Stored, WindowResults

#: A node's health on the page, worst first: its status now, or what its latest window found.
#: ``HEALTH_ORDER[h]`` sorts the table; ``HEALTH_COLOUR[h]`` colours it.
HEALTH = ("offline", "degraded", "drifting", "clock skew", "silent", "online", "revoked")
HEALTH_ORDER = {name: i for i, name in enumerate(HEALTH)}
RED, AMBER, GREEN, GREY = "red", "amber", "green", "grey"
HEALTH_COLOUR = {
    "offline": RED,
    "degraded": AMBER,
    "drifting": AMBER,
    "clock skew": AMBER,
    "silent": GREY,
    "online": GREEN,
    "revoked": GREY,
}
#: Records received over this span make a node's rate.
RATE_SPAN = timedelta(hours=1)
#: The site of nodes registered without one, as the page names it.
NO_SITE = "(no site)"
#: Drop reasons that are SDK drops (sampling out is a choice, not a loss).
DROPS = tuple(reason for reason in wire.DROP_REASONS if reason != "sampled_out")
#: Firing alerts listed on the page (the Alerts page has them all).
SHOWN_ALERTS = 10

#: The node table's columns, in order.
NODE_COLUMNS = (
    "health",
    "node",
    "status",
    "site",
    "group",
    "last_seen",
    "model_version",
    "records_per_hour",
    "drifted",
    "drifting_features",
    "accuracy",
    "label_coverage",
    "latency_p95_ms",
    "sdk_drops",
    "spool_records",
    "problems",
)
#: The site table's columns, in order.
SITE_COLUMNS = (
    "site",
    "nodes",
    "online",
    "offline",
    "nodes_drifting",
    "nodes_not_drifting",
    "nodes_no_verdict",
    "site_drifted",
    "drifting_features",
    "accuracy",
    "records_per_hour",
)


@dataclass(frozen=True)
class Accuracy:
    """The fleet's performance in the latest window with labels: its main figure (accuracy
    for a classifier, MAE for a regression), coverage and counts."""

    window_start: datetime
    window_end: datetime
    metric: str
    value: float | None
    status: str
    n_labelled: int
    n_rows: int
    label_coverage: float | None


@dataclass(frozen=True)
class SiteDrift:
    """A site whose scope drifted in the latest window: how many of its nodes drifted too,
    and on which features the site did."""

    site: str
    nodes_drifting: int
    nodes: int
    features: tuple[str, ...]


@dataclass(frozen=True)
class OpenAlert:
    """A firing alert as the page lists it."""

    id: int
    severity: str
    rule: str
    model: str | None
    summary: str
    fired_at: datetime


@dataclass(frozen=True)
class FleetView:
    """Everything the Fleet page draws for one model, at ``now``."""

    model: str
    now: datetime
    #: "ready"; "no_reference" (no version with reference data); "no_window" (nothing
    #: analysed yet). Node health is shown in every case.
    stage: str
    #: Devices by status now (``readout.STATUSES``), as `edge-monitor status` counts them.
    counts: dict[str, int]
    #: Nodes whose clock sent implausible times lately (as `status` lists them).
    skewed: tuple[str, ...]
    window_start: datetime | None = None
    window_end: datetime | None = None
    window_records: int | None = None
    window_revision: int | None = None
    #: Node scopes judged, and drifted, in the latest window.
    nodes_judged: int = 0
    nodes_drifting: int = 0
    #: The fleet scope's drifted features (empty when the fleet did not drift).
    fleet_drifted: tuple[str, ...] = ()
    drifting_sites: tuple[SiteDrift, ...] = ()
    accuracy: Accuracy | None = None
    alerts_by_severity: dict[str, int] = field(default_factory=dict)
    open_alerts: tuple[OpenAlert, ...] = ()
    #: One row per device (labellers left out), worst first: ``NODE_COLUMNS``.
    nodes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=NODE_COLUMNS))
    #: One row per site, most drifting nodes first: ``SITE_COLUMNS``.
    sites: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SITE_COLUMNS))

    @property
    def devices(self) -> int:
        """Nodes in service (every status but revoked)."""
        return sum(n for status, n in self.counts.items() if status != "revoked")

    @property
    def alerts_firing(self) -> int:
        return sum(self.alerts_by_severity.values())

    def headline(self) -> str:
        """Where the latest window drifted, in one line: the drifting sites (with how many of
        their nodes drifted), else the drifting nodes, else that nothing drifted."""
        if self.window_start is None:
            return "No window analysed yet"
        parts = []
        if self.fleet_drifted:
            parts.append(f"the whole fleet on {', '.join(self.fleet_drifted)}")
        for site in self.drifting_sites:
            on = f" on {', '.join(site.features)}" if site.features else ""
            parts.append(f"site {site.site} ({site.nodes_drifting} of {site.nodes} nodes){on}")
        if parts:
            return "Drifting: " + "; ".join(parts)
        if self.nodes_drifting:
            drifting = self.nodes[self.nodes["drifted"].eq(True)]["node"].tolist()
            shown = ", ".join(drifting[:5]) + (" and more" if len(drifting) > 5 else "")
            return f"Drifting: {self.nodes_drifting} of {self.nodes_judged} nodes ({shown})"
        return "No drift in the latest window"


def fleet_view(engine: Engine, model: str, now: datetime, offline_after_seconds: int) -> FleetView:
    """The Fleet page of ``model`` at ``now`` (a ``common.read`` function): nodes judged
    offline after ``offline_after_seconds`` without a heartbeat, as the health job does."""
    states = readers.node_states(engine, timedelta(seconds=offline_after_seconds), now=now)
    # Counted as `edge-monitor status` counts them.
    counts = readers.status_counts(states)
    skewed = {s.name for s in readers.recently_skewed(states, now)}
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        has_reference = any(v.reference_rows for v in registry.versions(conn, found.id))
        summaries = readout.window_summaries(conn, found.id, limit=1)
        latest = summaries[0] if summaries else None
        judged = None if latest is None else latest_verdicts(conn, found.id, latest)
        performance = readout.latest_labelled_performance(conn, found.id)
        scores = (
            []
            if performance is None
            else results.performance(conn, found.id, **_at(performance.window_start))
        )
        telemetry = fleet.runtime_figures(conn)
        rates = fleet.records_received_by_node(conn, found.id, now - RATE_SPAN)
        by_severity = fleet.firing_alerts(conn)
        firing = alerts.list_alerts(conn, state=alerts.FIRING, limit=SHOWN_ALERTS)
    verdicts = judged.verdicts if judged else {}
    drifting_nodes = judged.drifting(NODE) if judged else {}
    node_scores = {r.scope_key: r.result for r in scores if r.scope_kind == NODE}
    site_scores = {r.scope_key: r.result for r in scores if r.scope_kind == SITE}
    rows = []
    for state in states:
        if state.status is None:  # a labeller: no device to watch
            continue
        verdict = verdicts.get((NODE, state.name))
        beat = telemetry.get(state.name)
        score = node_scores.get(state.name)
        rows.append(
            {
                "health": _health(state.status, verdict, state.name in skewed),
                "node": state.name,
                "status": state.status,
                "site": state.site or NO_SITE,
                "group": state.group_name,
                "last_seen": state.last_seen_at,
                "model_version": state.model_version,
                "records_per_hour": rates.get(state.name, 0),
                "drifted": verdict,
                "drifting_features": ", ".join(drifting_nodes.get(state.name, [])),
                "accuracy": _figure(score) if score is not None else None,
                "label_coverage": score.label_coverage if score is not None else None,
                "latency_p95_ms": beat.latency_p95_ms if beat is not None else None,
                # A node that never reported its counters has no figure, not zero drops.
                "sdk_drops": sum(beat.dropped.get(r, 0) for r in DROPS)
                if beat is not None and beat.dropped
                else None,
                "spool_records": beat.spool_records if beat is not None else None,
                "problems": "; ".join(state.problems),
            }
        )
    nodes = _node_frame(rows)
    site_verdicts = {key: v for (kind, key), v in verdicts.items() if kind == SITE}
    site_features = judged.drifting(SITE) if judged else {}
    sites = _site_frame(nodes, site_verdicts, site_features, site_scores)
    site_nodes = {row.site: (row.nodes_drifting, row.nodes) for row in sites.itertuples()}
    drifting_sites = tuple(
        SiteDrift(key, *site_nodes.get(key, (0, 0)), tuple(features))
        for key, features in site_features.items()
    )
    stage = "no_reference" if not has_reference else "no_window" if latest is None else "ready"
    return FleetView(
        model=found.name,
        now=now,
        stage=stage,
        counts=counts,
        skewed=tuple(sorted(skewed)),
        window_start=latest.window_start if latest else None,
        window_end=latest.window_end if latest else None,
        window_records=latest.fleet.result.n_rows if latest else None,
        window_revision=latest.revision if latest else None,
        nodes_judged=latest.nodes if latest else 0,
        nodes_drifting=latest.nodes_drifting if latest else 0,
        fleet_drifted=tuple(judged.fleet_drifted()) if judged else (),
        drifting_sites=drifting_sites,
        accuracy=_accuracy(performance),
        alerts_by_severity=by_severity,
        open_alerts=tuple(
            OpenAlert(a.id, a.severity, a.rule, a.model, a.summary, a.fired_at) for a in firing
        ),
        nodes=nodes,
        sites=sites,
    )


@dataclass(frozen=True)
class Verdicts:
    """The latest window's drift verdict of every scope, and the drifted scopes' results
    (their feature rows only: the rest are not needed to say what drifted)."""

    #: By (scope kind, scope key): drifted, not drifted, or None (too little data).
    verdicts: dict[tuple[str, str], bool | None]
    drifted: WindowResults

    def drifting(self, scope_kind: str) -> dict[str, list[str]]:
        """The drifting scopes of a kind, by key, with their drifted features
        (``WindowResults.drifted_features``, as `edge-monitor status` lists them)."""
        rows = sorted(self.drifted.drifting_scopes(scope_kind), key=lambda r: r.scope_key)
        return {r.scope_key: self.drifted.drifted_features(scope_kind, r.scope_key) for r in rows}

    def fleet_drifted(self) -> list[str]:
        """The fleet's drifted features, when the fleet scope drifted."""
        if not self.verdicts.get((FLEET, FLEET_KEY)):
            return []
        return self.drifted.drifted_features()


def latest_verdicts(conn: Connection, model_id: int, latest: WindowSummary) -> Verdicts:
    """Every scope's verdict in the window, and the feature rows of the drifted scopes only:
    at 1,000 nodes the window holds some 28,000 drift feature rows, of which the drifted
    scopes' are a few hundred."""
    rows = results.drift(conn, model_id, **_at(latest.window_start))
    drifted = [r for r in rows if r.result.drifted]
    features = results.features(conn, DRIFT, [r.id for r in drifted])
    window = WindowResults(
        model_id=model_id,
        window_start=latest.window_start,
        window_end=latest.window_end,
        drift=drifted,
        drift_features=features,
    )
    return Verdicts({(r.scope_kind, r.scope_key): r.result.drifted for r in rows}, window)


def _at(window_start: datetime) -> dict[str, datetime]:
    # The rows of one window: those starting at its start (results' filters are [start, end)).
    return {"start": window_start, "end": window_start + timedelta(microseconds=1)}


def _health(status: str, drifted: bool | None, skewed: bool) -> str:
    """The worst of the node's status now, its drift verdict and a recent clock skew."""
    if status in ("offline", "degraded", "revoked", "silent"):
        return status
    if drifted:
        return "drifting"
    if skewed:
        return "clock skew"
    return "online"


def _figure(performance: Any) -> float | None:
    """The main figure of a performance row: accuracy for a classifier, MAE else."""
    return performance.accuracy if performance.task != "regression" else performance.mae


def _accuracy(stored: Stored[Any] | None) -> Accuracy | None:
    if stored is None:
        return None
    p = stored.result
    return Accuracy(
        window_start=stored.window_start,
        window_end=stored.window_end,
        metric="MAE" if p.task == "regression" else "accuracy",
        value=_figure(p),
        status=p.status,
        n_labelled=p.n_labelled,
        n_rows=p.n_rows,
        label_coverage=p.label_coverage,
    )


def _node_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(NODE_COLUMNS))
    frame["records_per_hour"] = frame["records_per_hour"].astype("int64")
    for name in ("accuracy", "label_coverage", "latency_p95_ms"):
        frame[name] = frame[name].astype("float64")
    for name in ("sdk_drops", "spool_records"):
        frame[name] = frame[name].astype("Int64")
    frame["drifted"] = frame["drifted"].astype("boolean")
    frame["last_seen"] = pd.to_datetime(frame["last_seen"], utc=True)
    order = frame["health"].map(HEALTH_ORDER)
    frame = frame.assign(_order=order).sort_values(["_order", "node"], kind="stable")
    return frame.drop(columns="_order").reset_index(drop=True)


def _site_frame(
    nodes: pd.DataFrame,
    verdicts: dict[str, bool | None],
    features: dict[str, list[str]],
    performance: dict[str, PerformanceScope],
) -> pd.DataFrame:
    """Per site: nodes, online and offline now, its nodes' drift verdicts in the latest window,
    the site scope's own verdict and drifted features there, its accuracy in the window of
    the fleet's."""
    if nodes.empty:
        return pd.DataFrame(columns=list(SITE_COLUMNS))
    grouped = nodes.groupby("site", sort=True)
    frame = pd.DataFrame(
        {
            "nodes": grouped.size(),
            "online": grouped["status"].agg(lambda s: int((s == "online").sum())),
            "offline": grouped["status"].agg(lambda s: int((s == "offline").sum())),
            "nodes_drifting": grouped["drifted"].agg(lambda s: int(s.eq(True).sum())),
            "nodes_not_drifting": grouped["drifted"].agg(lambda s: int(s.eq(False).sum())),
            "records_per_hour": grouped["records_per_hour"].sum(),
        }
    )
    frame["nodes_no_verdict"] = (
        frame["nodes"] - frame["nodes_drifting"] - frame["nodes_not_drifting"]
    )
    frame = frame.reset_index()
    frame["accuracy"] = [
        _figure(performance[s]) if s in performance else None for s in frame["site"]
    ]
    frame["accuracy"] = frame["accuracy"].astype("float64")
    frame["site_drifted"] = pd.array([verdicts.get(s) for s in frame["site"]], dtype="boolean")
    frame["drifting_features"] = [", ".join(features.get(s, [])) for s in frame["site"]]
    frame = frame.sort_values(["nodes_drifting", "site"], ascending=[False, True], kind="stable")
    return frame[list(SITE_COLUMNS)].reset_index(drop=True)
