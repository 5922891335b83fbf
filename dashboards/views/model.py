"""Model page: one model's drift (per feature, and multivariate), accuracy (realised on labels,
and estimated without them with its band and trust verdict) and data quality window by window,
for the fleet or any site, group or node; one window in detail (reference against current
distributions, data quality, the HTML report).

Query parameters: ``model``, ``scope`` (``fleet``, ``site:NAME``, ``group:NAME``,
``node:NAME``, as the CLI's ``--scope``), ``window`` (a window's start, ISO 8601; absent: the
latest) and ``tab`` (Drift, Distributions, Accuracy, Data quality, Report), so that other pages
can link to a scope's view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from monitor.dashboards import common
from monitor.dashboards import estimate_charts as charts
from monitor.dashboards.data import estimates
from monitor.dashboards.data import model as data

FLEET_SCOPE: data.Scope = ("fleet", "")
#: Colours: the fleet's line, the chosen scope's line, a drifted window or feature, the
#: reference's bars, the window's bars, no verdict.
FLEET_COLOUR = "#4C78A8"
SCOPE_COLOUR = "#F58518"
DRIFTED_COLOUR = "#D62728"
REFERENCE_COLOUR = "#8C8C8C"
CURRENT_COLOUR = "#4C78A8"
UNKNOWN_COLOUR = "#C7C7C7"
NOT_DRIFTED_COLOUR = "#D6E6F4"
#: The page's tabs (``?tab=`` names the open one; the first by default).
TABS = ["Drift", "Distributions", "Accuracy", "Data quality", "Report"]
#: Heatmap cell values: not drifted, insufficient data, drifted.
CODES = {data.NOT_DRIFTED: 0, data.INSUFFICIENT: 1, data.DRIFTED: 2}


def moment(value: datetime) -> str:
    """A UTC time as plotly takes it (plotly.js reads no time zones: the axes say UTC)."""
    return f"{value:%Y-%m-%d %H:%M:%S}"


def share(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.0%}"


def number(value: float | None) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.3g}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


# --- Pickers --------------------------------------------------------------------------------


def pick_window(choices: list[data.WindowChoice]) -> data.WindowChoice:
    """The window the per-window parts show: ``?window=`` when it is in the range, else the
    latest (the URL names a window only when another than the latest is picked)."""
    by_start = {moment(c.start): c for c in choices}
    wanted = parse_moment(st.query_params.get("window", ""))
    starts = list(by_start)
    chosen: str = st.selectbox(
        "Window",
        starts,
        index=starts.index(wanted) if wanted in by_start else 0,
        format_func=lambda start: by_start[start].label,
        key="model_window",
        help="The window shown by the tiles, Distributions, Data quality and Report "
        "(the latest by default).",
    )
    window = by_start[chosen]
    if chosen == starts[0]:
        if "window" in st.query_params:
            del st.query_params["window"]
    elif st.query_params.get("window") != window_param(window.start):
        st.query_params["window"] = window_param(window.start)
    return window


def window_param(start: datetime) -> str:
    """A window's start as ``?window=`` holds it: ISO 8601 in UTC, ``Z`` (no ``+``, which a
    hand-typed URL would turn into a space)."""
    return f"{start.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z"


def parse_moment(text: str) -> str:
    """``?window=`` as ``moment`` spells a time ("" when it is no time): any ISO 8601 time,
    naive read as UTC; an offset's ``+`` that a URL turned into a space is taken back."""
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    except ValueError:
        return ""
    return moment(value.astimezone(UTC) if value.tzinfo else value)


def pick_scope(available: list[data.Scope]) -> data.Scope:
    """The scope shown: ``?scope=`` (kept even when not judged in the window), else the fleet.
    A selectbox searches as you type, so a thousand nodes stay pickable."""
    options = list(available) or [FLEET_SCOPE]
    wanted = data.parse_scope(st.query_params.get("scope"))
    if wanted is not None and wanted not in options:
        options.append(wanted)
    chosen: data.Scope = st.selectbox(
        "Scope",
        options,
        index=options.index(wanted) if wanted in options else 0,
        format_func=data.scope_label,
        key="model_scope",
        help="The fleet, a site, a group or a node (type to search). The per-window parts show "
        "the scopes judged in the chosen window.",
    )
    text = data.scope_text(chosen)
    if chosen == FLEET_SCOPE:
        if "scope" in st.query_params:
            del st.query_params["scope"]
    elif st.query_params.get("scope") != text:
        st.query_params["scope"] = text
    return chosen


