"""Alerts page: what is firing and what resolved in the range, grouped as the rules group them,
each alert's transitions and the webhook messages they caused, the delivery log, the endpoints,
and the retrain runs with their outcome."""

from __future__ import annotations

from typing import Any, Literal

import plotly.express as px
import streamlit as st

from monitor.dashboards import common
from monitor.dashboards.data import alerts as data
from monitor.storage.webhooks import STATUSES

SEVERITY_COLOURS = {"critical": "#d62728", "warning": "#ff7f0e", "info": "#1f77b4"}
#: The tiles' delta colour of the worst severity firing.
SEVERITY_TILE: dict[str, Literal["red", "orange", "blue"]] = {
    "critical": "red",
    "warning": "orange",
    "info": "blue",
}


def tiles(view: data.Overview, label: str) -> None:
    """Five tiles: what fires now, what resolved, what the outbox holds, what retrains."""
    t = view.tiles
    firing = sum(t.firing.values())
    worst = next((s for s in data.SEVERITY_ORDER if t.firing.get(s)), None)
    columns = st.columns(5)
    columns[0].metric(
        "Firing",
        firing,
        delta=", ".join(f"{n} {s}" for s, n in t.firing.items() if n) or "none",
        delta_color=SEVERITY_TILE.get(worst or "", "green"),
        delta_arrow="off",
        help="Alerts firing now, every model and node rule, by severity.",
        border=True,
    )
    columns[1].metric(
        "Resolved",
        t.resolved_in_range,
        delta=label.lower(),
        delta_color="gray",
        delta_arrow="off",
        help="Alerts that resolved in the time range.",
        border=True,
    )
    columns[2].metric(
        "Messages pending",
        t.pending,
        delta="waiting to be sent" if t.pending else "none",
        delta_color="orange" if t.pending else "green",
        delta_arrow="off",
        help="Webhook messages not yet delivered (pending or being delivered), now.",
        border=True,
    )
    columns[3].metric(
        "Messages failed",
        t.failed_in_range,
        delta="given up, " + label.lower(),
        delta_color="red" if t.failed_in_range else "green",
        delta_arrow="off",
        help="Webhook messages of the time range given up after every retry.",
        border=True,
    )
    columns[4].metric(
        "Retrains in flight",
        t.runs_in_flight,
        delta=", ".join(f"{n} {s}" for s, n in t.in_flight_by_status.items()) or "none",
        delta_color="blue" if t.runs_in_flight else "gray",
        delta_arrow="off",
        help="Retrain runs that hold their model now (one per model at a time).",
        border=True,
    )


ALERT_TABLE: dict[str, Any] = {
    "id": st.column_config.NumberColumn("Alert", format="#%d"),
    "group": "Group",
    "severity": "Severity",
    "episode": "Episode",
    "subjects": "Subjects",
    "in_trouble": "In trouble",
    "since": st.column_config.DatetimeColumn("Since", format="YYYY-MM-DD HH:mm"),
    "resolved_at": st.column_config.DatetimeColumn("Resolved", format="YYYY-MM-DD HH:mm"),
    "value": st.column_config.NumberColumn("Last value", format="%.4g"),
    "bound": st.column_config.NumberColumn("Threshold", format="%.4g"),
    "summary": "Summary",
}


def open_alerts(view: data.Overview) -> None:
    frame = view.open
    if frame.empty:
        st.success("No alert is firing.", icon=":material/check_circle:")
        return
    grouped = (
        frame.groupby(["rule", "severity"], sort=False)
        .agg(alerts=("id", "count"), subjects=("subjects", "sum"), since=("since", "min"))
        .reset_index()
    )
    st.markdown("**By rule and severity**")
    st.dataframe(
        grouped,
        hide_index=True,
        column_config={"since": ALERT_TABLE["since"]},
    )
    st.markdown("**Every firing alert** (one per rule and group: site, group, node or the rule)")
    shown = common.paged(frame, "open")
    st.dataframe(
        shown,
        hide_index=True,
        column_order=[
            "id",
            "rule",
            "model",
            "severity",
            "group",
            "episode",
            "subjects",
            "in_trouble",
            "since",
            "value",
            "bound",
            "summary",
        ],
        column_config=ALERT_TABLE,
    )


def resolved_alerts(view: data.Overview, label: str) -> None:
    if view.resolved.empty:
        st.info(f"No alert resolved in the range ({label}).")
        return
    st.dataframe(
        common.paged(view.resolved, "resolved"),
        hide_index=True,
        column_order=[
            "id",
            "rule",
            "model",
            "severity",
            "group",
            "episode",
            "since",
            "resolved_at",
            "value",
            "bound",
            "summary",
        ],
        column_config=ALERT_TABLE,
    )


def timeline(view: data.Overview) -> None:
    spans = view.spans
    if spans.empty:
        st.info("No alert fired in the range.")
        return
    figure = px.timeline(
        spans,
        x_start="start",
        x_end="end",
        y="rule",
        color="severity",
        color_discrete_map=SEVERITY_COLOURS,
        hover_data=["alert", "state", "summary"],
        title="Firing spans per rule",
    )
    figure.update_yaxes(title=None, autorange="reversed")
    figure.update_layout(height=max(240, 60 * spans["rule"].nunique() + 120))
    st.plotly_chart(figure, width="stretch")


