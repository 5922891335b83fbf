"""Fleet page: is the fleet healthy, at a glance; which sites and nodes are not, and why.

One verdict line, six tiles (nodes online, offline, clock skew, nodes drifting, fleet accuracy
with its label coverage, open alerts), drift and health by site, then every node in a table
that filters by site and health, searches by name, sorts worst first and pages 50 at a time,
each node linking to its own page. Figures are the stored results of the latest analysed
window and each node's state now: no record is read here.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from monitor.dashboards import common
from monitor.dashboards.data import fleet as data

PAGE_SIZE = 50
#: Colours of the health classes (``data.HEALTH_COLOUR``), and a shade of its class for each
#: health word, so that the charts tell degraded from drifting.
PALETTE = {
    data.RED: "#d62728",
    data.AMBER: "#ff9f1c",
    data.GREEN: "#2ca02c",
    data.GREY: "#9e9e9e",
}
SHADES = {
    "offline": "#d62728",
    "degraded": "#f28e2b",
    "drifting": "#f5b700",
    "clock skew": "#e3a857",
    "silent": "#9e9e9e",
    "online": "#2ca02c",
    "revoked": "#616161",
}
#: Colours ``st.metric`` takes for its delta line.
Colour = Literal["red", "orange", "blue", "green", "gray"]
SEVERITY_COLOUR: dict[str, Colour] = {"critical": "red", "warning": "orange", "info": "blue"}
SORTS = {
    "Health, worst first": (["health_order", "node"], [True, True]),
    "Name": (["node"], [True]),
    "Last seen, oldest first": (["last_seen", "node"], [True, True]),
    "Records per hour, fewest first": (["records_per_hour", "node"], [True, True]),
    "Accuracy, lowest first": (["accuracy", "node"], [True, True]),
    "p95 latency, slowest first": (["latency_p95_ms", "node"], [False, True]),
    "Spool backlog, largest first": (["spool_records", "node"], [False, True]),
}


def tiles(view: data.FleetView) -> None:
    """The six tiles: the answer to "is the fleet healthy" in numbers, coloured."""
    counts = view.counts
    online, offline = counts.get("online", 0), counts.get("offline", 0)
    others = {s: counts.get(s, 0) for s in ("degraded", "silent") if counts.get(s, 0)}
    columns = st.columns(6)
    with columns[0]:
        st.metric(
            "Nodes online",
            online,
            delta=f"of {view.devices:,}",
            delta_color="orange" if others else "green",
            delta_arrow="off",
            help="Nodes in service (revoked ones left out) by their status now, as "
            "`edge-monitor status` counts them.",
            border=True,
        )
    with columns[1]:
        st.metric(
            "Offline",
            offline,
            delta="no heartbeat lately" if offline else "none",
            delta_color="red" if offline else "green",
            delta_arrow="off",
            help="Nodes whose last heartbeat is older than MONITOR_HEALTH_OFFLINE_AFTER_SECONDS.",
            border=True,
        )
    with columns[2]:
        skewed = len(view.skewed)
        st.metric(
            "Clock skew",
            skewed,
            delta=_few(view.skewed) if skewed else "none",
            delta_color="orange" if skewed else "green",
            delta_arrow="off",
            help="Nodes that sent an implausible record time in the last 24 hours.",
            border=True,
        )
    with columns[3]:
        drifting = view.nodes_drifting
        st.metric(
            "Nodes drifting",
            drifting if view.window_start else None,
            delta=(
                "no window yet" if view.window_start is None else f"of {view.nodes_judged:,} judged"
            ),
            delta_color="gray" if view.window_start is None else "orange" if drifting else "green",
            delta_arrow="off",
            help="Node scopes whose verdict is drifted in the latest analysed window.",
            border=True,
        )
    with columns[4]:
        accuracy = view.accuracy
        label = "Fleet accuracy" if accuracy is None else f"Fleet {accuracy.metric}"
        st.metric(
            label,
            accuracy_text(accuracy),
            delta=coverage_text(accuracy),
            delta_color="gray",
            delta_arrow="off",
            help=(
                "The latest window with labels: its fleet-wide figure, and how many of its "
                "records had a label"
                + (
                    f" ({accuracy.n_labelled:,} of {accuracy.n_rows:,}, window starting "
                    f"{_time(accuracy.window_start)} UTC)."
                    if accuracy
                    else "."
                )
            ),
            border=True,
        )
    with columns[5]:
        firing = view.alerts_firing
        worst = next(
            (s for s in ("critical", "warning", "info") if view.alerts_by_severity.get(s)), None
        )
        st.metric(
            "Open alerts",
            firing,
            delta=", ".join(f"{n} {s}" for s, n in view.alerts_by_severity.items() if n) or "none",
            delta_color=SEVERITY_COLOUR.get(worst or "", "green"),
            delta_arrow="off",
            help="Alerts firing now, every model and node rule, by severity.",
            border=True,
        )


def accuracy_text(accuracy: data.Accuracy | None) -> str:
    """The fleet accuracy tile's value: the figure as `edge-monitor status` prints it."""
    if accuracy is None:
        return "no labels yet"
    if accuracy.value is None:
        return f"not yet ({accuracy.status})"
    return f"{accuracy.value:.3f}" if accuracy.metric == "accuracy" else f"{accuracy.value:.4g}"


