"""The Node page on the seeded database (SQLite and PostgreSQL): the card says what the node's
state and its health row hold; the timelines' points are its stored heartbeats and its node
scope's stored drift, multivariate drift, realised and estimated performance rows (an untrusted
estimate marked, its reason shown); the beat where it changed version is marked; the
drifted-features table holds the stored drifted features; and each empty state (no node, an
unknown name, no heartbeat yet, no analysed window) names the command to run next, while a
node without estimates or multivariate drift says why in one line."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitor.cli import _parser
from monitor.dashboards.common import CACHE_SECONDS
from monitor.schema import DRIFT, NODE
from monitor.storage import health, models, nodes, readout, results, telemetry
from monitor.storage.engine import begin_write
from monitor.storage.tables import node_heartbeats
from tests.dashboards import seed
from tests.dashboards.apptest import draw
from tests.dashboards.seed import Seeded

REPO = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)
COLOURS = {"online": "green", "degraded": "orange", "offline": "red", "silent": "gray"}


def node_page(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    state: dict[str, Any] | None = None,
    **query: str,
) -> AppTest:
    """The Node page drawn once on ``url`` with this query (and session state, such as the
    sidebar's time range): no exception, no error shown."""
    return draw(url, "node", monkeypatch, query=query, state=state)


def traces(at: AppTest) -> dict[str, dict[str, Any]]:
    """The timelines figure's traces by name."""
    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    return {trace["name"]: trace for trace in spec["data"]}


def layout(at: AppTest) -> dict[str, Any]:
    (chart,) = at.get("plotly_chart")
    found: dict[str, Any] = json.loads(chart.proto.spec)["layout"]
    return found


def times(values: list[str]) -> list[datetime]:
    return [datetime.fromisoformat(value) for value in values]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def stored_beats(engine: Engine, name: str) -> list[Any]:
    """The node's heartbeats as stored, oldest first (read from the table itself)."""
    with engine.connect() as conn:
        node = nodes.get_node(conn, name)
        return list(
            conn.execute(
                sa.select(node_heartbeats)
                .where(node_heartbeats.c.node_id == node.id)
                .order_by(node_heartbeats.c.received_at, node_heartbeats.c.id)
            ).mappings()
        )


def runs_as_written(command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "edge-monitor"
    _parser().parse_args(words[1:])


# --- The card ---------------------------------------------------------------------------------


def test_the_card_is_the_nodes_state_and_health_row(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = seeded.lossy_node
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    with seeded.engine.connect() as conn:
        now = datetime.now(UTC)
        state = next(
            s for s in readout.node_states(conn, now - seeded.offline_after) if s.name == name
        )
        row = health.health_by_node(conn)[name]
    assert state.status == "degraded" and state.problems
    assert at.subheader[0].value == f"{name} :{COLOURS[state.status]}-badge[{state.status}]"
    assert f"**Site** {state.site} · **Group** {state.group_name}" in [m.value for m in at.markdown]
    shown = metrics(at)
    lost = sum(n for reason, n in row.dropped.items() if reason != "sampled_out")
    assert lost > 0 and row.errors
    assert shown["Model version"] == row.model_version
    assert shown["Spool (records)"] == str(row.spool_records)
    assert shown["Queue (records)"] == str(row.queue_depth)
    assert shown["p95 latency (ms)"] == str(row.latency_p95_ms)
    assert shown["Runtime errors"] == str(row.errors)
    assert shown["Records lost"] == str(lost)
    assert shown["Clock skew"] == "none"
    heard = {m.label: m.help for m in at.metric}
    assert heard["Last heartbeat"] == f"{state.last_heartbeat_at:%Y-%m-%d %H:%M:%S} UTC"
    drops = ", ".join(f"{r} {n:,}" for r, n in sorted(row.dropped.items()))
    assert f"SDK drops by reason (totals since the SDK started): {drops}" in [
        c.value for c in at.caption
    ]
    (warning,) = at.warning
    assert all(f"- {problem}" in warning.value for problem in state.problems)


def test_a_skewed_clock_is_shown_with_how_far_off_it_was(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = node_page(seeded.url, monkeypatch, node=seeded.skewed_node)
    with seeded.engine.connect() as conn:
        node = nodes.get_node(conn, seeded.skewed_node)
    assert node.clock_skew_seconds == 2 * 86_400.0
    assert metrics(at)["Clock skew"] == "+2 days"
    assert any("clock skew" in w.value for w in at.warning)


def test_the_offline_node_is_red(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    at = node_page(seeded.url, monkeypatch, node=seeded.offline_node)
    assert at.subheader[0].value == f"{seeded.offline_node} :red-badge[offline]"


# --- The timelines ----------------------------------------------------------------------------


def test_the_telemetry_points_are_the_stored_heartbeats(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = seeded.lossy_node
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    beats = stored_beats(seeded.engine, name)
    assert len(beats) >= 8
    expected = {
        "p50": [b["runtime"]["latency_ms"]["p50"] for b in beats],
        "p95": [b["runtime"]["latency_ms"]["p95"] for b in beats],
        "errors": [b["runtime"]["errors_total"] for b in beats],
        "queue_full": [b["sdk"]["dropped"]["queue_full"] for b in beats],
        "spool": [b["sdk"]["spool_records"] for b in beats],
        "queue": [b["sdk"]["queue_depth"] for b in beats],
    }
    shown = traces(at)
    for trace_name, values in expected.items():
        assert times(shown[trace_name]["x"]) == [b["received_at"] for b in beats], trace_name
        assert shown[trace_name]["y"] == values, trace_name
    assert max(expected["queue_full"]) > 0, "the lossy node's drops are not all zero"
    # Sampling is the caller's choice, not a loss: it has no line.
    assert "sampled_out" not in shown


def test_the_time_range_cuts_the_heartbeats_and_windows(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = seeded.lossy_node
    before = datetime.now(UTC)
    at = node_page(seeded.url, monkeypatch, node=name, state={"range": "Last hour"})
    after = datetime.now(UTC)

    stored = [b["received_at"] for b in stored_beats(seeded.engine, name)]
    shown = traces(at)
    drawn = times(shown["p95"]["x"])
    # The page's hour ends at its now rounded to the cache period plus one period (at most
    # CACHE_SECONDS after the real now): every beat since then and none before it.
    assert 0 < len(drawn) < len(stored)
    assert drawn == stored[-len(drawn) :]
    assert drawn[0] >= before - HOUR
    assert stored[-len(drawn) - 1] < after - HOUR + timedelta(seconds=CACHE_SECONDS)
    windows = times(shown["share drifted"]["x"])
    assert 0 < len(windows) < len(seeded.window_starts)
    assert windows == list(seeded.window_starts[-len(windows) :])
    assert all(start + seed.WINDOW > before - HOUR for start in windows)


def test_drift_and_accuracy_are_the_node_scopes_stored_rows(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    with seeded.engine.connect() as conn:
        drifting = [n.name for n in nodes.list_nodes(conn) if n.site == seeded.drifting_site]
        name = drifting[0]
        drift = results.drift(conn, seeded.model_id, scope_kind=NODE, scope_key=name)
        performance = results.performance(conn, seeded.model_id, scope_kind=NODE, scope_key=name)
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    assert len(drift) == len(seeded.window_starts) == len(performance)
    shown = traces(at)
    assert times(shown["share drifted"]["x"]) == [r.window_start for r in drift]
    assert shown["share drifted"]["y"] == [r.result.share_drifted for r in drift]
    flagged = [r for r in drift if r.result.drifted]
    assert len(flagged) == 3, "the seed drifts the site's nodes in the last 3 windows"
    assert times(shown["drifted"]["x"]) == [r.window_start for r in flagged]
    assert shown["drifted"]["y"] == [r.result.share_drifted for r in flagged]
    assert times(shown["realised accuracy"]["x"]) == [r.window_start for r in performance]
    assert shown["realised accuracy"]["y"] == [r.result.accuracy for r in performance]
    assert shown["label coverage"]["y"] == [r.result.label_coverage for r in performance]


def drifting_node(seeded: Seeded) -> str:
    with seeded.engine.connect() as conn:
        return next(n.name for n in nodes.list_nodes(conn) if n.site == seeded.drifting_site)


def test_the_estimate_its_band_and_its_untrusted_windows_are_the_node_scopes_stored_rows(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = drifting_node(seeded)
    with seeded.engine.connect() as conn:
        stored = results.estimation(conn, seeded.model_id, scope_kind=NODE, scope_key=name)
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    shown = traces(at)
    estimated = shown["estimated accuracy"]
    assert times(estimated["x"]) == [r.window_start for r in stored]
    assert [r.window_start for r in stored] == list(seeded.estimated_windows)
    assert estimated["y"] == [r.result.accuracy for r in stored]
    assert shown["estimate band high"]["y"] == [r.result.accuracy_upper for r in stored]
    assert shown["estimate band"]["y"] == [r.result.accuracy_lower for r in stored]
    untrusted = [r for r in stored if r.result.trusted is False]
    assert [r.window_start for r in untrusted] == list(seeded.untrusted_windows)
    assert times(shown["not trusted"]["x"]) == list(seeded.untrusted_windows)
    assert shown["not trusted"]["text"] == [r.result.trust_reason for r in untrusted]
    shades = [s for s in layout(at)["shapes"] if s["type"] == "rect"]
    assert len(shades) == len(untrusted)
    latest = stored[-1].result
    (warning,) = [w.value for w in at.warning if "Latest estimate" in w.value]
    assert warning.endswith(
        f"estimated accuracy {latest.accuracy:.2f} ({latest.accuracy_lower:.2f}–"  # noqa: RUF001
        f"{latest.accuracy_upper:.2f}), {latest.trust_reason}"
    )
    assert f"calibration broke at node {name}" in warning


def test_a_steady_nodes_estimate_is_trusted_and_says_why(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    with seeded.engine.connect() as conn:
        name = next(
            n.name
            for n in nodes.list_nodes(conn)
            if n.site not in (seeded.drifting_site,) and n.name != seeded.offline_node
        )
        latest = results.estimation(conn, seeded.model_id, scope_kind=NODE, scope_key=name)[-1]
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    assert "not trusted" not in traces(at)
    assert not [w for w in at.warning if "Latest estimate" in w.value]
    line = next(m.value for m in at.markdown if m.value.startswith("**Latest estimate**"))
    assert line.endswith(f"trusted: {latest.result.trust_reason}")
    assert latest.result.trust_reason.startswith("labels agree")


def test_the_nodes_multivariate_drift_is_its_stored_reconstruction_error(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = drifting_node(seeded)
    with seeded.engine.connect() as conn:
        stored = results.multivariate(conn, seeded.model_id, scope_kind=NODE, scope_key=name)
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    shown = traces(at)
    error, threshold = shown["reconstruction error"], shown["error threshold"]
    assert times(error["x"]) == [r.window_start for r in stored]
    assert error["y"] == [r.result.reconstruction_error for r in stored]
    assert threshold["y"] == [r.result.upper_threshold for r in stored]
    marked = [symbol == "diamond" for symbol in error["marker"]["symbol"]]
    assert marked == [r.result.drifted is True for r in stored]
    assert any(marked) and not all(marked)
    titles = [a["text"] for a in layout(at)["annotations"] if a.get("xref") != "x"]
    assert any(t.startswith("Multivariate drift at the node") for t in titles)


def test_a_node_without_estimates_or_multivariate_drift_says_why_in_one_line(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed.store_unestimated(engine)
    name = seed.UNESTIMATED_NODE
    at = node_page(db_url, monkeypatch, node=name, model=seed.MODEL_NAME)

    captions = [c.value for c in at.caption]
    assert "No estimate without labels: its records carry no class probabilities." in captions
    assert (
        f"No multivariate drift for {name} in this period: windows analysed before it was "
        "added have none." in captions
    )
    shown = traces(at)
    assert "realised accuracy" in shown and "share drifted" in shown
    assert "estimated accuracy" not in shown and "reconstruction error" not in shown
    titles = [a["text"] for a in layout(at)["annotations"] if a.get("xref") != "x"]
    assert not any(t.startswith("Multivariate drift") for t in titles)


def test_the_drifted_features_table_holds_the_stored_verdicts(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    with seeded.engine.connect() as conn:
        name = next(n.name for n in nodes.list_nodes(conn) if n.site == seeded.drifting_site)
        drift = results.drift(conn, seeded.model_id, scope_kind=NODE, scope_key=name)
        features = results.features(conn, DRIFT, [r.id for r in drift])
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    expected = sorted(
        (row.window_start, f.feature, f.statistic, f.adjusted_p_value)
        for row in drift
        for f in features[row.id]
        if f.drifted
    )
    assert expected
    (table,) = at.dataframe
    frame = table.value
    shown = sorted(
        (start.to_pydatetime(), feature, statistic, adjusted)
        for start, feature, statistic, adjusted in zip(
            frame["window_start"],
            frame["feature"],
            frame["statistic"],
            frame["adjusted_p_value"],
            strict=True,
        )
    )
    assert shown == expected
    assert list(frame["window_start"]) == sorted(frame["window_start"], reverse=True)


def test_a_version_change_is_marked_where_the_heartbeats_change_version(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = seeded.canary_nodes[0]
    beats = stored_beats(seeded.engine, name)
    with seeded.engine.connect() as conn:
        versions = models.version_names(conn)
    named = [versions[b["model_version_id"]] for b in beats]
    changes = [
        (b["received_at"], named[i - 1], named[i])
        for i, b in enumerate(beats)
        if i and named[i] != named[i - 1]
    ]
    assert [(old, new) for _, old, new in changes] == [("1", "2")]
    at = node_page(seeded.url, monkeypatch, node=name, model=seeded.model)

    drawn = layout(at)
    lines = {datetime.fromisoformat(s["x0"]) for s in drawn["shapes"] if s["type"] == "line"}
    at_change, old, new = changes[0]
    assert at_change in lines
    labels = {
        (datetime.fromisoformat(a["x"]), a["text"])
        for a in drawn["annotations"]
        if a.get("xref") == "x"
    }
    assert (at_change, f"version {old} → {new}") in labels
    # A node that never changed version has no such marker.
    steady = next(n for n in seeded.nodes if n not in seeded.canary_nodes)
    other = node_page(seeded.url, monkeypatch, node=steady, model=seeded.model)
    assert not [a for a in layout(other)["annotations"] if "→" in a["text"]]


# --- Picking a node, and empty states --------------------------------------------------------


def test_without_a_node_the_page_offers_every_node_to_search(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = node_page(seeded.url, monkeypatch)
    picker = at.selectbox(key="node_picker")
    assert picker.value is None
    assert picker.options == sorted(seeded.nodes)
    assert not at.metric and not at.get("plotly_chart")

    picker.select(seeded.lossy_node).run()
    assert not at.exception
    assert at.query_params["node"] == seeded.lossy_node
    assert at.subheader[0].value.startswith(seeded.lossy_node)
    assert at.get("plotly_chart")


def test_an_unknown_node_is_named_with_how_to_list_the_nodes(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = node_page(seeded.url, monkeypatch, node="edge-nowhere")
    assert any("No node named 'edge-nowhere'" in i.value for i in at.info)
    assert [c.value for c in at.code] == ["edge-monitor nodes list"]
    runs_as_written(at.code[0].value)
    assert at.selectbox(key="node_picker").value is None
    assert not at.metric


def test_a_node_without_heartbeats_says_what_sends_them(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = node_page(seeded.url, monkeypatch, node=seeded.silent_node, model=seeded.model)
    assert at.subheader[0].value == f"{seeded.silent_node} :gray-badge[silent]"
    assert any(f"No heartbeat from {seeded.silent_node} yet" in i.value for i in at.info)
    (command,) = [c.value for c in at.code]
    assert command.startswith("edge-monitor edge serve")
    runs_as_written(command)
    # It sends records, so its drift and accuracy are drawn; no telemetry line.
    shown = traces(at)
    assert "share drifted" in shown and "p95" not in shown


def test_a_node_with_no_analysed_window_says_to_run_the_worker(
    no_window_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = sa.create_engine(no_window_url)
    with engine.connect() as conn:
        name = nodes.list_nodes(conn)[0].name
    engine.dispose()
    at = node_page(no_window_url, monkeypatch, node=name)
    infos = " ".join(i.value for i in at.info)
    assert "No analysed window of pump-failure in this period" in infos
    assert f"No heartbeat from {name} yet" in infos
    assert "edge-monitor worker" in [c.value for c in at.code]
    for code in at.code:
        runs_as_written(code.value)
    assert not at.get("plotly_chart")


def test_an_empty_database_says_how_to_register_a_node(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = node_page(empty_url, monkeypatch)
    assert any("No node yet" in i.value for i in at.info)
    (command,) = [c.value for c in at.code]
    assert command == "edge-monitor nodes add NAME --site SITE --model MODEL"
    runs_as_written(command)


def test_a_labeller_has_no_timelines(engine: Engine, db_url: str, monkeypatch) -> None:
    with begin_write(engine) as conn:
        nodes.add_node(conn, "back-office", role=nodes.LABELLER)
    at = node_page(db_url, monkeypatch, node="back-office")
    assert at.subheader[0].value == "back-office :gray-badge[labeller]"
    assert any("is a labeller" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_a_long_series_is_drawn_thinned_with_its_version_change(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    total = telemetry.MAX_POINTS + 500
    now = datetime.now(UTC)
    first = now - timedelta(hours=20)
    with begin_write(engine) as conn:
        node, _ = nodes.add_node(conn, "edge-long", site="north")
        model = models.add_model(conn, "pump")
        nodes.grant_model(conn, node.id, model.id)
        versions = [models.version_id(conn, model.id, v) for v in ("1", "2")]
        # Every 25 s for almost 17 hours; it runs version 2 from beat 1,234 on.
        conn.execute(
            sa.insert(node_heartbeats),
            [
                {
                    "node_id": node.id,
                    "received_at": first + i * timedelta(seconds=25),
                    "ts": first + i * timedelta(seconds=25),
                    "model_version_id": versions[i >= 1_234],
                    "sdk": {"dropped": {"queue_full": i}, "spool_records": i % 7},
                    "runtime": {"errors_total": 0, "latency_ms": {"p50": 1.0, "p95": 2.5}},
                }
                for i in range(total)
            ],
        )
    beats = stored_beats(engine, "edge-long")
    at = node_page(db_url, monkeypatch, node="edge-long", model="pump")

    shown = traces(at)
    drawn = times(shown["spool"]["x"])
    assert len(drawn) <= telemetry.MAX_POINTS
    assert drawn[0] == beats[0]["received_at"] and drawn[-1] == beats[-1]["received_at"]
    by_time = {b["received_at"]: b for b in beats}
    assert shown["spool"]["y"] == [by_time[t]["sdk"]["spool_records"] for t in drawn]
    assert shown["queue_full"]["y"] == [by_time[t]["sdk"]["dropped"]["queue_full"] for t in drawn]
    assert any(f"{total:,} heartbeats in the period" in c.value for c in at.caption)
    change = beats[1_234]["received_at"]
    assert (change, "version 1 → 2") in {
        (datetime.fromisoformat(a["x"]), a["text"])
        for a in layout(at)["annotations"]
        if a.get("xref") == "x"
    }
    # Nothing analysed: said, with the command that analyses.
    assert any("No analysed window of pump in this period" in i.value for i in at.info)