def alert_detail(view: data.Overview) -> None:
    labels = {
        int(i): f"#{i} {r} · {g} · firing" for i, r, g in view.open[["id", "rule", "group"]].values
    }
    labels |= {
        int(i): f"#{i} {r} · {g} · resolved"
        for i, r, g in view.resolved[["id", "rule", "group"]].values
    }
    if not labels:
        return
    ids = list(labels)
    st.subheader("One alert: its subjects, transitions and messages")
    wanted = st.query_params.get("alert")
    index = ids.index(int(wanted)) if wanted and wanted.isdigit() and int(wanted) in ids else 0
    chosen = st.selectbox("Alert", ids, index=index, format_func=labels.__getitem__, key="alert")
    detail = common.read(data.alert_detail, int(chosen))
    alert = detail.alert
    state = "FIRING" if alert.state == "firing" else "resolved"
    st.markdown(
        f"**#{alert.id} {state}** ({alert.severity}) · rule **{alert.rule}** ({alert.kind})"
        f" · group `{alert.group_key}` · episode {alert.episode}\n\n{alert.summary}"
    )
    if not detail.observations.empty:
        st.markdown("**Subjects: last value against the rule's threshold**")
        st.dataframe(
            detail.observations,
            hide_index=True,
            column_config={
                "value": st.column_config.NumberColumn("Last value", format="%.4g"),
                "bound": st.column_config.NumberColumn("Threshold", format="%.4g"),
            },
        )
    st.markdown("**Transitions**")
    st.dataframe(detail.events, hide_index=True)
    st.markdown("**Webhook messages of these transitions**")
    if detail.messages.empty:
        st.caption("No message was queued for these transitions (the rule names no endpoint).")
    else:
        st.dataframe(detail.messages, hide_index=True)


def no_endpoint() -> None:
    common.empty_state(
        "No webhook endpoint yet",
        "Alerts are stored, but sent nowhere. Add an endpoint (an https URL that takes a POST; "
        "a generated signing secret is printed once), or define `[[endpoint]]` sections in the "
        "rules file.",
        "edge-monitor webhooks add NAME URL",
    )


def no_hook() -> None:
    common.empty_state(
        "No retrain hook yet",
        "A hook retrains a model when a rule that names it fires (`hooks = [...]` in the rules "
        "file), or by hand with `edge-monitor retrain run HOOK`. The bundled reference retrainer "
        "needs no code:",
        "edge-monitor retrain add-hook NAME --model MODEL --kind reference --cooldown 6h",
    )


def deliveries(rng: common.TimeRange, view: data.Overview) -> None:
    if view.setup.endpoints == 0:
        no_endpoint()
    status = st.selectbox("Status", ["any", *STATUSES], key="delivery_status")
    frame = common.read(data.deliveries, rng.start, rng.end, None if status == "any" else status)
    if frame.empty:
        st.info(f"No webhook message {'' if status == 'any' else status + ' '}in the range.")
        return
    st.dataframe(
        common.paged(frame, "deliveries"),
        hide_index=True,
        column_config={
            "message_id": "webhook-id",
            "alert": st.column_config.CheckboxColumn("Alert transition"),
            "created_at": st.column_config.DatetimeColumn("Queued", format="YYYY-MM-DD HH:mm:ss"),
            "next_try": st.column_config.DatetimeColumn("Next try", format="YYYY-MM-DD HH:mm:ss"),
            "delivered_at": st.column_config.DatetimeColumn(
                "Delivered", format="YYYY-MM-DD HH:mm:ss"
            ),
        },
    )


def endpoints() -> None:
    frame = common.read(data.endpoints)
    if frame.empty:
        st.caption("No endpoint: `edge-monitor webhooks add NAME URL` adds one.")
        return
    st.dataframe(frame, hide_index=True)


def retraining(rng: common.TimeRange, view: data.Overview) -> None:
    if view.setup.hooks == 0:
        no_hook()
    frame = common.read(data.runs, rng.start, rng.end)
    if frame.empty:
        st.info(f"No retrain run in the range ({rng.label}).")
        return
    for row in frame.head(5).itertuples():
        st.markdown(f"- **Run {row.id}** of {row.model} (hook {row.hook or '-'}): {row.outcome}")
    st.dataframe(
        common.paged(frame, "runs"),
        hide_index=True,
        column_config={
            "candidate_accuracy": st.column_config.NumberColumn("Gate: candidate", format="%.4f"),
            "production_accuracy": st.column_config.NumberColumn("Gate: production", format="%.4f"),
        },
    )


st.title("Alerts")
with common.guarded("Alerts"):
    if not common.read(common.model_names):
        common.empty_state(
            "No model yet",
            "Register a model and its reference data, then point the SDK of your nodes at the "
            "collector.",
            "edge-monitor models register NAME --version 1 --reference reference.parquet",
        )
    else:
        rng = common.time_range()
        view = common.read(data.overview, rng.start, rng.end)
        if view.setup.rules == 0 and view.open.empty and view.resolved.empty:
            # A new user: what to set up, in the order it is needed, and nothing empty beside.
            common.empty_state(
                "No alert rules yet",
                "Rules turn drift, accuracy and node health into alerts. Write them in a TOML file "
                "(`examples/alerts.toml` in the edge-monitor source shows every kind, with "
                "endpoints and retrain hooks) and apply it; the worker judges them every window.",
                "edge-monitor alerts apply rules.toml",
            )
            if view.setup.endpoints == 0:
                no_endpoint()
            if view.setup.hooks == 0:
                no_hook()
        else:
            if view.setup.enabled_rules == 0:
                st.warning(
                    "Every alert rule is disabled: none is judged.", icon=":material/warning:"
                )
            tiles(view, rng.label)
            tabs = st.tabs(
                ["Open", "Resolved", "Timeline", "Deliveries", "Endpoints", "Retraining"]
            )
            with tabs[0]:
                open_alerts(view)
                alert_detail(view)
            with tabs[1]:
                resolved_alerts(view, rng.label)
            with tabs[2]:
                timeline(view)
            with tabs[3]:
                deliveries(rng, view)
            with tabs[4]:
                endpoints()
            with tabs[5]:
                retraining(rng, view)