def coverage_text(accuracy: data.Accuracy | None) -> str:
    """Label coverage and counts under the accuracy figure."""
    if accuracy is None:
        return "send labels with Monitor.log_label"
    share = "?" if accuracy.label_coverage is None else f"{accuracy.label_coverage:.0%}"
    return f"{share} labelled, n={accuracy.n_labelled:,}"


def _few(names: Any, prefix: str = "") -> str:
    names = list(names)
    shown = ", ".join(prefix + n for n in names[:2])
    return shown + (f" and {len(names) - 2} more" if len(names) > 2 else "")


def verdict(view: data.FleetView) -> None:
    """The answer first: coloured badges for what needs attention (or one green badge), the
    drift headline naming the drifting sites, and which window it is from."""
    counts = view.counts
    badges = [
        f":{colour}-badge[{counts[status]} {status}]"
        for status, colour in (("offline", "red"), ("degraded", "orange"), ("silent", "gray"))
        if counts.get(status)
    ]
    if view.skewed:
        badges.append(f":orange-badge[{len(view.skewed)} with clock skew]")
    if view.nodes_drifting:
        badges.append(f":orange-badge[{view.nodes_drifting} drifting]")
    if view.alerts_firing:
        worst = "red" if view.alerts_by_severity.get("critical") else "orange"
        plural = "s" if view.alerts_firing > 1 else ""
        badges.append(f":{worst}-badge[{view.alerts_firing} alert{plural} firing]")
    drifting = bool(view.drifting_sites or view.fleet_drifted or view.nodes_drifting)
    with st.container(border=True):
        if not badges and not drifting:
            st.markdown(
                f":green-badge[:material/check_circle: Healthy] all {view.devices:,} nodes "
                "online, no drift, no alert firing"
            )
        else:
            st.markdown(":orange-badge[:material/warning: Needs attention] " + " ".join(badges))
        if view.window_start is not None:
            line = view.headline()
            st.markdown(f"**{line}**" if drifting else line)
            st.caption(
                f"Latest analysed window {_time(view.window_start)} to {_time(view.window_end)} "
                f"UTC: {view.window_records or 0:,} records, revision {view.window_revision}. "
                "This page shows the fleet now: the time range applies to the other pages."
            )


def _time(moment: Any) -> str:
    return (
        "-" if moment is None else pd.Timestamp(moment).tz_convert("UTC").strftime("%Y-%m-%d %H:%M")
    )


def stage_notes(view: data.FleetView) -> None:
    """The empty states of a model that cannot be judged yet (node health is shown anyway)."""
    if view.stage == "no_reference":
        common.empty_state(
            f"No reference data for {view.model}",
            "Drift is measured against a version's reference data (its training set, or "
            "records of a period known to be good). Register a version with one; until then "
            "only node health is shown.",
            f"edge-monitor models register {view.model} --version 1 --reference reference.parquet",
        )
    elif view.stage == "no_window":
        common.empty_state(
            "No window analysed yet",
            f"{view.model} has reference data; its windows are analysed by the worker once "
            "they close. Run it once now (or keep `edge-monitor worker` running); until then "
            "only node health is shown.",
            "edge-monitor worker --once",
        )