# --- Tiles ----------------------------------------------------------------------------------


def tiles(found: data.ScopeWindow) -> None:
    drift, quality, performance = found.drift, found.quality, found.performance
    columns = st.columns(6)
    if drift is None:
        columns[0].metric("Share drifted", "-", help="Not judged in this window.")
    else:
        d = drift.result
        columns[0].metric(
            "Share drifted",
            share(d.share_drifted),
            help=f"{d.n_drifted} of {d.n_features} features drifted; verdict: "
            f"{data.verdict(d.drifted)}.",
        )
    columns[1].metric(
        "Drifted features",
        len(found.drifted_features),
        help=", ".join(found.drifted_features) or "None.",
    )
    if performance is None or performance.result.accuracy is None:
        labelled = 0 if performance is None else performance.result.n_labelled
        columns[2].metric("Accuracy", "-", help=f"Too few labels ({labelled} labelled records).")
    else:
        p = performance.result
        columns[2].metric("Accuracy", f"{p.accuracy:.1%}", help=f"On {p.n_labelled:,} labels.")
    columns[3].metric(
        "Label coverage",
        share(None if performance is None else performance.result.label_coverage),
    )
    columns[4].metric(
        "Data-quality issues",
        "-" if quality is None else quality.result.n_issues,
        help=", ".join(found.quality_issues) or "None.",
    )
    estimate_tile(columns[5], found)
    if drift is not None:
        st.caption(
            f"{drift.result.n_rows:,} records in this window"
            + (f" · judged against {drift.reference}" if drift.reference else "")
            + (f" · revision {drift.revision}" if drift.revision > 1 else "")
        )


def estimate_tile(column: Any, found: data.ScopeWindow) -> None:
    """The window's estimated accuracy, its verdict beneath it: red "not trusted" when the
    evidence says the estimate cannot be relied on."""
    estimate = found.estimation
    if estimate is None or estimate.result.accuracy is None:
        why = None if estimate is None else estimates.NOT_ESTIMABLE.get(estimate.result.status)
        column.metric(
            "Estimated accuracy",
            "-",
            help=f"Not estimated: {why}." if why else "No estimate for this scope and window.",
        )
        return
    e = estimate.result
    row = estimates.estimate_frame([estimate]).iloc[0]
    column.metric(
        "Estimated accuracy",
        f"{e.accuracy:.1%}",
        delta=estimates.VERDICTS.get(e.trusted, "no verdict"),
        delta_color="red" if e.trusted is False else "gray",
        delta_arrow="off",
        help=estimates.estimate_text(row).capitalize() + ".",
    )


# --- Drift ----------------------------------------------------------------------------------


