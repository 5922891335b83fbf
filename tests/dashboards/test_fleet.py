"""The Fleet page shows what is stored: its tiles count the nodes by status, the clock skews,
the drifting nodes, the fleet's latest labelled accuracy with its coverage and the firing
alerts; it names the drifting site; its site charts and table count each site's nodes; its
node table holds every node with its stored figures, worst first, linking to the node's page,
filters by site and health, searches by name and pages 50 at a time; and each empty state
says the command that comes next. On both backends."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import streamlit as st
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitor.commands import results as readers
from monitor.dashboards import common
from monitor.storage import alerts, fleet, models, nodes, readout
from monitor.storage.engine import begin_write, make_engine
from monitor.storage.types import utcnow
from tests.dashboards.seed import Seeded

REPO = Path(__file__).resolve().parents[2]
NODE_TABLE = ("health", "node", "records_per_hour")


def fleet_page(url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    """The Fleet page (the app's default) drawn on ``url``: no exception, no error shown."""
    monkeypatch.setenv("MONITOR_DATABASE_URL", url)
    st.cache_data.clear()
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == []
    return at


def again(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == []
    return at


def metrics(at: AppTest) -> dict[str, tuple[str, str]]:
    """Each tile's (value, the line under it), by label."""
    return {m.label: (m.value, m.proto.delta) for m in at.metric}


def node_table(at: AppTest) -> pd.DataFrame:
    (found,) = [d.value for d in at.dataframe if set(NODE_TABLE) <= set(d.value.columns)]
    return found


def site_table(at: AppTest) -> pd.DataFrame:
    (found,) = [d.value for d in at.dataframe if "nodes_drifting" in d.value.columns]
    return found


def figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """The plotly figures shown, by title."""
    out = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        out[spec["layout"]["title"]["text"]] = spec
    return out


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown] + [c.value for c in at.caption]


def hour_end(at: AppTest) -> datetime:
    """The end of the hour the page counted records in, as its caption says."""
    for text in texts(at):
        found = re.search(r"received in the hour to (\S+ \S+) UTC", text)
        if found:
            return datetime.fromisoformat(found.group(1) + "+00:00")
    raise AssertionError("the node table's caption says no hour")


def status_now(seeded: Seeded) -> readers.FleetStatus:
    return readers.fleet_status(seeded.engine, seeded.offline_after, model=seeded.model)


# --- The seeded database ------------------------------------------------------------------------


def test_the_tiles_count_what_is_stored_and_what_status_says(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    status = status_now(seeded)
    (mine,) = status.models
    assert mine.latest is not None and mine.performance is not None
    with seeded.engine.connect() as conn:
        firing = fleet.firing_alerts(conn)
    counts = status.counts
    p = mine.performance.result
    shown = metrics(at)

    devices = sum(n for s, n in counts.items() if s != "revoked")
    assert shown["Nodes online"] == (str(counts["online"]), f"of {devices}")
    assert shown["Offline"][0] == str(counts["offline"]) == "1"
    assert shown["Clock skew"] == (str(len(status.skewed)), seeded.skewed_node)
    assert shown["Nodes drifting"] == (
        str(mine.latest.nodes_drifting),
        f"of {mine.latest.nodes} judged",
    )
    assert shown["Fleet accuracy"] == (
        f"{p.accuracy:.3f}",
        f"{p.label_coverage:.0%} labelled, n={p.n_labelled:,}",
    )
    assert shown["Open alerts"] == (
        str(sum(firing.values())),
        ", ".join(f"{n} {s}" for s, n in firing.items() if n),
    )


def test_the_page_names_the_drifting_site_and_how_many_of_its_nodes_drift(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    (mine,) = status_now(seeded).models
    features = dict(mine.drifting["site"])[seeded.drifting_site]
    drifting_here = [n for n, _ in mine.drifting["node"]]
    with seeded.engine.connect() as conn:
        at_site = [
            s.name for s in readout.node_states(conn, utcnow()) if s.site == seeded.drifting_site
        ]
    k = len(set(drifting_here) & set(at_site))

    line = f"site {seeded.drifting_site} ({k} of {len(at_site)} nodes) on {', '.join(features)}"
    (headline,) = [t for t in texts(at) if t.startswith("**Drifting: ")]
    assert line in headline
    assert k == len(at_site) == 4
    (badges,) = [t for t in texts(at) if "Needs attention" in t]
    assert ":red-badge[1 offline]" in badges
    assert f":orange-badge[{len(drifting_here)} drifting]" in badges


def test_the_site_charts_and_table_count_each_sites_nodes(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    status = status_now(seeded)
    (mine,) = status.models
    drifting = {n for n, _ in mine.drifting["node"]}
    site_of = {s.name: s.site for s in status.nodes}
    states = {s.name: s.status for s in status.nodes}

    sites = site_table(at).set_index("Site")
    charts = figures(at)
    drift = {
        t["name"]: dict(zip(t["y"], t["x"], strict=True))
        for t in charts["Drift by site (nodes, latest window)"]["data"]
    }
    health = {
        t["name"]: dict(zip(t["y"], t["x"], strict=True))
        for t in charts["Health by site (nodes, now)"]["data"]
    }

    assert set(sites.index) == set(seeded.sites)
    for site in seeded.sites:
        here = [n for n, s in site_of.items() if s == site]
        expected_drifting = len(drifting & set(here))
        assert sites.loc[site, "nodes"] == len(here)
        assert sites.loc[site, "online"] == sum(states[n] == "online" for n in here)
        assert sites.loc[site, "offline"] == sum(states[n] == "offline" for n in here)
        assert sites.loc[site, "nodes_drifting"] == expected_drifting == drift["drifting"][site]
        assert bool(sites.loc[site, "site_drifted"]) == (site == seeded.drifting_site)
        assert sum(counts.get(site, 0) for counts in health.values()) == len(here)
    assert health["offline"][site_of[seeded.offline_node]] >= 1
    assert health["silent"][site_of[seeded.silent_node]] >= 1


def test_the_node_table_holds_every_node_with_its_stored_figures_worst_first(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    status = status_now(seeded)
    (mine,) = status.models
    drifting = dict(mine.drifting["node"])
    shown = node_table(at)
    with seeded.engine.connect() as conn:
        received = fleet.records_received_by_node(
            conn, seeded.model_id, hour_end(at) - timedelta(hours=1)
        )
        telemetry = fleet.runtime_figures(conn)

    by_name = {
        re.search(r"node=([^&]+)", url).group(1): row
        for url, row in zip(shown["node"], shown.to_dict("records"), strict=True)
    }  # type: ignore[union-attr]
    assert set(by_name) == set(seeded.nodes)
    assert list(shown["node"]) == [
        common.page_url("node", node=n, model=seeded.model) for n in by_name
    ]
    for state in status.nodes:
        row = by_name[state.name]
        assert row["status"] == state.status
        assert row["site"] == state.site and row["group"] == state.group_name
        assert row["records_per_hour"] == received.get(state.name, 0)
        assert row["drifting_features"] == ", ".join(drifting.get(state.name, []))
        assert row["model_version"] == state.model_version
        figures_ = telemetry[state.name]
        p95 = row["latency_p95_ms"]
        assert (None if pd.isna(p95) else p95) == figures_.latency_p95_ms
    assert shown["health"].iloc[0] == "offline"
    assert by_name[seeded.offline_node]["health"] == "offline"
    assert by_name[seeded.silent_node]["health"] == "silent"
    assert {by_name[n]["health"] for n in drifting} <= {"drifting", "degraded", "offline"}


def test_the_node_table_filters_by_site_and_health_and_searches_by_name(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    status = status_now(seeded)
    at_site = {s.name for s in status.nodes if s.site == seeded.drifting_site}

    at.multiselect(key="fleet_sites").set_value([seeded.drifting_site])
    shown = node_table(again(at))
    assert set(shown["site"]) == {seeded.drifting_site} and len(shown) == len(at_site)

    at.multiselect(key="fleet_sites").set_value([])
    at.multiselect(key="fleet_health").set_value(["offline", "silent"])
    shown = node_table(again(at))
    assert sorted(shown["health"]) == ["offline", "silent"]
    assert {u.split("node=")[1].split("&")[0] for u in shown["node"]} == {
        seeded.offline_node,
        seeded.silent_node,
    }

    at.multiselect(key="fleet_health").set_value([])
    at.text_input(key="fleet_search").input(seeded.skewed_node.upper())
    shown = node_table(again(at))
    assert list(shown["node"]) == [
        common.page_url("node", node=seeded.skewed_node, model=seeded.model)
    ]

    at.text_input(key="fleet_search").input("no-such-node")
    assert node_table(again(at)).empty
    assert any("Showing 0 to" in t and "of 0 nodes" in t for t in texts(at))


def test_the_node_table_sorts_by_the_chosen_figure(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)

    at.selectbox(key="fleet_sort").set_value("Name")
    names = list(node_table(again(at))["node"])
    assert names == sorted(names)

    at.selectbox(key="fleet_sort").set_value("p95 latency, slowest first")
    latency = node_table(again(at))["latency_p95_ms"]
    known = latency.dropna().tolist()
    assert known == sorted(known, reverse=True) and latency.isna().sum() <= 1
    assert latency.tail(latency.isna().sum()).isna().all()  # unknown last


def test_open_alerts_are_listed_with_a_link_to_the_alerts_page(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(seeded.url, monkeypatch)
    with seeded.engine.connect() as conn:
        firing = alerts.list_alerts(conn, state=alerts.FIRING)

    (listed,) = [t for t in texts(at) if t.startswith("- **")]
    for alert in firing:
        assert f"**{alert.severity}** · {alert.rule}" in listed and alert.summary in listed
    assert [link.proto.page for link in at.get("page_link")] == ["alerts"]


# --- Many nodes -------------------------------------------------------------------------------


def add_nodes(url: str, count: int) -> list[str]:
    engine: Engine = make_engine(url)
    try:
        with begin_write(engine) as conn:
            names = [f"extra-{i:03d}" for i in range(count)]
            for i, name in enumerate(names):
                nodes.add_node(conn, name, site=f"depot-{i % 3}")
    finally:
        engine.dispose()
    return names


def test_many_nodes_are_paged_fifty_at_a_time(
    no_window_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = add_nodes(no_window_url, 117)
    at = fleet_page(no_window_url, monkeypatch)

    engine = make_engine(no_window_url)
    with engine.connect() as conn:
        every = [s.name for s in readout.node_states(conn, utcnow()) if s.status is not None]
        assert models.get_model(conn, "pump-failure")
    engine.dispose()
    assert len(every) == 120 and set(names) <= set(every)
    assert at.number_input(key="fleet_page").max == 3
    seen: list[str] = []
    for page, rows in ((1, 50), (2, 50), (3, 20)):
        at.number_input(key="fleet_page").set_value(page)
        shown = node_table(again(at))
        assert len(shown) == rows
        seen += list(shown["node"])
        first = (page - 1) * 50 + 1
        assert any(f"Showing {first} to {first + rows - 1} of 120 nodes" in t for t in texts(at))
    assert len(set(seen)) == 120


# --- Empty states ------------------------------------------------------------------------------


def test_an_empty_database_says_how_to_register_a_model(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(empty_url, monkeypatch)

    assert [i.value.split("\n")[0] for i in at.info] == ["**No model yet**"]
    (command,) = [c.value for c in at.code]
    assert "edge-monitor models add NAME" in command
    assert "edge-monitor models register NAME" in command
    assert not at.metric and not at.dataframe


def test_a_model_without_reference_data_says_how_to_register_one(
    no_reference_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(no_reference_url, monkeypatch)

    assert [i.value.split("\n")[0] for i in at.info] == ["**No reference data for pump-failure**"]
    (command,) = [c.value for c in at.code]
    assert command.startswith("edge-monitor models register pump-failure ")
    assert "--reference" in command
    shown = metrics(at)
    assert shown["Nodes drifting"][1] == "no window yet"
    assert shown["Fleet accuracy"][0] == "no labels yet"
    assert shown["Nodes online"] == ("0", "of 0")
    assert "`edge-monitor nodes add NAME --site SITE --model pump-failure`" in " ".join(texts(at))
    assert not at.get("plotly_chart")


def test_a_model_not_analysed_yet_says_to_run_the_worker_and_shows_its_nodes(
    no_window_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = fleet_page(no_window_url, monkeypatch)

    assert [i.value.split("\n")[0] for i in at.info] == ["**No window analysed yet**"]
    assert [c.value for c in at.code] == ["edge-monitor worker --once"]
    assert len(node_table(at)) == 3
    assert metrics(at)["Nodes drifting"][1] == "no window yet"
    assert not [t for t in texts(at) if t.startswith("**Drifting")]