def sites(view: data.FleetView) -> None:
    """Drift and health by site: two small bar charts and the per-site table."""
    frame = view.sites
    if frame.empty:  # no nodes: the node table says how to add them
        return
    st.subheader("By site")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(drift_figure(frame), width="stretch", config={"displayModeBar": False})
    with right:
        st.plotly_chart(
            health_figure(view.nodes), width="stretch", config={"displayModeBar": False}
        )
    shown = frame.rename(columns={"site": "Site"})
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={
            "nodes": st.column_config.NumberColumn("Nodes"),
            "online": st.column_config.NumberColumn("Online"),
            "offline": st.column_config.NumberColumn("Offline"),
            "nodes_drifting": st.column_config.NumberColumn("Nodes drifting"),
            "nodes_not_drifting": st.column_config.NumberColumn("Not drifting"),
            "nodes_no_verdict": st.column_config.NumberColumn(
                "No verdict", help="Too little data in the window, or not judged."
            ),
            "site_drifted": st.column_config.CheckboxColumn(
                "Site drifted", help="The site scope's own verdict in the latest window."
            ),
            "drifting_features": st.column_config.TextColumn("Site drifted on"),
            "accuracy": st.column_config.NumberColumn(
                "Accuracy", format="%.3f", help="In the fleet accuracy's window."
            ),
            "records_per_hour": st.column_config.NumberColumn(
                "Records / h", format="localized", help="Received in the last hour."
            ),
        },
    )


def drift_figure(frame: pd.DataFrame) -> go.Figure:
    """Nodes per site in the latest window: drifting, not drifting, no verdict (stacked)."""
    figure = go.Figure()
    for column, name, colour in (
        ("nodes_drifting", "drifting", SHADES["drifting"]),
        ("nodes_not_drifting", "no drift", PALETTE[data.GREEN]),
        ("nodes_no_verdict", "no verdict", PALETTE[data.GREY]),
    ):
        # Plain lists: the figure's JSON then holds numbers a reader can check, not packed arrays.
        figure.add_bar(
            y=frame["site"].tolist(),
            x=[int(n) for n in frame[column]],
            name=name,
            orientation="h",
            marker_color=colour,
        )
    return _small(figure, "Drift by site (nodes, latest window)")


def health_figure(nodes: pd.DataFrame) -> go.Figure:
    """Nodes per site by health now (stacked, worst first)."""
    counts = nodes.groupby(["site", "health"]).size().unstack(fill_value=0)
    order = sorted(nodes["site"].unique())
    figure = go.Figure()
    for health in data.HEALTH:
        if health not in counts.columns:
            continue
        figure.add_bar(
            y=order,
            x=[int(counts.at[site, health]) if site in counts.index else 0 for site in order],
            name=health,
            orientation="h",
            marker_color=SHADES[health],
        )
    return _small(figure, "Health by site (nodes, now)")


def _small(figure: go.Figure, title: str) -> go.Figure:
    rows = len({*figure.data[0].y}) if figure.data else 1
    figure.update_layout(
        title=title,
        barmode="stack",
        height=140 + 24 * min(rows, 40),
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "y": -0.15, "traceorder": "normal"},
        yaxis={"autorange": "reversed"},
    )
    return figure