def drift_figure(frame: pd.DataFrame) -> go.Figure:
    """Share drifted per window, one line per scope; a drifted window's marker is a red
    diamond, a window without a verdict an open grey circle."""
    figure = go.Figure()
    for label, rows in frame.groupby("scope", sort=False):
        fleet = label == data.scope_label(FLEET_SCOPE)
        colour = FLEET_COLOUR if fleet else SCOPE_COLOUR
        drifted = rows["drifted"].tolist()
        figure.add_trace(
            go.Scatter(
                x=[moment(t) for t in rows["window_start"]],
                y=[None if pd.isna(v) else float(v) for v in rows["share_drifted"]],
                name=str(label),
                mode="lines+markers",
                # The fleet dotted over the scope: where they coincide, both stay visible.
                line={
                    "color": colour,
                    "dash": "dot" if fleet else "solid",
                    "width": 2 if fleet else 3,
                },
                marker=charts.verdict_marker(drifted, colour),
                customdata=[
                    [data.verdict(v), f"{n} of {of}", f"{r:,}"]
                    for v, n, of, r in zip(
                        drifted, rows["n_drifted"], rows["n_features"], rows["n_rows"], strict=True
                    )
                ],
                hovertemplate="%{x} UTC<br>share drifted %{y:.0%} (%{customdata[1]} features)"
                "<br>%{customdata[0]} · %{customdata[2]} records<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(
        yaxis={"title": "share of features drifted", "tickformat": ".0%", "rangemode": "tozero"},
        xaxis={"title": "window start (UTC)"},
        height=340,
        margin={"t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.12},
    )
    return figure


def heatmap_figure(heatmap: data.Heatmap) -> go.Figure:
    """Features (rows) x windows (columns), coloured by the stored verdict; hover: method,
    statistic, p-values."""
    columns = [moment(w) for w in heatmap.windows]
    position = {w: i for i, w in enumerate(heatmap.windows)}
    rows = {f: i for i, f in enumerate(heatmap.features)}
    z: list[list[int | None]] = [[None] * len(columns) for _ in heatmap.features]
    text: list[list[str]] = [["not judged"] * len(columns) for _ in heatmap.features]
    for cell in heatmap.cells.itertuples(index=False):
        i, j = rows[cell.feature], position[cell.window_start]
        z[i][j] = CODES[cell.verdict]
        text[i][j] = (
            f"{cell.verdict} · {cell.method or '-'} {number(cell.statistic)} "
            f"(threshold {number(cell.threshold)})<br>p-value {number(cell.p_value)} · "
            f"adjusted {number(cell.adjusted_p_value)} · {cell.n_current:,} rows"
        )
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=columns,
            y=list(heatmap.features),
            text=text,
            zmin=0,
            zmax=2,
            colorscale=[
                [0.0, NOT_DRIFTED_COLOUR],
                [1 / 3, NOT_DRIFTED_COLOUR],
                [1 / 3, UNKNOWN_COLOUR],
                [2 / 3, UNKNOWN_COLOUR],
                [2 / 3, DRIFTED_COLOUR],
                [1.0, DRIFTED_COLOUR],
            ],
            showscale=False,
            xgap=1,
            ygap=1,
            hovertemplate="%{y} · %{x} UTC<br>%{text}<extra></extra>",
        )
    )
    figure.update_layout(
        height=80 + 24 * len(heatmap.features),
        margin={"t": 10, "b": 10},
        yaxis={"autorange": "reversed", "type": "category"},
        xaxis={"title": "window start (UTC)"},
    )
    return figure


