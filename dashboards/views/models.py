"""Models page: a model's versions and stages, its deployment (production, canary, pins), the
canary's progress, the rollout history, and which node runs which version (assigned by the
registry against reported by the node, a mismatch highlighted)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from monitor.dashboards import common
from monitor.dashboards.data import models as data

ROLE_COLOURS = {"production": "#2ca02c", "canary": "#ff7f0e"}


def deployment(view: data.ModelView) -> None:
    """Five tiles: who should run what, and how many nodes do."""
    nodes = view.nodes
    assigned = nodes["assigned"] != ""
    running = int(assigned.sum())
    on_target = int(((nodes["reported"] == nodes["assigned"]) & assigned).sum())
    silent = int((assigned & (nodes["reported"] == "")).sum())
    mismatched = int(nodes["mismatch"].sum())
    columns = st.columns(5)
    columns[0].metric(
        "Production",
        view.production or "none",
        delta=_when(view) if view.production else "nothing deployed",
        delta_color="gray" if view.production else "orange",
        delta_arrow="off",
        border=True,
    )
    columns[1].metric(
        "Canary",
        view.canary.version if view.canary else "none",
        delta=f"{view.canary.share:.0%} of nodes" if view.canary else "no canary running",
        delta_color="blue" if view.canary else "gray",
        delta_arrow="off",
        border=True,
    )
    columns[2].metric(
        "Rollback target",
        view.previous or "none",
        delta="what a rollback restores" if view.previous else "no earlier production",
        delta_color="gray",
        delta_arrow="off",
        border=True,
    )
    columns[3].metric(
        "Nodes",
        len(nodes),
        delta=", ".join(f"{n} pinned: {g}" for g, n in _pinned(view).items()) or "none pinned",
        delta_color="gray",
        delta_arrow="off",
        border=True,
    )
    problems = [f"{mismatched} mismatched"] if mismatched else []
    problems += [f"{silent} not reporting"] if silent else []
    columns[4].metric(
        "On their version",
        f"{on_target} of {running}",
        delta=", ".join(problems) or "every node",
        delta_color="orange" if problems else "green",
        delta_arrow="off",
        help="Nodes whose health check found them running the version the registry assigns "
        "them (pin, canary or production).",
        border=True,
    )
    if view.pins:
        st.caption("Pinned groups: " + ", ".join(f"{g} → {v}" for g, v in view.pins.items()))
    if running:
        st.progress(
            on_target / running,
            text=f"Rollout: {on_target} of {running} nodes report the version they are assigned",
        )


def _when(view: data.ModelView) -> str:
    """Since when production has been production, short."""
    row = view.versions[view.versions["version"] == view.production]
    promoted = row["promoted_at"].iloc[0] if len(row) else None
    return (
        "in production"
        if promoted is None or pd.isna(promoted)
        else (f"since {promoted:%b %d %H:%M} UTC")
    )


def _pinned(view: data.ModelView) -> dict[str, int]:
    groups = view.nodes.loc[view.nodes["reason"] == "pinned", "group"]
    return {str(g): int(n) for g, n in groups.value_counts().sort_index().items()}


def canary(view: data.ModelView) -> None:
    c = view.canary
    if c is None:
        return
    st.subheader(f"Canary: version {c.version}")
    done = min(c.windows_judged, c.windows_wanted)
    st.progress(
        done / c.windows_wanted if c.windows_wanted else 1.0,
        text=f"{c.windows_judged} of {c.windows_wanted} windows judged so far",
    )
    since = f" since {c.started_at:%Y-%m-%d %H:%M} UTC" if c.started_at else ""
    if c.run_id is not None:
        st.markdown(
            f"Started by retrain run {c.run_id}{since} on {len(c.nodes)} nodes (share "
            f"{c.share:.2f}). Once {c.windows_wanted} analysed windows are in (the first after "
            "the start does not count: nodes swap during it), the worker compares its nodes with"
            " the rest and promotes it or rolls it back."
        )
    else:
        st.markdown(
            f"Started by hand{since} on {len(c.nodes)} nodes (share {c.share:.2f}). No job judges "
            "a canary started by hand: promote it, or stop it, when you have seen enough."
        )
        st.code(
            f"edge-monitor models promote {view.model} {c.version}\n"
            f"edge-monitor models canary {view.model} --stop",
            language="bash",
        )
    if c.nodes:
        st.caption("Its nodes: " + ", ".join(c.nodes))


def versions(view: data.ModelView) -> None:
    st.subheader("Versions")
    st.dataframe(
        view.versions,
        hide_index=True,
        column_config={
            "registered_at": st.column_config.DatetimeColumn(
                "Registered", format="YYYY-MM-DD HH:mm"
            ),
            "promoted_at": st.column_config.DatetimeColumn("Promoted", format="YYYY-MM-DD HH:mm"),
            "reference_rows": st.column_config.NumberColumn("Reference rows"),
            "deployable": st.column_config.CheckboxColumn("Has an artifact"),
            "assigned_nodes": st.column_config.NumberColumn("Nodes assigned"),
            "reporting_nodes": st.column_config.NumberColumn("Nodes reporting it"),
            "metrics": "Registered metrics",
            "gate": "Promotion gate",
        },
    )
    if len(view.versions) == 1:
        only = view.versions.iloc[0]
        if only["deployable"]:
            common.empty_state(
                "One version so far",
                f"To try a new version of {view.model} on part of the fleet, register it (an ONNX "
                "file and its card; a retrain hook does this for you), send it to a share of the "
                f"nodes as a canary, then promote it. Version {only['version']} stays the "
                "rollback target.",
                f"edge-monitor models register {view.model} --onnx model.onnx --card card.json\n"
                f"edge-monitor models canary {view.model} VERSION --share 0.1\n"
                f"edge-monitor models promote {view.model} VERSION",
            )
        else:
            common.empty_state(
                "One version so far",
                f"When your nodes move to a new version of {view.model}, register its reference "
                "data under the version name they log, so that its windows are compared with "
                "what that version was trained on.",
                f"edge-monitor models register {view.model} --version VERSION "
                "--reference reference.csv",
            )


def history(view: data.ModelView) -> None:
    st.subheader("Rollout history")
    if view.spans.empty and view.events.empty:
        st.info("No rollout change in the range.")
        return
    if not view.spans.empty:
        figure = px.timeline(
            view.spans,
            x_start="start",
            x_end="end",
            y="version",
            color="role",
            color_discrete_map=ROLE_COLOURS,
            title="Which version was production, canary or pinned, when",
        )
        figure.update_yaxes(title="version", type="category")
        figure.update_layout(height=max(240, 50 * view.spans["version"].nunique() + 140))
        st.plotly_chart(figure, width="stretch")
    st.dataframe(
        view.events,
        hide_index=True,
        column_config={"at": st.column_config.DatetimeColumn("At", format="YYYY-MM-DD HH:mm:ss")},
    )


def _highlight(row: pd.Series) -> list[str]:
    colour = "background-color: rgba(214, 39, 40, 0.18)" if row["mismatch"] else ""
    return [colour] * len(row)


def nodes(view: data.ModelView) -> None:
    st.subheader("Which node runs which version")
    frame = view.nodes
    if frame.empty:
        common.empty_state(
            "No node runs this model yet",
            "Register a node for the model; it prints the node's token (once) for its SDK or "
            "runtime.",
            f"edge-monitor nodes add NODE --model {view.model} --site SITE --group GROUP",
        )
        return
    if not view.per_version.empty:
        figure = px.bar(
            view.per_version,
            x="version",
            y="nodes",
            color="side",
            barmode="group",
            title="Nodes per version: assigned by the registry, reported by the nodes",
        )
        figure.update_xaxes(type="category")
        figure.update_layout(height=320)
        st.plotly_chart(figure, width="stretch")
    mismatched = int(frame["mismatch"].sum())
    if mismatched:
        st.warning(
            f"{mismatched} {'nodes report' if mismatched != 1 else 'node reports'} a version "
            "other than the one assigned (highlighted): still swapping, or not polling its "
            "assignment.",
            icon=":material/sync_problem:",
        )
    only = st.toggle("Only mismatched nodes", key="mismatch_only") if mismatched else False
    shown = common.paged(frame[frame["mismatch"]] if only else frame, "nodes")
    st.dataframe(
        shown.assign(link=[common.page_url("node", node=n) for n in shown["node"]]).style.apply(
            _highlight, axis=1
        ),
        hide_index=True,
        column_order=[
            "node",
            "link",
            "assigned",
            "reported",
            "mismatch",
            "reason",
            "site",
            "group",
            "checked_at",
            "records_version",
            "records_at",
        ],
        column_config={
            "link": st.column_config.LinkColumn("Open", display_text="node page"),
            "node": "Node",
            "assigned": "Assigned",
            "reported": "Reported",
            "site": "Site",
            "group": "Group",
            "reason": "Assigned as",
            "checked_at": st.column_config.DatetimeColumn("Checked", format="YYYY-MM-DD HH:mm"),
            "records_version": "Version of its last records",
            "records_at": st.column_config.DatetimeColumn(
                "Last records", format="YYYY-MM-DD HH:mm"
            ),
            "mismatch": st.column_config.CheckboxColumn("Mismatch"),
        },
    )


st.title("Models")
with common.guarded("Models"):
    names = common.read(common.model_names)
    if not names:
        common.empty_state(
            "No model yet",
            "Register a model and its reference data, then point the SDK of your nodes at the "
            "collector.",
            "edge-monitor models add NAME\n"
            "edge-monitor models register NAME --version 1 --reference reference.csv",
        )
    else:
        model = common.pick_model(names)
        rng = common.time_range()
        view = common.read(
            data.model_view, model, common.settings().retrain_canary_windows, rng.start, rng.end
        )
        if view.versions.empty:
            common.empty_state(
                f"{model} has no version yet",
                "Register a version: its reference data (what drift is measured against), or an "
                "ONNX file and its card for the bundled runtime.",
                f"edge-monitor models register {model} --version 1 --reference reference.csv",
            )
        else:
            if view.production is None and view.canary is None and not view.pins:
                deployable = view.versions.loc[view.versions["deployable"], "version"]
                if len(deployable):
                    common.empty_state(
                        "Nothing deployed yet",
                        f"No version of {model} is in production: the bundled runtime on your "
                        "nodes is sent nothing. Promote one.",
                        f"edge-monitor models promote {model} {deployable.iloc[-1]}",
                    )
                else:
                    st.caption(
                        f"Every version of {model} is registered by its reference data alone: "
                        "the model runs outside the bundled runtime, and the registry sends "
                        "nodes nothing. The nodes below report the version they run."
                    )
            deployment(view)
            canary(view)
            versions(view)
            nodes(view)
            history(view)