def node_table(view: data.FleetView) -> None:
    """Every node: filters, search, sort, a page of rows, each name linking to its page."""
    nodes = view.nodes
    st.subheader(f"Nodes ({len(nodes):,})")
    if nodes.empty:
        st.caption(
            "No nodes registered yet: "
            f"`edge-monitor nodes add NAME --site SITE --model {view.model}`."
        )
        return
    site_col, health_col, search_col, sort_col = st.columns([2, 2, 2, 2])
    with site_col:
        chosen_sites = st.multiselect("Site", sorted(nodes["site"].unique()), key="fleet_sites")
    with health_col:
        present = [h for h in data.HEALTH if h in set(nodes["health"])]
        chosen_health = st.multiselect("Health", present, key="fleet_health")
    with search_col:
        search = st.text_input("Search nodes", key="fleet_search", placeholder="name contains")
    with sort_col:
        sort = st.selectbox("Sort by", list(SORTS), key="fleet_sort")
    shown = filtered(nodes, chosen_sites, chosen_health, search)
    by, ascending = SORTS[sort]
    shown = (
        shown.assign(health_order=shown["health"].map(data.HEALTH_ORDER))
        .sort_values(by, ascending=ascending, kind="stable", na_position="last")
        .drop(columns="health_order")
    )
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    if pages > 1:
        page = int(st.number_input(f"Page (of {pages})", 1, pages, 1, step=1, key="fleet_page"))
    else:
        page = 1
    rows = shown.iloc[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    first = (page - 1) * PAGE_SIZE + 1 if len(rows) else 0
    st.caption(
        f"Showing {first:,} to {first + len(rows) - 1:,} of {len(shown):,} nodes"
        + (f" (of {len(nodes):,})" if len(shown) != len(nodes) else "")
        + ". Drift: the latest analysed window; accuracy: the latest window with labels; "
        f"records per hour: received in the hour to {view.now:%Y-%m-%d %H:%M:%S} UTC."
    )
    table = rows.assign(
        node=[common.page_url("node", node=n, model=view.model) for n in rows["node"]]
    )
    st.dataframe(
        table.style.map(_health_style, subset=["health"]),
        hide_index=True,
        width="stretch",
        column_config=NODE_COLUMNS,
        key="fleet_nodes",
    )


def filtered(nodes: pd.DataFrame, sites: list[str], health: list[str], search: str) -> pd.DataFrame:
    """The nodes at these sites, with this health, whose name contains ``search`` (any case);
    an empty choice keeps every node."""
    keep = pd.Series(True, index=nodes.index)
    if sites:
        keep &= nodes["site"].isin(sites)
    if health:
        keep &= nodes["health"].isin(health)
    if search.strip():
        keep &= nodes["node"].str.contains(search.strip(), case=False, regex=False)
    return nodes[keep]


def _health_style(health: str) -> str:
    colour = SHADES.get(health, PALETTE[data.GREY])
    return f"background-color: {colour}; color: white; font-weight: 600"


NODE_COLUMNS: dict[str, Any] = {
    "health": st.column_config.TextColumn(
        "Health", help="Status now, or what the latest window found: worst first."
    ),
    "node": st.column_config.LinkColumn("Node", display_text=r"node=([^&]+)"),
    "status": st.column_config.TextColumn("Status", help="As `edge-monitor nodes list` says."),
    "site": st.column_config.TextColumn("Site"),
    "group": st.column_config.TextColumn("Group"),
    "last_seen": st.column_config.DatetimeColumn(
        "Last seen", format="YYYY-MM-DD HH:mm:ss", timezone="UTC"
    ),
    "model_version": st.column_config.TextColumn("Version"),
    "records_per_hour": st.column_config.NumberColumn("Records / h", format="localized"),
    "drifted": st.column_config.CheckboxColumn("Drifted"),
    "drifting_features": st.column_config.TextColumn("Drifting features"),
    "accuracy": st.column_config.NumberColumn("Accuracy", format="%.3f"),
    "label_coverage": st.column_config.NumberColumn("Labelled", format="percent"),
    "latency_p95_ms": st.column_config.NumberColumn("p95 latency ms", format="%.1f"),
    "sdk_drops": st.column_config.NumberColumn("SDK drops", help="Records lost on the node."),
    "spool_records": st.column_config.NumberColumn("Spool backlog", format="localized"),
    "problems": st.column_config.TextColumn("Problems"),
}


def open_alerts(view: data.FleetView) -> None:
    """The firing alerts, newest first, linking to the Alerts page."""
    if not view.open_alerts:
        return
    with st.expander(f"Open alerts ({view.alerts_firing})", expanded=True):
        lines = [
            f"- **{a.severity}** · {a.rule}{f' ({a.model})' if a.model else ''}: {a.summary} "
            f"(since {_time(a.fired_at)} UTC)"
            for a in view.open_alerts
        ]
        more = view.alerts_firing - len(view.open_alerts)
        if more > 0:
            lines.append(f"- and {more} more")
        st.markdown("\n".join(lines))
        st.page_link("views/alerts.py", label="All alerts", icon=":material/notifications:")


st.title("Fleet")
with common.guarded("Fleet"):
    names = common.read(common.model_names)
    if not names:
        common.empty_state(
            "No model yet",
            "Register a model and its reference data, then point the SDK of your nodes at the "
            "collector (or run `edge-monitor demo` to see a simulated fleet).",
            "edge-monitor models add NAME\n"
            "edge-monitor models register NAME --version 1 --reference reference.parquet",
        )
    else:
        model = common.pick_model(names)
        offline_after = common.settings().health_offline_after_seconds
        view = common.read(data.fleet_view, model, common.now(), offline_after)
        verdict(view)
        tiles(view)
        stage_notes(view)
        open_alerts(view)
        sites(view)
        node_table(view)
