"""What the Fleet page is given (``monitor.dashboards.data.fleet.fleet_view``) is what is stored
and what `edge-monitor status` says: node counts and clock skews, the latest window's drift
verdicts and drifted features, the latest labelled accuracy, the health job's runtime
figures, records received in the last hour, the firing alerts; nodes worst first; per-site
figures that add up; and the stage of a model that cannot be judged yet. On both backends."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from monitor.commands import results as readers
from monitor.dashboards.data import fleet as data
from monitor.dashboards.data.fleet import FleetView
from monitor.storage import alerts, fleet, health, models, readout, results
from monitor.storage.engine import make_engine
from monitor.storage.types import utcnow
from tests.dashboards.seed import Seeded


def view_of(seeded: Seeded) -> tuple[FleetView, readers.FleetStatus, datetime]:
    """The page's data and `status`'s, at the same moment."""
    now = utcnow()
    offline_after = seeded.offline_after
    view = data.fleet_view(seeded.engine, seeded.model, now, int(offline_after.total_seconds()))
    status = readers.fleet_status(seeded.engine, offline_after, model=seeded.model, now=now)
    return view, status, now


def row(view: FleetView, node: str) -> pd.Series:
    (found,) = view.nodes[view.nodes["node"] == node].to_dict("records")
    return pd.Series(found)


def test_node_counts_and_clock_skews_are_what_status_says(seeded: Seeded) -> None:
    view, status, _ = view_of(seeded)

    assert view.counts == status.counts
    assert view.skewed == tuple(sorted(s.name for s in status.skewed))
    assert seeded.skewed_node in view.skewed
    assert view.counts["offline"] >= 1 and view.counts["silent"] >= 1
    assert view.devices == len(seeded.nodes)
    assert set(view.nodes["node"]) == set(seeded.nodes)
    statuses = {s.name: s.status for s in status.nodes}
    assert dict(zip(view.nodes["node"], view.nodes["status"], strict=True)) == statuses


def test_drift_is_the_latest_windows_stored_verdicts_as_status_lists_them(seeded: Seeded) -> None:
    view, status, _ = view_of(seeded)
    (mine,) = status.models
    assert mine.latest is not None
    with seeded.engine.connect() as conn:
        stored = results.window(conn, seeded.model_id, mine.latest.window_start)
    assert stored is not None

    assert view.stage == "ready"
    assert view.window_start == mine.latest.window_start == seeded.window_starts[-1]
    assert view.window_records == mine.latest.fleet.result.n_rows
    assert (view.nodes_judged, view.nodes_drifting) == (
        mine.latest.nodes,
        mine.latest.nodes_drifting,
    )
    assert list(view.fleet_drifted) == mine.fleet_drifted
    drifting = dict(mine.drifting["node"])
    assert view.nodes_drifting == len(drifting) > 0
    for node in seeded.nodes:
        shown = row(view, node)
        verdict = next(
            (
                r.result.drifted
                for r in stored.drift
                if (r.scope_kind, r.scope_key) == ("node", node)
            ),
            None,
        )
        assert (None if pd.isna(shown["drifted"]) else bool(shown["drifted"])) == verdict, node
        assert shown["drifting_features"] == ", ".join(drifting.get(node, [])), node
        assert shown["drifting_features"] == ", ".join(
            stored.drifted_features("node", node) if verdict else []
        )
    sites = {s.site: list(s.features) for s in view.drifting_sites}
    assert sites == dict(mine.drifting["site"])
    assert seeded.drifting_site in sites


def test_the_headline_names_the_drifting_site_with_its_drifting_nodes(seeded: Seeded) -> None:
    view, _, _ = view_of(seeded)
    at_site = view.nodes[view.nodes["site"] == seeded.drifting_site]
    drifting = int(at_site["drifted"].eq(True).sum())

    (site,) = [s for s in view.drifting_sites if s.site == seeded.drifting_site]
    assert (site.nodes_drifting, site.nodes) == (drifting, len(at_site))
    assert drifting == len(at_site) == 4  # the seed drifts every node of the site
    assert f"site {seeded.drifting_site} ({drifting} of {len(at_site)} nodes)" in view.headline()
    assert view.headline().startswith("Drifting: ")


def test_accuracy_is_the_latest_labelled_windows_for_the_fleet_each_site_and_node(
    seeded: Seeded,
) -> None:
    view, _, _ = view_of(seeded)
    with seeded.engine.connect() as conn:
        latest = readout.latest_labelled_performance(conn, seeded.model_id)
        assert latest is not None
        start = latest.window_start
        rows = results.performance(
            conn, seeded.model_id, start=start, end=start + timedelta(microseconds=1)
        )
    p = latest.result

    assert view.accuracy == data.Accuracy(
        start,
        latest.window_end,
        "accuracy",
        p.accuracy,
        p.status,
        p.n_labelled,
        p.n_rows,
        p.label_coverage,
    )
    assert p.accuracy is not None and 0 < p.n_labelled < p.n_rows
    nodes = {r.scope_key: r.result for r in rows if r.scope_kind == "node"}
    for node in seeded.nodes:
        shown = row(view, node)
        stored = nodes.get(node)
        if stored is None or stored.accuracy is None:
            assert pd.isna(shown["accuracy"]), node
        else:
            assert shown["accuracy"] == stored.accuracy
            assert shown["label_coverage"] == stored.label_coverage
    sites = {r.scope_key: r.result.accuracy for r in rows if r.scope_kind == "site"}
    shown_sites = dict(zip(view.sites["site"], view.sites["accuracy"], strict=True))
    assert shown_sites == pytest.approx(sites)


def test_runtime_figures_are_the_health_jobs(seeded: Seeded) -> None:
    view, _, _ = view_of(seeded)
    with seeded.engine.connect() as conn:
        checked = health.health_by_node(conn)

    for node in seeded.nodes:
        shown, stored = row(view, node), checked[node]
        assert _value(shown["latency_p95_ms"]) == stored.latency_p95_ms, node
        assert _value(shown["spool_records"]) == stored.spool_records, node
        drops = sum(stored.dropped.get(r, 0) for r in data.DROPS) if stored.dropped else None
        assert _value(shown["sdk_drops"]) == drops, node
        assert shown["model_version"] == stored.model_version
    assert row(view, seeded.lossy_node)["sdk_drops"] > 0
    assert "sampled_out" not in data.DROPS


def test_records_per_hour_are_the_records_received_in_the_hour(seeded: Seeded) -> None:
    view, _, now = view_of(seeded)
    with seeded.engine.connect() as conn:
        stored = fleet.records_received_by_node(conn, seeded.model_id, now - data.RATE_SPAN)

    shown = dict(zip(view.nodes["node"], view.nodes["records_per_hour"], strict=True))
    assert shown == {node: stored.get(node, 0) for node in seeded.nodes}
    assert shown[seeded.offline_node] == 0  # silent since window 3, over an hour ago
    assert sum(shown.values()) > 0


def test_nodes_are_listed_worst_first(seeded: Seeded) -> None:
    view, _, _ = view_of(seeded)
    order = [data.HEALTH_ORDER[h] for h in view.nodes["health"]]

    assert order == sorted(order)
    assert view.nodes["node"].iloc[0] == seeded.offline_node
    assert row(view, seeded.offline_node)["health"] == "offline"
    assert row(view, seeded.silent_node)["health"] == "silent"
    assert row(view, seeded.lossy_node)["health"] == "degraded"
    healthy = view.nodes[view.nodes["status"] == "online"]
    assert set(healthy["health"]) <= {"online", "drifting", "clock skew"}
    assert (healthy["health"] == "drifting").tolist() == healthy["drifted"].eq(True).tolist()


def test_each_site_counts_its_nodes_and_the_sites_add_up(seeded: Seeded) -> None:
    view, _, _ = view_of(seeded)
    sites = view.sites.set_index("site")

    assert set(sites.index) == set(seeded.sites)
    for site, figures in sites.iterrows():
        at_site = view.nodes[view.nodes["site"] == site]
        assert figures["nodes"] == len(at_site)
        assert figures["online"] == int((at_site["status"] == "online").sum())
        assert figures["offline"] == int((at_site["status"] == "offline").sum())
        assert figures["nodes_drifting"] == int(at_site["drifted"].eq(True).sum())
        assert figures["records_per_hour"] == at_site["records_per_hour"].sum()
        assert bool(figures["site_drifted"]) == (site == seeded.drifting_site)
    assert sites["nodes"].sum() == view.devices
    assert sites["nodes_drifting"].sum() == view.nodes_drifting
    assert (sites[["nodes_drifting", "nodes_not_drifting", "nodes_no_verdict"]].sum(axis=1)).equals(
        sites["nodes"]
    )
    assert view.sites["site"].iloc[0] == seeded.drifting_site  # most drifting nodes first


def test_firing_alerts_are_counted_by_severity_and_listed_newest_first(seeded: Seeded) -> None:
    view, _, _ = view_of(seeded)
    with seeded.engine.connect() as conn:
        by_severity = fleet.firing_alerts(conn)
        firing = alerts.list_alerts(conn, state=alerts.FIRING, limit=data.SHOWN_ALERTS)

    assert view.alerts_by_severity == by_severity
    assert [a.id for a in view.open_alerts] == [a.id for a in firing]
    assert view.alerts_firing == sum(by_severity.values()) >= 3


def test_a_model_without_reference_data_shows_node_health_only(no_reference_url: str) -> None:
    engine = make_engine(no_reference_url)
    try:
        view = data.fleet_view(engine, "pump-failure", utcnow(), 1800)
    finally:
        engine.dispose()

    assert view.stage == "no_reference"
    assert view.window_start is None and view.accuracy is None
    assert view.headline() == "No window analysed yet"
    assert view.nodes.empty and view.sites.empty


def test_a_model_not_analysed_yet_shows_its_nodes_and_no_verdicts(no_window_url: str) -> None:
    engine = make_engine(no_window_url)
    try:
        view = data.fleet_view(engine, "pump-failure", utcnow(), 1800)
        with engine.connect() as conn:
            model_id = models.get_model(conn, "pump-failure").id
            stored = fleet.records_received_by_node(conn, model_id, utcnow() - timedelta(hours=1))
    finally:
        engine.dispose()

    assert view.stage == "no_window"
    assert view.window_start is None and view.nodes_drifting == 0
    assert len(view.nodes) == 3
    assert view.nodes["drifted"].isna().all()
    assert (view.nodes["drifting_features"] == "").all()
    assert dict(zip(view.nodes["node"], view.nodes["records_per_hour"], strict=True)) == stored
    assert view.sites["nodes_no_verdict"].sum() == 3


def _value(value: object) -> object:
    return (
        None
        if value is None or value is pd.NA or (isinstance(value, float) and pd.isna(value))
        else value
    )