def multivariate_figure(frame: pd.DataFrame) -> go.Figure:
    """Reconstruction error per window against its upper threshold (dashed), one pair per
    scope; a drifted window's marker is a red diamond, a window without a verdict an open grey
    circle."""
    figure = go.Figure()
    for label, rows in frame.groupby("scope", sort=False):
        fleet = label == data.scope_label(FLEET_SCOPE)
        colour = FLEET_COLOUR if fleet else SCOPE_COLOUR
        charts.multivariate_traces(
            figure, rows, str(label), colour, moment, width=2 if fleet else 3
        )
    figure.update_layout(
        yaxis={"title": "reconstruction error"},
        xaxis={"title": "window start (UTC)"},
        height=320,
        margin={"t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.14},
    )
    return figure


def time_axis(starts: pd.Series) -> dict[str, Any]:
    """An x axis from the first to the last window start, a little beyond each: charts of the
    same windows drawn one above the other line up (autorange pads each by its own markers,
    and a chart that lacks the oldest windows would start later)."""
    if starts.empty:
        return {}
    first, last = starts.min(), starts.max()
    pad = max((last - first) * 0.03, pd.Timedelta(minutes=1))
    return {"range": [moment(first - pad), moment(last + pad)]}


def multivariate_part(
    name: str, chosen: tuple[data.Scope, ...], period: common.TimeRange, axis: dict[str, Any]
) -> None:
    st.subheader("Multivariate drift")
    frame = common.read(data.multivariate_over_time, name, chosen, period.start, period.end)
    if frame["reconstruction_error"].isna().all():
        statuses = sorted({str(status).replace("_", " ") for status in frame["status"]})
        st.caption(
            "No multivariate drift in this time range"
            + (
                f" ({', '.join(statuses)})."
                if statuses
                else ": windows analysed before it was added have none."
            )
        )
        return
    figure = multivariate_figure(frame)
    figure.update_xaxes(**axis)
    st.plotly_chart(figure, width="stretch", key="model_multivariate")
    st.caption(
        "How far the reference's principal components miss each window's rows (their mean "
        "reconstruction error) against the threshold learned from the reference's own chunks "
        "(dashed): a change in how features move together raises it while every feature's own "
        "distribution stays put. A red diamond marks a drifted window."
    )


def drift_tab(name: str, scope: data.Scope, period: common.TimeRange) -> None:
    # The scope first, so that the fleet's line is drawn over it.
    chosen = (FLEET_SCOPE,) if scope == FLEET_SCOPE else (scope, FLEET_SCOPE)
    frame = common.read(data.drift_over_time, name, chosen, period.start, period.end)
    st.subheader("Drift over time")
    axis = time_axis(frame["window_start"])
    figure = drift_figure(frame)
    figure.update_xaxes(**axis)
    st.plotly_chart(figure, width="stretch", key="model_drift_over_time")
    st.caption(
        "The share of features whose verdict is drifted (after false-discovery control), per "
        "window; a red diamond marks a window whose verdict is drifted."
        + ("" if scope == FLEET_SCOPE else f" {data.scope_label(scope)} beside the fleet.")
    )
    multivariate_part(name, chosen, period, axis)
    st.subheader(f"Features × windows · {data.scope_label(scope)}")  # noqa: RUF001
    heatmap = common.read(data.drift_heatmap, name, scope, period.start, period.end)
    if heatmap.cells.empty:
        common.empty_state(
            f"{data.scope_label(scope)} was not judged in this time range",
            "A node is judged in the windows it sent records in; choose a longer time range or "
            "another scope.",
        )
        return
    st.plotly_chart(heatmap_figure(heatmap), width="stretch", key="model_heatmap")
    st.caption(
        "Red: drifted; pale blue: not drifted; grey: too little data for a verdict; blank: "
        "not judged. Hover for the method, statistic and p-values."
        + (f" The newest {data.HEATMAP_WINDOWS} windows of the range." if heatmap.truncated else "")
    )


# --- Distributions --------------------------------------------------------------------------


def distribution_figure(found: data.Distribution, where: str) -> go.Figure:
    """Reference against current: overlaid histograms (numerical) or grouped bars
    (categorical), each side as shares of its present values."""
    figure = go.Figure()
    numerical = found.kind == "numerical"
    for side, values, n, colour in (
        ("reference", found.reference, found.n_reference, REFERENCE_COLOUR),
        (where, found.current, found.n_current, CURRENT_COLOUR),
    ):
        figure.add_trace(
            go.Bar(
                x=found.bins,
                y=values,
                width=found.widths if numerical else None,
                name=f"{side} (n={n:,})",
                marker={"color": colour},
                opacity=0.55 if numerical else 0.9,
                hovertemplate="%{x}: %{y:.1%}<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(
        barmode="overlay" if numerical else "group",
        yaxis={"title": "share of rows", "tickformat": ".0%"},
        xaxis={"title": found.column, "type": "linear" if numerical else "category"},
        height=320,
        margin={"t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.15},
    )
    return figure


def verdict_line(found: data.ScopeWindow, column: str) -> str:
    row = next((f for f in found.features if f.feature == column), None)
    if row is None:
        return "No stored verdict for this column in this window."
    return (
        f"Stored verdict: **{data.verdict(row.drifted)}** · {row.method or '-'} "
        f"{number(row.statistic)} (threshold {number(row.threshold)}) · p-value "
        f"{number(row.p_value)}, adjusted {number(row.adjusted_p_value)}"
    )


def distributions_tab(
    name: str, window: data.WindowChoice, scope: data.Scope, found: data.ScopeWindow
) -> None:
    if found.drift is None:
        st.info(f"{data.scope_label(scope)} was not judged in this window: pick another scope.")
        return
    with st.spinner("Reading the window's records..."):
        drawn = common.read(data.distributions, name, window.start, scope, found.drift.computed_at)
    if drawn.missing:
        st.info(f"Nothing to compare: {drawn.missing}.")
        return
    where = f"{data.scope_label(scope).lower()}, this window"
    features = [c for c in drawn.columns if c != "prediction"]
    if features:
        default = found.drifted_features[0] if found.drifted_features else features[0]
        column = st.selectbox(
            "Feature",
            features,
            index=features.index(default) if default in features else 0,
            key="model_feature",
            help="A drifted feature is shown first, when the window has one.",
        )
        shown = drawn.columns[column]
        st.plotly_chart(
            distribution_figure(shown, where), width="stretch", key="model_distribution"
        )
        st.markdown(verdict_line(found, column))
        if shown.missing_current or shown.missing_reference:
            st.caption(
                f"Missing values, left out: {shown.missing_current:,} in the window, "
                f"{shown.missing_reference:,} in the reference."
            )
    st.subheader("Prediction distribution")
    prediction = drawn.columns.get("prediction")
    if prediction is None:
        st.info("The window or the reference has no prediction column.")
    else:
        st.plotly_chart(
            distribution_figure(prediction, where), width="stretch", key="model_prediction"
        )
        st.markdown(verdict_line(found, "prediction"))
    st.caption(
        f"Reference: version {drawn.version}'s reference data"
        + (
            f"; the verdicts were judged against {drawn.judged_against}."
            if drawn.judged_against and drawn.judged_against != f"version {drawn.version}"
            else "."
        )
    )


# --- Accuracy -------------------------------------------------------------------------------


def accuracy_figure(
    frame: pd.DataFrame, estimated: pd.DataFrame, metric: str = "accuracy"
) -> go.Figure:
    """One figure per window above, the window's label coverage below, on one time axis: the
    realised figure on the window's labelled records (accuracy with its Wilson band), and the
    figure estimated without labels with its band (shaded). A window whose estimate is not
    trusted is shaded red with a red open marker, its reason in the hover: an estimate the
    evidence contradicts never looks like reassurance."""
    figure = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.06
    )
    x = [moment(t) for t in frame["window_start"]]
    shown = estimates.METRICS[metric]
    confidence = f"{data.CONFIDENCE:.0%}"
    if metric == "accuracy":
        charts.band(
            figure,
            x,
            frame["accuracy_high"],
            frame["accuracy_low"],
            ("band high", f"{confidence} interval"),
            "rgba(76, 120, 168, 0.2)",
            row=1,
            col=1,
        )
    charts.estimate_traces(figure, estimated, metric, moment, row=1, col=1)
    realised: dict[str, Any] = {"customdata": None}
    if metric == "accuracy":
        realised = {
            "customdata": list(
                zip(
                    charts.values(frame["accuracy_low"]),
                    charts.values(frame["accuracy_high"]),
                    strict=True,
                )
            ),
            "hovertemplate": "%{x} UTC<br>realised accuracy %{y:.1%} "
            f"({confidence}: " + "%{customdata[0]:.1%} to %{customdata[1]:.1%})<extra></extra>",
        }
    figure.add_trace(
        go.Scatter(
            x=x,
            y=charts.values(frame[metric]),
            name=f"realised {shown}",
            mode="lines+markers",
            line={"color": FLEET_COLOUR},
            **realised,
        ),
        row=1,
        col=1,
    )
    figure.add_trace(
        go.Bar(
            x=x,
            y=charts.values(frame["label_coverage"]),
            name="label coverage",
            marker={"color": REFERENCE_COLOUR},
            opacity=0.6,
            customdata=frame["n_labelled"].tolist(),
            hovertemplate="%{x} UTC<br>coverage %{y:.0%} (%{customdata:,} labels)<extra></extra>",
        ),
        row=2,
        col=1,
    )
    figure.update_yaxes(title_text=shown, tickformat=".0%", row=1, col=1)
    figure.update_yaxes(title_text="labelled", tickformat=".0%", range=[0, 1], row=2, col=1)
    figure.update_xaxes(title_text="window start (UTC)", row=2, col=1)
    figure.update_layout(
        height=440,
        margin={"t": 30, "b": 10},
        legend={"orientation": "h", "y": 1.1},
    )
    return figure


def latest_estimate_line(estimated: pd.DataFrame, scope: data.Scope, metric: str) -> None:
    """The newest estimate in words under the chart; a warning when it is not trusted."""
    row = estimates.latest_estimate(estimated, metric)
    if row is None:
        return
    text = (
        f"**Latest estimate** ({data.scope_label(scope)}, window of "
        f"{row['window_start']:%Y-%m-%d %H:%M} UTC): {estimates.estimate_text(row, metric)}"
    )
    if row["trusted"] is False:
        st.warning(text, icon=":material/warning:")
    else:
        st.markdown(text)


def error_figure(frame: pd.DataFrame) -> go.Figure:
    """A regression model's MAE and RMSE per window."""
    figure = go.Figure()
    x = [moment(t) for t in frame["window_start"]]
    for column in ("mae", "rmse"):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=[None if pd.isna(v) else float(v) for v in frame[column]],
                name=column.upper(),
                mode="lines+markers",
            )
        )
    figure.update_layout(height=340, margin={"t": 30, "b": 10}, xaxis={"title": "window (UTC)"})
    return figure


