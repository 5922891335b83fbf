"""The Model page on the seeded database (SQLite and PostgreSQL): every figure it draws equals
what storage holds (share drifted per window, multivariate drift against its threshold, the
per-feature verdicts, accuracy realised with its Wilson band and estimated with its band and
trust verdict, label coverage, data quality, the distributions' row counts), an untrusted
estimate is marked and its reason shown, the report is built on a click, shown and
downloadable without writing to the database, and each empty state names the command to run
next or, for estimation and multivariate drift, says in one line why there is nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitor.alerts.rules import DEFAULT_CONFIDENCE
from monitor.alerts.uncertainty import wilson
from monitor.schema import FLEET, FLEET_KEY, GROUP, NO_PROBABILITIES, NODE, SITE
from monitor.storage import results
from monitor.storage.results import WindowResults
from tests.dashboards import seed
from tests.dashboards.apptest import draw
from tests.dashboards.seed import Seeded

REPO = Path(__file__).resolve().parents[2]
CODES = {True: 2, None: 1, False: 0}


def page(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    state: dict[str, Any] | None = None,
    **params: str,
) -> AppTest:
    """The Model page drawn once on the database at ``url``, with these query parameters (and
    session state: the sidebar's time range): no exception, no error shown."""
    return draw(url, "model", monkeypatch, query=params, state=state)


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def figure_with(at: AppTest, trace_name: str | None = None, kind: str | None = None) -> dict:
    """The one figure with a trace of this name (or type)."""
    found = [
        f
        for f in figures(at)
        if any(
            (trace_name is None or t.get("name") == trace_name)
            and (kind is None or t.get("type") == kind)
            for t in f["data"]
        )
    ]
    assert len(found) == 1, [[t.get("name") for t in f["data"]] for f in figures(at)]
    return found[0]


def trace(figure: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [t for t in figure["data"] if t.get("name") == name]
    return found


def moment(text: str) -> datetime:
    """A figure's x value (naive UTC, as the page draws it) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(seeded: Seeded, start: datetime) -> WindowResults:
    with seeded.engine.connect() as conn:
        found = results.window(conn, seeded.model_id, start)
    assert found is not None
    return found


# --- Drift ----------------------------------------------------------------------------------


def test_drift_over_time_draws_the_stored_share_drifted_of_the_fleet_and_the_scope(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}")

    figure = figure_with(at, "Fleet")
    with seeded.engine.connect() as conn:
        stored = {
            label: results.drift(conn, seeded.model_id, scope_kind=kind, scope_key=key)
            for label, kind, key in (("Fleet", FLEET, FLEET_KEY), (f"Site {site}", SITE, site))
        }
    assert sorted(t["name"] for t in figure["data"]) == sorted(stored)
    for label, rows in stored.items():
        drawn = trace(figure, label)
        assert [moment(x) for x in drawn["x"]] == list(seeded.window_starts)
        assert drawn["y"] == [r.result.share_drifted for r in rows]
        # A drifted window is marked, and only a drifted one.
        marked = [symbol == "diamond" for symbol in drawn["marker"]["symbol"]]
        assert marked == [r.result.drifted is True for r in rows]
    assert sum(trace(figure, f"Site {site}")["marker"]["symbol"][i] == "diamond" for i in range(8))
    assert trace(figure, f"Site {site}")["y"][-1] > 0


def test_the_heatmap_is_the_stored_verdict_of_every_feature_in_every_window(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}")

    heatmap = figure_with(at, kind="heatmap")["data"][0]
    assert [moment(x) for x in heatmap["x"]] == list(seeded.window_starts)
    expected: dict[tuple[str, str], int] = {}
    statistics: dict[tuple[str, str], str] = {}
    for start in seeded.window_starts:
        found = window(seeded, start)
        scope = found.drift_of(SITE, site)
        for row in found.drift_features[scope.id]:
            key = (row.feature, f"{start:%Y-%m-%d %H:%M:%S}")
            expected[key] = CODES[row.drifted]
            statistics[key] = f"{row.method} "
    drawn = {
        (feature, x): heatmap["z"][i][j]
        for i, feature in enumerate(heatmap["y"])
        for j, x in enumerate(heatmap["x"])
    }
    assert drawn == expected
    assert 2 in drawn.values() and 0 in drawn.values()
    # The hover names each cell's method.
    for i, feature in enumerate(heatmap["y"]):
        for j, x in enumerate(heatmap["x"]):
            assert statistics[(feature, x)] in heatmap["text"][i][j]
    # Inputs first, then the prediction and the class probabilities.
    assert heatmap["y"].index("prediction") > heatmap["y"].index("temperature_c")


def test_the_tiles_show_the_latest_windows_stored_figures_of_the_scope(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}")

    latest = window(seeded, seeded.window_starts[-1])
    drift = latest.drift_of(SITE, site).result
    performance = latest.performance_of(SITE, site).result
    quality = latest.quality_of(SITE, site).result
    shown = {m.label: m.value for m in at.metric}
    assert shown == {
        "Share drifted": f"{drift.share_drifted:.0%}",
        "Drifted features": str(len(latest.drifted_features(SITE, site))),
        "Accuracy": f"{performance.accuracy:.1%}",
        "Label coverage": f"{performance.label_coverage:.0%}",
        "Data-quality issues": str(quality.n_issues),
        "Estimated accuracy": f"{latest.estimation_of(SITE, site).result.accuracy:.1%}",
    }


def test_the_scope_picker_offers_the_fleet_then_every_site_group_and_node_of_the_window(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model)

    picker = at.selectbox(key="model_scope")
    stored = window(seeded, seeded.window_starts[-1])
    judged = {(s.scope_kind, s.scope_key) for s in stored.drift}
    assert picker.value == (FLEET, FLEET_KEY)
    assert picker.options[0] == "Fleet"
    assert len(picker.options) == len(judged)
    kinds = {SITE: "Site", GROUP: "Group", NODE: "Node"}
    assert set(picker.options[1:]) == {f"{kinds[k]} {key}" for k, key in judged if k != FLEET}
    assert f"Site {seeded.drifting_site}" in picker.options
    # The offline node sent nothing in the latest window: it is not offered there.
    assert f"Node {seeded.offline_node}" not in picker.options


def test_picking_a_scope_redraws_the_page_for_it_and_puts_it_in_the_url(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model)
    node = next(n for n in seeded.nodes if n not in (seeded.offline_node,))

    at.selectbox(key="model_scope").set_value((NODE, node)).run()

    assert not at.exception
    assert at.query_params["scope"] == f"node:{node}"
    figure = figure_with(at, "Fleet")
    with seeded.engine.connect() as conn:
        rows = results.drift(conn, seeded.model_id, scope_kind=NODE, scope_key=node)
    assert trace(figure, f"Node {node}")["y"] == [r.result.share_drifted for r in rows]


# --- Accuracy, quality, distributions -------------------------------------------------------


def test_accuracy_its_wilson_band_and_label_coverage_are_the_stored_performance_rows(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model, tab="Accuracy")

    figure = figure_with(at, "realised accuracy")
    with seeded.engine.connect() as conn:
        rows = results.performance(conn, seeded.model_id, scope_kind=FLEET)
    accuracy = [r.result.accuracy for r in rows]
    labelled = [r.result.n_labelled for r in rows]
    realised = trace(figure, "realised accuracy")
    assert [moment(x) for x in realised["x"]] == list(seeded.window_starts)
    assert realised["y"] == accuracy
    assert trace(figure, "label coverage")["y"] == [r.result.label_coverage for r in rows]
    assert trace(figure, "label coverage")["customdata"] == labelled
    low, high = wilson(np.array(accuracy, dtype=float), np.array(labelled), DEFAULT_CONFIDENCE)
    assert trace(figure, "band high")["y"] == pytest.approx(high.tolist())
    assert trace(figure, f"{DEFAULT_CONFIDENCE:.0%} interval")["y"] == pytest.approx(low.tolist())
    assert all(lo < a < hi for lo, a, hi in zip(low, accuracy, high, strict=True))


def test_the_estimate_and_its_band_are_drawn_beside_the_realised_accuracy(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}", tab="Accuracy")

    figure = figure_with(at, "estimated accuracy")
    with seeded.engine.connect() as conn:
        stored = results.estimation(conn, seeded.model_id, scope_kind=SITE, scope_key=site)
        realised = results.performance(conn, seeded.model_id, scope_kind=SITE, scope_key=site)
    estimated = trace(figure, "estimated accuracy")
    # Windows analysed before estimation existed have no estimate: the line starts later.
    assert [moment(x) for x in estimated["x"]] == list(seeded.estimated_windows)
    assert estimated["y"] == [r.result.accuracy for r in stored]
    upper, lower = trace(figure, "estimate band high"), trace(figure, "estimate band")
    assert upper["y"] == [r.result.accuracy_upper for r in stored]
    assert lower["y"] == [r.result.accuracy_lower for r in stored]
    assert lower["fill"] == "tonexty" and lower["x"] == upper["x"] == estimated["x"]
    assert trace(figure, "realised accuracy")["y"] == [r.result.accuracy for r in realised]
    assert len(realised) == len(seeded.window_starts)


def test_an_untrusted_estimate_is_marked_and_its_reason_shown(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}", tab="Accuracy")

    figure = figure_with(at, "estimated accuracy")
    with seeded.engine.connect() as conn:
        stored = results.estimation(conn, seeded.model_id, scope_kind=SITE, scope_key=site)
    untrusted = [r for r in stored if r.result.trusted is False]
    assert [r.window_start for r in untrusted] == list(seeded.untrusted_windows)
    # A red cross on each untrusted window, its reason in the hover, and the window shaded.
    crosses = trace(figure, "not trusted")
    assert [moment(x) for x in crosses["x"]] == list(seeded.untrusted_windows)
    assert crosses["text"] == [r.result.trust_reason for r in untrusted]
    assert all(
        text.startswith(f"not trusted: calibration broke at site {site}")
        for text in crosses["text"]
    )
    symbols = trace(figure, "estimated accuracy")["marker"]["symbol"]
    assert symbols == ["circle-open" if r.result.trusted is False else "circle" for r in stored]
    shades = [s for s in figure["layout"]["shapes"] if s["type"] == "rect"]
    assert len(shades) == len(untrusted)
    # The estimate stays high while the labels say otherwise: never shown as reassurance.
    latest = stored[-1].result
    assert latest.trusted is False and latest.accuracy > (latest.realised_accuracy or 0) + 0.1
    (warning,) = at.warning
    assert warning.value == (
        f"**Latest estimate** (Site {site}, window of "
        f"{stored[-1].window_start:%Y-%m-%d %H:%M} UTC): estimated accuracy "
        f"{latest.accuracy:.2f} ({latest.accuracy_lower:.2f}–{latest.accuracy_upper:.2f}), "  # noqa: RUF001
        f"{latest.trust_reason}"
    )
    tile = next(m for m in at.metric if m.label == "Estimated accuracy")
    assert tile.value == f"{latest.accuracy:.1%}"
    assert tile.proto.delta == "not trusted"


def test_a_trusted_estimate_says_which_evidence_agrees(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model, tab="Accuracy")

    with seeded.engine.connect() as conn:
        latest = results.estimation(conn, seeded.model_id, scope_kind=FLEET)[-1].result
    assert latest.trusted is True
    assert not at.warning
    line = next(m.value for m in at.markdown if m.value.startswith("**Latest estimate**"))
    assert line.endswith(
        f"estimated accuracy {latest.accuracy:.2f} ({latest.accuracy_lower:.2f}–"  # noqa: RUF001
        f"{latest.accuracy_upper:.2f}), trusted: {latest.trust_reason}"
    )
    assert "trusted: labels agree" in line
    assert (
        "not trusted"
        not in trace(figure_with(at, "estimated accuracy"), "estimated accuracy")["customdata"][-1][
            2
        ]
    )
    assert all(t.get("name") != "not trusted" for f in figures(at) for t in f["data"])


def test_another_figure_is_drawn_realised_and_estimated_with_its_band(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model, tab="Accuracy")

    at.segmented_control(key="model_metric").set_value("f1").run()

    assert not at.exception
    figure = figure_with(at, "estimated F1")
    with seeded.engine.connect() as conn:
        stored = results.estimation(conn, seeded.model_id, scope_kind=FLEET)
        realised = results.performance(conn, seeded.model_id, scope_kind=FLEET)
    assert trace(figure, "estimated F1")["y"] == [r.result.f1 for r in stored]
    assert trace(figure, "estimate band")["y"] == [r.result.f1_lower for r in stored]
    assert trace(figure, "realised F1")["y"] == [r.result.f1 for r in realised]
    # The Wilson interval is the accuracy's: no band around another figure's realised line.
    assert all(t.get("name") != "band high" for t in figure["data"])


def test_multivariate_drift_is_the_stored_reconstruction_error_against_its_threshold(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}")

    figure = figures(at)[at_index(at, "model_multivariate")]
    with seeded.engine.connect() as conn:
        stored = {
            label: results.multivariate(conn, seeded.model_id, scope_kind=kind, scope_key=key)
            for label, kind, key in (("Fleet", FLEET, FLEET_KEY), (f"Site {site}", SITE, site))
        }
    for label, rows in stored.items():
        error, threshold = (
            trace(figure, f"{label}: reconstruction error"),
            trace(figure, f"{label}: threshold"),
        )
        assert [moment(x) for x in error["x"]] == list(seeded.estimated_windows)
        assert error["y"] == [r.result.reconstruction_error for r in rows]
        assert threshold["y"] == [r.result.upper_threshold for r in rows]
        marked = [symbol == "diamond" for symbol in error["marker"]["symbol"]]
        assert marked == [r.result.drifted is True for r in rows]
        assert any(marked) and not all(marked)
        # A drifted window's error is above its threshold; the others are not.
        assert [e > t for e, t in zip(error["y"], threshold["y"], strict=True)] == marked


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (NO_PROBABILITIES, "No estimate without labels: its records carry no class probabilities."),
        (
            None,
            "No estimate for Fleet in this time range: windows analysed before estimation was "
            "added have none.",
        ),
    ],
)
def test_without_an_estimate_the_accuracy_tab_says_why_in_one_line(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, status: str | None, line: str
) -> None:
    starts = seed.store_unestimated(engine, status=status)
    at = page(db_url, monkeypatch, model=seed.MODEL_NAME, tab="Accuracy")

    figure = figure_with(at, "realised accuracy")
    assert [moment(x) for x in trace(figure, "realised accuracy")["x"]] == starts
    assert all(t.get("name") != "estimated accuracy" for t in figure["data"])
    assert line in [c.value for c in at.caption]
    assert not at.warning
    tile = next(m for m in at.metric if m.label == "Estimated accuracy")
    assert tile.value == "-"


def test_windows_without_multivariate_drift_say_so_in_one_line(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed.store_unestimated(engine)
    at = page(db_url, monkeypatch, model=seed.MODEL_NAME)

    assert (
        "No multivariate drift in this time range: windows analysed before it was added have "
        "none." in [c.value for c in at.caption]
    )
    drawn = {str(t.get("name")) for f in figures(at) for t in f["data"]}
    assert drawn == {"Fleet"}


def test_the_quality_table_is_the_stored_quality_features_of_the_window_and_scope(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.quality_site
    at = page(
        seeded.url,
        monkeypatch,
        model=seeded.model,
        scope=f"site:{site}",
        window=seeded.quality_window.isoformat(),
        tab="Data quality",
    )

    stored = window(seeded, seeded.quality_window)
    scope = stored.quality_of(SITE, site)
    expected = {f.feature: f for f in stored.quality_features[scope.id]}
    (table,) = at.dataframe
    shown = table.value
    assert sorted(shown["feature"]) == sorted(expected)
    for row in shown.to_dict("records"):
        feature = expected[row["feature"]]
        assert row["issue"] == feature.issue
        assert row["n_rows"] == feature.n_rows
        assert row["n_missing"] == feature.n_missing
        assert row["missing_share"] == pytest.approx(feature.missing_share)
        assert row["status"] == feature.status
    # The issue the seed planted comes first.
    assert shown.iloc[0]["feature"] == "vibration_mm_s" and bool(shown.iloc[0]["issue"])
    assert stored.quality_issues(SITE, site) == ["vibration_mm_s"]
    issues = {m.label: m.value for m in at.metric}["Data-quality issues"]
    assert issues == str(scope.result.n_issues) == "1"


def test_a_window_is_picked_by_the_url_in_any_iso_spelling_and_put_back_in_utc(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = seeded.window_starts[2]
    spellings = [
        start.isoformat(),
        start.isoformat().replace("+", " "),  # a hand-typed URL's "+" arrives as a space
        f"{start:%Y-%m-%dT%H:%M}",
        start.astimezone(timezone(timedelta(hours=2))).isoformat(),
    ]
    for spelling in spellings:
        at = page(seeded.url, monkeypatch, model=seeded.model, window=spelling)

        stored = window(seeded, start).drift_of().result
        assert {m.label: m.value for m in at.metric}["Share drifted"] == (
            f"{stored.share_drifted:.0%}"
        )
        assert at.selectbox(key="model_window").value == f"{start:%Y-%m-%d %H:%M:%S}"
        assert at.query_params["window"] == f"{start:%Y-%m-%dT%H:%M:%S}Z"
    latest = page(seeded.url, monkeypatch, model=seeded.model, window="not a time")
    assert (
        latest.selectbox(key="model_window").value
        == f"{seeded.window_starts[-1]:%Y-%m-%d %H:%M:%S}"
    )
    assert "window" not in latest.query_params


def test_the_distributions_count_the_rows_the_stored_verdict_was_judged_on(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(
        seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}", tab="Distributions"
    )

    latest = window(seeded, seeded.window_starts[-1])
    scope = latest.drift_of(SITE, site)
    rows = {f.feature: f for f in latest.drift_features[scope.id]}
    # The first drifted feature is shown by default, then the prediction.
    feature = latest.drifted_features(SITE, site)[0]
    assert at.selectbox(key="model_feature").value == feature
    for column, figure in (
        (feature, figures(at)[at_index(at, "model_distribution")]),
        ("prediction", figures(at)[at_index(at, "model_prediction")]),
    ):
        stored = rows[column]
        reference, current = figure["data"]
        assert reference["name"] == f"reference (n={stored.n_reference:,})"
        assert current["name"] == f"site {site}, this window (n={stored.n_current:,})"
        assert sum(reference["y"]) == pytest.approx(1.0)
        assert sum(current["y"]) == pytest.approx(1.0)
    verdicts = [m.value for m in at.markdown if m.value.startswith("Stored verdict")]
    assert verdicts[0].startswith("Stored verdict: **drifted**")


def at_index(at: AppTest, key: str) -> int:
    """The position of the chart drawn with this key among the page's charts."""
    ids = [chart.proto.id for chart in at.get("plotly_chart")]
    (index,) = [i for i, id_ in enumerate(ids) if key in id_]
    return index


# --- The report ------------------------------------------------------------------------------


def test_the_report_is_built_on_a_click_shown_and_downloadable_without_writing(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = seeded.drifting_site
    at = page(seeded.url, monkeypatch, model=seeded.model, scope=f"site:{site}", tab="Report")
    assert not at.get("iframe") and not at.get("download_button")

    at.button(key="model_build_report").click().run()

    assert not at.exception and not at.error
    (frame,) = at.get("iframe")
    html = frame.proto.srcdoc
    assert f"scope: <b>site {site}</b>" in html
    latest = window(seeded, seeded.window_starts[-1])
    for feature in latest.drifted_features(SITE, site):
        assert feature in html
    assert "id='evidently'" in html
    (download,) = at.get("download_button")
    assert download.proto.label == "Download the report"
    assert download.proto.url.endswith(".html")
    with seeded.engine.connect() as conn:
        assert results.snapshot(conn, latest.drift_of(SITE, site).id) is None


# --- Time range and empty states -------------------------------------------------------------


def test_only_the_open_tab_is_drawn_and_the_url_names_it(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    drift = page(seeded.url, monkeypatch, model=seeded.model)
    accuracy = page(seeded.url, monkeypatch, model=seeded.model, tab="Accuracy")

    def traces(at: AppTest) -> set[str]:
        return {t.get("type") + ":" + str(t.get("name")) for f in figures(at) for t in f["data"]}

    assert traces(drift) == {
        "scatter:Fleet",
        "scatter:Fleet: reconstruction error",
        "scatter:Fleet: threshold",
        "heatmap:None",
    }
    assert not drift.dataframe
    assert "scatter:realised accuracy" in traces(accuracy)
    assert "scatter:estimated accuracy" in traces(accuracy)
    assert "heatmap:None" not in traces(accuracy)
    assert "tab" not in drift.query_params
    assert accuracy.query_params["tab"] == "Accuracy"


def test_the_time_range_keeps_the_windows_that_end_inside_it(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(seeded.url, monkeypatch, model=seeded.model, state={"range": "Last hour"})

    drawn = [moment(x) for x in trace(figure_with(at, "Fleet"), "Fleet")["x"]]
    # The seed's eight windows span the two hours before it finished: the last hour holds the
    # newest few (how many depends on the minute the test runs in), the oldest are cut.
    assert 3 <= len(drawn) <= 5
    assert drawn == list(seeded.window_starts[-len(drawn) :])
    heatmap = figure_with(at, kind="heatmap")["data"][0]
    assert [moment(x) for x in heatmap["x"]] == drawn
    assert len(at.selectbox(key="model_window").options) == len(drawn)


def test_a_time_range_without_windows_says_where_the_latest_one_is(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(
        seeded.url,
        monkeypatch,
        state={"range": "Custom", "custom_days": (date(2020, 1, 1), date(2020, 1, 2))},
    )

    (info,) = at.info
    assert "No analysed window in this time range" in info.value
    assert f"{seeded.window_starts[-1]:%Y-%m-%d %H:%M} UTC" in info.value
    assert not at.get("plotly_chart")


def test_without_a_model_the_page_says_how_to_register_one(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(empty_url, monkeypatch)

    assert "No model yet" in at.info[0].value
    assert at.code[0].value.startswith("edge-monitor models register NAME")


def test_a_model_without_reference_data_says_how_to_register_it(
    no_reference_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(no_reference_url, monkeypatch)

    assert "has no reference data" in at.info[0].value
    assert [c.value for c in at.code] == [
        "edge-monitor models register pump-failure --version V --reference FILE"
    ]
    assert not at.get("plotly_chart")


def test_a_model_with_no_window_analysed_yet_says_to_run_the_worker(
    no_window_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = page(no_window_url, monkeypatch)

    assert "No window of pump-failure analysed yet" in at.info[0].value
    assert [c.value for c in at.code] == ["edge-monitor worker"]
    assert not at.get("plotly_chart")
