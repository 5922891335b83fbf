"""Plotly traces of estimated performance and multivariate drift, shared by the Model and Node
pages: an estimate's line with its shaded band, the windows whose estimate is not trusted
marked so that they never look like reassurance, and a reconstruction error against its
threshold with drifted windows marked.

Each function adds traces to a figure (a subplot's ``row``/``col`` passed through), with the
window starts drawn by ``at`` (the Model page writes naive UTC text, the Node page datetimes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from monitor.dashboards.data import estimates

#: The estimate's line and band; a verdict that says "do not rely on this"; the shade behind a
#: window whose estimate is not trusted; no verdict.
ESTIMATE_COLOUR = "#9467BD"
ESTIMATE_BAND = "rgba(148, 103, 189, 0.18)"
ALARM_COLOUR = "#D62728"
UNTRUSTED_SHADE = "rgba(214, 39, 40, 0.10)"
UNKNOWN_COLOUR = "#C7C7C7"

When = Callable[[datetime], Any]


def verdict_marker(drifted: list[bool | None], colour: str) -> dict[str, Any]:
    """Markers for a line of verdicts: a red diamond where drift was found, the line's own dot
    where it was not, an open grey circle where there was no verdict."""
    return {
        "color": [
            ALARM_COLOUR if v is True else colour if v is False else UNKNOWN_COLOUR for v in drifted
        ],
        "symbol": [
            "diamond" if v is True else "circle" if v is False else "circle-open" for v in drifted
        ],
        "size": [12 if v is True else 7 for v in drifted],
    }


def values(column: pd.Series) -> list[float | None]:
    """A column as plain floats for a figure (None where missing: a gap in the line)."""
    return [None if pd.isna(v) else float(v) for v in column]


def band(
    figure: go.Figure,
    x: list[Any],
    high: pd.Series,
    low: pd.Series,
    names: tuple[str, str],
    colour: str,
    **where: Any,
) -> None:
    """A shaded band: an invisible upper line (``names[0]``, out of the legend), then the
    lower one (``names[1]``) filled up to it."""
    upper_name, name = names
    figure.add_trace(
        go.Scatter(
            x=x,
            y=values(high),
            name=upper_name,
            mode="lines",
            line={"width": 0},
            showlegend=False,
            hoverinfo="skip",
        ),
        **where,
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=values(low),
            name=name,
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=colour,
            hoverinfo="skip",
        ),
        **where,
    )


def estimate_traces(
    figure: go.Figure, estimated: pd.DataFrame, metric: str, at: When, **where: Any
) -> None:
    """The estimated figure per window (dashed) with its band shaded ("estimate band"); the
    windows whose estimate is not trusted shaded red behind, a red open marker on the line and
    a red cross named "not trusted", the reason in the hover. Nothing when no window has an
    estimate of ``metric``."""
    rows = estimated[estimated[metric].notna()]
    if rows.empty:
        return
    shown = estimates.METRICS[metric]
    x = [at(t) for t in rows["window_start"]]
    band(
        figure,
        x,
        rows[f"{metric}_upper"],
        rows[f"{metric}_lower"],
        ("estimate band high", "estimate band"),
        ESTIMATE_BAND,
        **where,
    )
    trusted = rows["trusted"].tolist()
    verdicts = [
        estimates.trust_text(t, r) for t, r in zip(trusted, rows["trust_reason"], strict=True)
    ]
    figure.add_trace(
        go.Scatter(
            x=x,
            y=values(rows[metric]),
            name=f"estimated {shown}",
            mode="lines+markers",
            line={"color": ESTIMATE_COLOUR, "dash": "dash"},
            marker={
                "color": [ALARM_COLOUR if t is False else ESTIMATE_COLOUR for t in trusted],
                "symbol": ["circle-open" if t is False else "circle" for t in trusted],
                "size": [13 if t is False else 7 for t in trusted],
                "line": {"width": 2},
            },
            customdata=list(
                zip(
                    values(rows[f"{metric}_lower"]),
                    values(rows[f"{metric}_upper"]),
                    verdicts,
                    strict=True,
                )
            ),
            hovertemplate=f"%{{x}} UTC<br>estimated {shown} %{{y:.1%}} (band "
            "%{customdata[0]:.1%} to %{customdata[1]:.1%})<br>%{customdata[2]}<extra></extra>",
        ),
        **where,
    )
    untrusted = rows[[t is False for t in trusted]]
    if untrusted.empty:
        return
    figure.add_trace(
        go.Scatter(
            x=[at(t) for t in untrusted["window_start"]],
            y=values(untrusted[metric]),
            name="not trusted",
            mode="markers",
            marker={
                "color": ALARM_COLOUR,
                "symbol": "x-thin-open",
                "size": 16,
                "line": {"width": 2},
            },
            text=[estimates.trust_text(False, r) for r in untrusted["trust_reason"]],
            hovertemplate="%{x} UTC<br>%{text}<extra></extra>",
        ),
        **where,
    )
    for start, end in zip(untrusted["window_start"], untrusted["window_end"], strict=True):
        # One window wide, centred on its point (drawn at the window's start).
        half = (end - start) / 2
        figure.add_vrect(
            x0=at(start - half),
            x1=at(start + half),
            fillcolor=UNTRUSTED_SHADE,
            line_width=0,
            layer="below",
            **where,
        )


def multivariate_traces(
    figure: go.Figure,
    rows: pd.DataFrame,
    scope: str | None,
    colour: str,
    at: When,
    *,
    width: int = 2,
    **where: Any,
) -> None:
    """One scope's reconstruction error per window ("<scope>: reconstruction error", or
    "reconstruction error" when the figure shows one scope) against its upper threshold
    (dashed: "<scope>: threshold", or "error threshold"); a drifted window's marker is a red
    diamond, a window without a verdict an open grey circle."""
    name, threshold = (
        (f"{scope}: reconstruction error", f"{scope}: threshold")
        if scope
        else ("reconstruction error", "error threshold")
    )
    x = [at(t) for t in rows["window_start"]]
    drifted = rows["drifted"].tolist()
    figure.add_trace(
        go.Scatter(
            x=x,
            y=values(rows["upper_threshold"]),
            name=threshold,
            mode="lines",
            line={"color": colour, "dash": "dash", "width": 1},
            hovertemplate="%{x} UTC<br>upper threshold %{y:.4g}<extra>%{fullData.name}</extra>",
        ),
        **where,
    )
    figure.add_trace(
        go.Scatter(
            x=x,
            y=values(rows["reconstruction_error"]),
            name=name,
            mode="lines+markers",
            line={"color": colour, "width": width},
            marker=verdict_marker(drifted, colour),
            customdata=[
                [_verdict(v), _figure(ref), _figure(p), f"{int(n):,}"]
                for v, ref, p, n in zip(
                    drifted,
                    rows["reference_error"],
                    rows["adjusted_p_value"],
                    rows["n_rows"],
                    strict=True,
                )
            ],
            hovertemplate="%{x} UTC<br>reconstruction error %{y:.4g} (reference "
            "%{customdata[1]})<br>%{customdata[0]} · adjusted p-value %{customdata[2]} · "
            "%{customdata[3]} records<extra>%{fullData.name}</extra>",
        ),
        **where,
    )


_VERDICTS: dict[bool | None, str] = {True: "drifted", False: "not drifted", None: "no verdict"}


def _verdict(drifted: bool | None) -> str:
    return _VERDICTS[drifted]


def _figure(value: float | None) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.3g}"