def no_estimate_line(performance: data.Performance, scope: data.Scope) -> None:
    """One line saying why there is no estimate to draw."""
    if performance.not_estimable:
        st.caption(f"No estimate without labels: {performance.not_estimable}.")
    elif performance.estimated.empty:
        st.caption(
            f"No estimate for {data.scope_label(scope)} in this time range: windows analysed "
            "before estimation was added have none."
        )
    else:
        statuses = ", ".join(sorted(set(performance.estimated["status"])))
        st.caption(f"No estimate for {data.scope_label(scope)} in this time range ({statuses}).")


def pick_metric() -> str:
    chosen = st.segmented_control(
        "Figure",
        list(estimates.METRICS),
        default="accuracy",
        format_func=lambda m: estimates.METRICS[m],
        key="model_metric",
        required=True,
    )
    return str(chosen or "accuracy")


def accuracy_tab(name: str, scope: data.Scope, period: common.TimeRange) -> None:
    performance = common.read(data.performance_over_time, name, scope, period.start, period.end)
    frame, estimated = performance.realised, performance.estimated
    if frame.empty and estimated.empty:
        st.info(f"{data.scope_label(scope)} has no performance figures in this time range.")
        return
    labelled = bool((frame["n_labelled"] > 0).any())
    has_estimate = bool(estimated["accuracy"].notna().any())
    if not labelled and not has_estimate:
        common.empty_state(
            "No labels yet",
            "Accuracy needs ground truth. Send each label with the SDK (it joins its record by "
            "request id), or POST them to the collector's /v1/labels; a window's accuracy "
            "appears once it has enough labels (late labels recompute their windows).",
            None,
        )
        st.code('monitor.log_label(request_id, "fail")', language="python")
        no_estimate_line(performance, scope)
        return
    regression = not frame.empty and (frame["task"] == "regression").all()
    if regression:
        st.plotly_chart(error_figure(frame), width="stretch", key="model_accuracy")
        st.caption(
            "Errors of a regression model per window (no interval: their distribution is not "
            "stored)."
        )
        no_estimate_line(performance, scope)
        return
    metric = pick_metric()
    st.plotly_chart(
        accuracy_figure(frame, estimated, metric), width="stretch", key="model_accuracy"
    )
    latest_estimate_line(estimated, scope, metric)
    interval = (
        f" with its {data.CONFIDENCE:.0%} Wilson interval (the interval alert rules judge with)"
        if metric == "accuracy"
        else ""
    )
    st.caption(
        f"Solid: the {estimates.METRICS[metric]} realised on each window's labelled records"
        f"{interval}; dashed, with its shaded band: the {estimates.METRICS[metric]} estimated "
        "without labels from the model's calibrated confidence. A red cross and a red shade "
        "mark a window whose estimate is not trusted (hover for why). Bars: the share of the "
        "window's records with a label."
    )
    if not labelled:
        st.caption(
            "No labels yet: the realised line appears as labels arrive (`monitor.log_label`)."
        )
    if not has_estimate:
        no_estimate_line(performance, scope)


