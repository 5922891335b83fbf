"""Node page: one node's state now (status, site, group, last heard, clock skew, the version it
runs, the health job's problems, SDK drops, spool and queue) and its timelines over the chosen
period: runtime telemetry from its heartbeats beside its node scope's drift, multivariate drift
and accuracy (realised on labels, and estimated without them with its band and trust verdict)
on one shared time axis, the moments its model version changed marked across them, and the
features that drifted at the node window by window.

Reached from the Fleet page as ``/node?node=NAME&model=MODEL``; without a node, a searchable
picker of every node.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from monitor.dashboards import common
from monitor.dashboards import estimate_charts as charts
from monitor.dashboards.data import estimates
from monitor.dashboards.data import node as data

PICKER = "node_picker"
#: Marker line colours: the node's own version changes, and the model's rollout events.
MARKER_COLOUR = {"version": "#7b3fe4", "rollout": "#9e9e9e"}
DRIFTED_COLOUR = "#d62728"
MULTIVARIATE_COLOUR = "#1f77b4"
TELEMETRY_ROWS = (
    "Runtime latency (ms)",
    "Runtime errors (total since start)",
    "SDK drops by reason (totals since start)",
    "Spool backlog and queue (records)",
)
#: The result rows' titles (the multivariate row only when the node has a reconstruction
#: error); the last names the performance figure drawn.
RESULT_ROWS = (
    "Drift at the node (share of features drifted)",
    "Multivariate drift at the node (reconstruction error against its threshold)",
    "{figure} and label coverage",
)
FIGURE_NAMES = {
    "accuracy": "Accuracy (realised, and estimated without labels)",
    "mae": "Mean absolute error",
}


def when(moment: datetime | None) -> str | None:
    """A time as the page writes it (UTC), or None."""
    return None if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def duration(seconds: float) -> str:
    """A duration for a person: the largest unit that leaves a number of at least 1."""
    for unit, size in (("days", 86_400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def sync_picker(names: list[str]) -> None:
    """The picker shows the node of the URL (a link from the Fleet page wins over an earlier
    pick); picking one puts it in the URL (``on_change``, before the next run)."""
    wanted = st.query_params.get("node")
    shown = wanted if wanted in names else None
    if st.session_state.get(PICKER) != shown:
        st.session_state[PICKER] = shown


def picked() -> None:
    chosen = st.session_state.get(PICKER)
    if chosen:
        st.query_params["node"] = chosen


def pick_node(names: list[str]) -> str | None:
    sync_picker(names)
    # No index: the session state set above decides (an index beside it would warn).
    chosen: str | None = st.selectbox(
        "Node",
        names,
        index=None,
        key=PICKER,
        placeholder=f"Search {len(names):,} nodes by name",
        on_change=picked,
    )
    return chosen


def ago(moment: datetime | None) -> str:
    """How long ago a time was, for a person ("never" for None)."""
    if moment is None:
        return "never"
    seconds = (datetime.now(UTC) - moment).total_seconds()
    return "just now" if seconds < 1 else f"{duration(seconds)} ago"


def draw_card(card: data.NodeCard) -> None:
    status = card.status or "labeller"
    st.subheader(f"{card.name} :{card.colour}-badge[{status}]")
    st.markdown(f"**Site** {card.site or 'none'} · **Group** {card.group_name or 'none'}")
    first = st.columns(5)
    first[0].metric("Model version", card.model_version or "unknown")
    first[1].metric(
        "Last heartbeat",
        ago(card.last_heartbeat_at),
        help=f"{when(card.last_heartbeat_at)} UTC" if card.last_heartbeat_at else None,
    )
    first[2].metric(
        "Last seen",
        ago(card.last_seen_at),
        help=f"{when(card.last_seen_at)} UTC (its last request of any kind)"
        if card.last_seen_at
        else None,
    )
    if card.clock_skew_seconds is not None:
        skew = card.clock_skew_seconds
        first[3].metric(
            "Clock skew",
            f"{'-' if skew < 0 else '+'}{duration(abs(skew))}",
            help=f"Its clock was {duration(abs(skew))} {'behind' if skew < 0 else 'ahead'}: its "
            f"last implausible record time, seen at {when(card.clock_skew_at)} UTC (those "
            "records were stored at the time they arrived).",
        )
    else:
        first[3].metric("Clock skew", "none")
    first[4].metric(
        "Health checked",
        ago(card.checked_at),
        help=f"{when(card.checked_at)} UTC" if card.checked_at else "never: `edge-monitor worker`",
    )
    second = st.columns(5)
    second[0].metric("Spool (records)", card.spool_records, help="waiting on the node's disk")
    second[1].metric("Queue (records)", card.queue_depth, help="waiting in the SDK's memory")
    second[2].metric("p95 latency (ms)", card.latency_p95_ms, help="the runtime's recent calls")
    second[3].metric("Runtime errors", card.errors, help="since the runtime started")
    second[4].metric(
        "Records lost",
        card.lost if card.checked_at else None,
        help="SDK drops for every reason but sampling, since the SDK started",
    )
    if card.dropped:
        drops = ", ".join(f"{reason} {count:,}" for reason, count in sorted(card.dropped.items()))
        st.caption(f"SDK drops by reason (totals since the SDK started): {drops}")
    if card.checked_at is None:
        st.caption("The health job has not judged this node yet: `edge-monitor worker` runs it.")
    elif card.problems:
        items = "\n".join(f"- {problem}" for problem in card.problems)
        st.warning(f"**The health job found**\n\n{items}", icon=":material/warning:")
    else:
        st.caption("The health job found no problem.")


def draw_timelines(card: data.NodeCard, view: data.NodeTimelines, period: common.TimeRange) -> None:
    st.subheader(f"Timelines: {view.model}, {period.label.lower()}")
    if view.assigned is not None:
        st.caption(f"Assigned version: {view.assigned} ({view.assigned_reason}).")
    telemetry = view.telemetry
    if telemetry.empty:
        if card.last_heartbeat_at is None:
            common.empty_state(
                f"No heartbeat from {card.name} yet",
                "Heartbeats come from the SDK on the node: it sends one as it starts and every "
                "`heartbeat_interval` (30 s by default), with its drops, spool and queue, and "
                "the edge runtime's latency and errors with it. Start the node's runtime with "
                "its token:",
                "edge-monitor edge serve --model MODEL.onnx --collector URL --token-file TOKEN",
            )
        else:
            st.info(
                f"No heartbeat of {view.model} from {card.name} in this period (the last one "
                f"arrived at {when(card.last_heartbeat_at)} UTC): widen the time range.",
                icon=":material/schedule:",
            )
    elif view.bucket_seconds is not None:
        st.caption(
            f"{view.beats:,} heartbeats in the period: one per {duration(view.bucket_seconds)} "
            "is drawn (and the newest); version changes are found among all of them."
        )
    if view.windows == 0:
        common.empty_state(
            f"No analysed window of {view.model} in this period",
            "The worker analyses each window of records once it closes; a node's drift and "
            "accuracy appear with its first analysed window. Run the worker (or widen the time "
            "range):",
            "edge-monitor worker",
        )
    elif view.drift.empty:
        st.info(
            f"{card.name} was not judged in any of the {view.windows} analysed windows of "
            f"{view.model} in this period: it sent no records of this model in them.",
            icon=":material/info:",
        )
    figure = timeline_figure(view)
    if figure is not None:
        st.plotly_chart(figure, width="stretch", key="node_timelines")
    if not view.drift.empty:
        estimate_lines(card, view)
    st.subheader("Drifted features at the node")
    if view.drift.empty:
        st.caption("No window judged at this node in the period.")
    elif view.drifted_features.empty:
        st.caption(f"No feature drifted at {card.name} in the {len(view.drift)} windows judged.")
    else:
        st.dataframe(
            view.drifted_features,
            hide_index=True,
            width="stretch",
            column_config={
                "window_start": st.column_config.DatetimeColumn(
                    "Window (UTC)", format="YYYY-MM-DD HH:mm"
                ),
                "statistic": st.column_config.NumberColumn(format="%.4g"),
                "threshold": st.column_config.NumberColumn(format="%.4g"),
                "p_value": st.column_config.NumberColumn("p-value", format="%.3g"),
                "adjusted_p_value": st.column_config.NumberColumn(
                    "adjusted p-value", format="%.3g"
                ),
            },
        )


def estimate_lines(card: data.NodeCard, view: data.NodeTimelines) -> None:
    """The node's latest estimate in words (a warning when it is not trusted), or one line
    saying why there is none; the same for multivariate drift."""
    latest = estimates.latest_estimate(view.estimated)
    if latest is not None:
        text = (
            f"**Latest estimate** (window of {latest['window_start']:%Y-%m-%d %H:%M} UTC): "
            f"{estimates.estimate_text(latest)}"
        )
        if latest["trusted"] is False:
            st.warning(text, icon=":material/warning:")
        else:
            st.markdown(text)
    elif view.not_estimable:
        st.caption(f"No estimate without labels: {view.not_estimable}.")
    elif view.metric == "accuracy":
        st.caption(
            f"No estimate for {card.name} in this period: windows analysed before estimation "
            "was added have none."
        )
    if view.multivariate["reconstruction_error"].isna().all():
        st.caption(
            f"No multivariate drift for {card.name} in this period: windows analysed before it "
            "was added have none."
        )


def _values(series: pd.Series) -> list[object]:
    """A column as plain values for a figure (None where missing: a gap in the line)."""
    return [None if pd.isna(v) else v for v in series.astype(object)]


def _times(series: pd.Series) -> list[datetime]:
    return [moment.to_pydatetime() for moment in series]


def _moment(moment: datetime) -> datetime:
    """A window's time as the node's figure draws it (an aware datetime, like ``_times``)."""
    return pd.Timestamp(moment).to_pydatetime()


def marker_groups(markers: tuple[data.Marker, ...]) -> list[list[data.Marker]]:
    """Markers of one kind close in time (within 2% of their whole span, or a minute), whose
    labels would print over each other: one label each group."""
    if not markers:
        return []
    span = (markers[-1].at - markers[0].at) * 0.02
    gap = max(span, timedelta(minutes=1))
    groups: list[list[data.Marker]] = []
    for marker in markers:
        last = groups[-1][-1] if groups else None
        if last is not None and last.kind == marker.kind and marker.at - last.at <= gap:
            groups[-1].append(marker)
        else:
            groups.append([marker])
    return groups


def timeline_figure(view: data.NodeTimelines) -> go.Figure | None:
    """Telemetry rows (when there are heartbeats) above result rows (when the node was
    judged), one shared time axis, version changes and rollout events marked across all."""
    judged = not view.drift.empty or not view.performance.empty
    multivariate = judged and view.multivariate["reconstruction_error"].notna().any()
    titles = [
        *(TELEMETRY_ROWS if not view.telemetry.empty else ()),
        *((RESULT_ROWS[0],) if judged else ()),
        *((RESULT_ROWS[1],) if multivariate else ()),
        *((RESULT_ROWS[2].format(figure=FIGURE_NAMES[view.metric]),) if judged else ()),
    ]
    if not titles:
        return None
    figure = make_subplots(
        rows=len(titles),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.3 / len(titles),
        subplot_titles=titles,
    )
    row = 1
    beats = view.telemetry
    if not beats.empty:
        x = _times(beats["received_at"])
        line = {"mode": "lines+markers", "marker": {"size": 4}}
        for column, name in (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")):
            figure.add_trace(go.Scatter(x=x, y=_values(beats[column]), name=name, **line), row, 1)
        figure.add_trace(
            go.Scatter(x=x, y=_values(beats["errors"]), name="errors", **line), row + 1, 1
        )
        for reason in view.drop_reasons:
            figure.add_trace(
                go.Scatter(
                    x=x, y=_values(beats[data.DROPPED_PREFIX + reason]), name=reason, **line
                ),
                row + 2,
                1,
            )
        for column, name in (("spool_records", "spool"), ("queue_depth", "queue")):
            figure.add_trace(
                go.Scatter(x=x, y=_values(beats[column]), name=name, **line), row + 3, 1
            )
        for counter in range(row, row + len(TELEMETRY_ROWS)):
            # Counters and depths start at zero: a flat zero line sits at the bottom.
            figure.update_yaxes(rangemode="tozero", row=counter, col=1)
        row += len(TELEMETRY_ROWS)
    if row <= len(titles):
        drift = view.drift
        starts = _times(drift["window_start"])
        figure.add_trace(
            go.Scatter(
                x=starts,
                y=_values(drift["share_drifted"]),
                name="share drifted",
                mode="lines+markers",
            ),
            row,
            1,
        )
        flagged = [not pd.isna(value) and bool(value) for value in drift["drifted"]]
        drifted = drift[pd.Series(flagged, index=drift.index, dtype=bool)]
        figure.add_trace(
            go.Scatter(
                x=_times(drifted["window_start"]),
                y=_values(drifted["share_drifted"]),
                name="drifted",
                mode="markers",
                marker={"color": DRIFTED_COLOUR, "size": 11, "symbol": "x"},
            ),
            row,
            1,
        )
        figure.update_yaxes(range=[0, 1.05], row=row, col=1)
        if multivariate:
            row += 1
            charts.multivariate_traces(
                figure,
                view.multivariate,
                None,
                MULTIVARIATE_COLOUR,
                _moment,
                row=row,
                col=1,
            )
        performance = view.performance
        at = _times(performance["window_start"])
        if view.metric == "accuracy":
            charts.estimate_traces(figure, view.estimated, "accuracy", _moment, row=row + 1, col=1)
        figure.add_trace(
            go.Scatter(
                x=at,
                y=_values(performance[view.metric]),
                name="realised accuracy" if view.metric == "accuracy" else view.metric,
                mode="lines+markers",
            ),
            row + 1,
            1,
        )
        figure.add_trace(
            go.Scatter(
                x=at,
                y=_values(performance["label_coverage"]),
                name="label coverage",
                mode="lines+markers",
                line={"dash": "dot"},
            ),
            row + 1,
            1,
        )
        if view.metric == "accuracy":
            # Not from zero: an estimate a few points above what the labels realised is the
            # thing to see, and on a 0-100% axis it would be a hair's breadth.
            figure.update_yaxes(tickformat=".0%", row=row + 1, col=1)
    for marker in view.markers:
        figure.add_vline(
            x=marker.at,
            line_dash="dash" if marker.kind == "version" else "dot",
            line_color=MARKER_COLOUR[marker.kind],
            line_width=1.5,
        )
    for group in marker_groups(view.markers):
        figure.add_annotation(
            x=group[0].at,
            y=1,
            xref="x",
            yref="paper",
            yanchor="bottom",
            text="<br>".join(m.text for m in group),
            showarrow=False,
            font={"color": MARKER_COLOUR[group[0].kind], "size": 11},
        )
    figure.update_layout(
        height=190 * len(titles) + 80,
        margin={"t": 60, "b": 30},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.04},
        hovermode="x unified",
    )
    return figure


def main() -> None:
    names = common.read(data.node_names)
    if not names:
        common.empty_state(
            "No node yet",
            "Register a node: it gets the token its SDK sends with its records and heartbeats.",
            "edge-monitor nodes add NAME --site SITE --model MODEL",
        )
        return
    wanted = st.query_params.get("node")
    left, right = st.columns(2)
    with left:
        chosen = pick_node(names)
    if wanted and wanted not in names:
        common.empty_state(
            f"No node named {wanted!r}",
            "Pick one above (type to search), or list the fleet's nodes with their status:",
            "edge-monitor nodes list",
        )
    if chosen is None:
        if not wanted:
            st.caption(f"Pick one of the {len(names):,} nodes to see its state and timelines.")
        return
    offline_after = common.settings().health_offline_after_seconds
    card = common.read(data.node_card, chosen, common.now(), offline_after)
    if card is None:  # removed since the names were read
        common.empty_state(
            f"No node named {chosen!r}", "List the fleet's nodes:", "edge-monitor nodes list"
        )
        return
    if card.role != data.NODE_ROLE:
        draw_card(card)
        st.info(
            f"{card.name} is a labeller: a back-office token that sends labels for any node's "
            "records, and no records or heartbeats of its own.",
            icon=":material/info:",
        )
        return
    models = common.read(common.model_names)
    if not models:
        draw_card(card)
        common.empty_state(
            "No model yet",
            "Register a model and its reference data; the node's drift and accuracy are "
            "judged against it.",
            "edge-monitor models register NAME --version 1 --reference reference.parquet",
        )
        return
    # The node's own models first: the default when the link names none.
    ordered = [m for m in card.models if m in models] + [m for m in models if m not in card.models]
    with right:
        model = common.pick_model(ordered)
    draw_card(card)
    period = common.time_range()
    view = common.read(data.node_timelines, card.name, model, period.start, period.end)
    draw_timelines(card, view, period)


st.title("Node")
with common.guarded("Node"):
    main()