# --- Quality, report ------------------------------------------------------------------------


def quality_tab(name: str, window: data.WindowChoice, scope: data.Scope) -> None:
    table = common.read(data.quality_table, name, window.start, scope)
    if table.empty:
        st.info(f"{data.scope_label(scope)} has no data-quality figures in this window.")
        return
    issues = sum(issue is True for issue in table["issue"])
    st.markdown(
        f"**{issues} of {len(table)} columns with an issue** in this window "
        f"({data.scope_label(scope)})."
        if issues
        else f"No data-quality issue in this window ({data.scope_label(scope)})."
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        key="model_quality",
        column_config={
            "feature": st.column_config.TextColumn("column"),
            "column_kind": st.column_config.TextColumn("kind"),
            "issue": st.column_config.CheckboxColumn("issue"),
            "n_rows": st.column_config.NumberColumn("rows", format="localized"),
            "n_missing": st.column_config.NumberColumn("missing", format="localized"),
            "missing_share": st.column_config.NumberColumn("missing share", format="percent"),
            "n_invalid": st.column_config.NumberColumn("invalid", format="localized"),
            "n_out_of_range": st.column_config.NumberColumn("out of range"),
            "out_of_range_share": st.column_config.NumberColumn(
                "out-of-range share", format="percent"
            ),
            "n_new_category_rows": st.column_config.NumberColumn("new-category rows"),
            "n_new_categories": st.column_config.NumberColumn("new categories"),
            "new_categories": st.column_config.TextColumn("most frequent new categories"),
            "constant": st.column_config.CheckboxColumn("constant"),
        },
    )


def report_tab(
    name: str, window: data.WindowChoice, scope: data.Scope, found: data.ScopeWindow
) -> None:
    computed = None if found.drift is None else found.drift.computed_at
    wanted = (name, window.start, scope, computed)
    st.markdown(
        "The window's verdicts for this scope with Evidently's distribution plots, as "
        "`edge-monitor report` writes it."
    )
    if st.button("Build the report of this window", key="model_build_report", type="primary"):
        with st.spinner("Building the report (Evidently takes a few seconds)..."):
            built = common.read(data.report, name, window.start, scope, computed)
        st.session_state["model_report"] = (wanted, built)
    kept: Any = st.session_state.get("model_report")
    if kept is None or kept[0] != wanted:
        st.caption(f"Or from a shell: `edge-monitor report --model {name} --window "
                   f"{window.start.isoformat()} --scope {data.scope_text(scope)}`")  # fmt: skip
        return
    built = kept[1]
    st.download_button(
        "Download the report",
        data=built.html,
        file_name=built.file_name,
        mime="text/html",
        key="model_download_report",
        icon=":material/download:",
    )
    st.iframe(built.html, height=900)


# --- The page -------------------------------------------------------------------------------


def draw() -> None:
    names = common.read(common.model_names)
    if not names:
        common.empty_state(
            "No model yet",
            "Register a model and its reference data, then point the SDK of your nodes at the "
            "collector.",
            "edge-monitor models register NAME --version 1 --reference reference.parquet",
        )
        return
    top = st.columns([1, 2, 2])
    with top[0]:
        name = common.pick_model(names)
    state = common.read(data.model_state, name)
    if not state.with_reference:
        common.empty_state(
            f"{name} has no reference data",
            "Drift is measured against a version's reference data (a sample of what the model "
            "saw in training or validation). Register a version with its reference file "
            "(Parquet or CSV):",
            f"edge-monitor models register {name} --version V --reference FILE",
        )
        return
    if state.latest_window is None:
        common.empty_state(
            f"No window of {name} analysed yet",
            "The worker analyses each window once it closes (drift, quality, accuracy). Start "
            "it, and keep it running:",
            "edge-monitor worker",
        )
        return
    period = common.time_range()
    choices = common.read(data.windows, name, period.start, period.end)
    if not choices:
        common.empty_state(
            "No analysed window in this time range",
            f"The latest window of {name} started at {state.latest_window:%Y-%m-%d %H:%M} UTC: "
            "choose a longer time range in the sidebar.",
        )
        return
    with top[2]:
        window = pick_window(choices)
    with top[1]:
        scope = pick_scope(common.read(data.scopes, name, window.start))
    found = common.read(data.scope_window, name, window.start, scope)
    tiles(found)
    # Only the open tab runs (the window's records are read only for Distributions), and the
    # URL names it (?tab=Accuracy), so that a link opens it.
    drift, distributions, accuracy, quality, report = st.tabs(TABS, key="tab", bind="query-params")
    if drift.open:
        with drift:
            drift_tab(name, scope, period)
    if distributions.open:
        with distributions:
            distributions_tab(name, window, scope, found)
    if accuracy.open:
        with accuracy:
            accuracy_tab(name, scope, period)
    if quality.open:
        with quality:
            quality_tab(name, window, scope)
    if report.open:
        with report:
            report_tab(name, window, scope, found)


st.title("Model")
with common.guarded("Model"):
    draw()
