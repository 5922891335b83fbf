"""The Models page shows what the registry holds: versions and stages, the deployment, the
canary's progress, the rollout history, and per node the version the registry assigns it beside
the one it reports, a mismatch highlighted; a new user is told the command that comes next.
On both backends."""

from __future__ import annotations

import json
import re
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitor.cli import _parser
from monitor.config import load_settings
from monitor.dashboards.data import models as data
from monitor.storage import health, models, nodes, registry, results
from monitor.storage.engine import begin_write
from tests.dashboards.apptest import draw
from tests.dashboards.seed import Seeded

REPO = Path(__file__).resolve().parents[2]
CARD = {"name": "pump", "features": []}


def models_page(
    url: str, monkeypatch: pytest.MonkeyPatch, *, query: dict[str, str] | None = None
) -> AppTest:
    """The Models page drawn on ``url``: no exception, no error shown."""
    return draw(url, "models", monkeypatch, query=query)


def table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The one table shown with these columns."""
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert len(found) == 1, f"{len(found)} tables with {columns}"
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titled(at: AppTest, words: str) -> dict[str, Any]:
    (found,) = [c for c in charts(at) if words in c["layout"]["title"]["text"]]
    return found


def expected_nodes(engine: Engine, model: str) -> dict[str, tuple[str, str, str]]:
    """Per node of the model: (assigned version, why, reported version), one node at a time
    through ``registry.assignment_for`` and the health rows."""
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        reported = health.health_by_node(conn)
        out = {}
        for node in nodes.list_nodes(conn):
            if node.revoked_at is not None or node.role != nodes.NODE:
                continue
            assignment = registry.assignment_for(conn, found.id, model, node)
            out[node.name] = (
                assignment.version.version if assignment else "",
                assignment.reason if assignment else "",
                (reported[node.name].model_version or "") if node.name in reported else "",
            )
        return out


# --- The seeded database ----------------------------------------------------------------------


def test_the_deployment_tiles_are_the_registrys(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    with seeded.engine.connect() as conn:
        current = registry.deployment(conn, seeded.model_id)
    shown = metrics(at)
    expected = expected_nodes(seeded.engine, seeded.model)
    on_target = sum(1 for a, _, r in expected.values() if a and a == r)

    assert current.production is not None and current.canary is not None
    assert shown["Production"] == current.production.version
    assert shown["Canary"] == current.canary.version
    assert shown["Rollback target"] == (current.previous.version if current.previous else "none")
    assert shown["Nodes"] == str(len(seeded.nodes))
    assert shown["On their version"] == f"{on_target} of {len(expected)}"
    silent = sum(1 for a, _, r in expected.values() if a and not r)
    mismatched = sum(1 for a, _, r in expected.values() if a and r and a != r)
    (tile,) = [m for m in at.metric if m.label == "On their version"]
    problems = [f"{mismatched} mismatched"] if mismatched else []
    problems += [f"{silent} not reporting"] if silent else []
    assert tile.delta == ", ".join(problems) != ""  # the silent node reports nothing
    (rollout, *_) = at.progress
    assert rollout.value == int(on_target / len(expected) * 100)


def test_the_versions_table_holds_every_version_with_its_stage_and_nodes(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    shown = table(at, "version", "stage", "role").set_index("version")
    with seeded.engine.connect() as conn:
        versions = registry.versions(conn, seeded.model_id)
    expected = expected_nodes(seeded.engine, seeded.model)

    assert list(shown.index) == [v.version for v in versions]
    for v in versions:
        row = shown.loc[v.version]
        assert (row["stage"], row["reference_rows"]) == (v.stage, v.reference_rows)
        assert row["registered_at"] == pd.Timestamp(v.registered_at)
        assert (
            pd.isna(row["promoted_at"])
            if v.promoted_at is None
            else (row["promoted_at"] == pd.Timestamp(v.promoted_at))
        )
        assert row["assigned_nodes"] == sum(1 for a, _, _ in expected.values() if a == v.version)
        assert row["reporting_nodes"] == sum(1 for _, _, r in expected.values() if r == v.version)
    assert shown.loc["1", "role"] == "production"
    assert shown.loc["2", "role"] == "canary (25%)"


def test_every_node_shows_its_assigned_and_reported_version(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    shown = table(at, "node", "assigned", "reported")
    expected = expected_nodes(seeded.engine, seeded.model)

    assert {r.node: (r.assigned, r.reason, r.reported) for r in shown.itertuples()} == expected
    assert list(shown["mismatch"]) == [a != "" and r != "" and a != r for a, _, r in
                                       (expected[n] for n in shown["node"])]  # fmt: skip
    canary = sorted(r.node for r in shown.itertuples() if r.reason == "canary")
    assert canary == sorted(seeded.canary_nodes)
    assert list(shown["link"]) == [f"/node?node={n}" for n in shown["node"]]
    assert shown.set_index("node").loc[seeded.silent_node, "reported"] == ""


def test_the_bar_chart_counts_nodes_per_version_assigned_and_reported(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    chart = titled(at, "Nodes per version")
    expected = expected_nodes(seeded.engine, seeded.model)

    for side, index in (("assigned", 0), ("reported", 2)):
        counts: dict[str, int] = {}
        for values in expected.values():
            if values[index]:
                counts[values[index]] = counts.get(values[index], 0) + 1
        (trace,) = [t for t in chart["data"] if t["name"] == side]
        assert dict(zip(trace["x"], _numbers(trace["y"]), strict=True)) == counts


def _numbers(values: Any) -> list[int]:
    """A plotly array as numbers (plotly 6 writes numeric arrays as typed base64)."""
    if isinstance(values, dict):
        import base64

        import numpy as np

        return [int(v) for v in np.frombuffer(base64.b64decode(values["bdata"]), values["dtype"])]
    return [int(v) for v in values]


def test_the_canary_shows_its_nodes_and_the_windows_judged_so_far(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    with seeded.engine.connect() as conn:
        history = registry.rollout_history(conn, seeded.model_id)
        (started,) = [e["at"] for e in history if e["action"] == "canary"]
        windows = [
            w
            for w in results.analysed_since(conn, seeded.model_id, started)
            if w.window_start >= started
        ]
    wanted = load_settings().retrain_canary_windows
    judged = max(len(windows) - 1, 0)

    assert next(s.value for s in at.subheader) == "Canary: version 2"
    canary = [p for p in at.progress if "windows judged" in p.text]
    assert [p.text for p in canary] == [f"{judged} of {wanted} windows judged so far"]
    assert canary[0].value == int(min(judged, wanted) / wanted * 100)
    assert [c.value for c in at.caption if c.value.startswith("Its nodes: ")] == [
        "Its nodes: " + ", ".join(sorted(seeded.canary_nodes))
    ]
    assert any("Started by retrain run" in m.value for m in at.markdown)


def test_the_rollout_history_lists_the_registrys_events_and_draws_the_spans(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(seeded.url, monkeypatch)

    shown = table(at, "at", "action", "version", "details")
    with seeded.engine.connect() as conn:
        history = registry.rollout_history(conn, seeded.model_id)

    assert [(r.action, r.version) for r in shown.itertuples()] == [
        (e["action"], e["version"] or "") for e in history
    ]
    assert list(shown["at"]) == [pd.Timestamp(e["at"]) for e in history]
    spans = titled(at, "production, canary or pinned")
    drawn = {(t["name"], y) for t in spans["data"] for y in t["y"]}
    assert drawn == {("production", "1"), ("canary", "2")}


# --- Empty states -----------------------------------------------------------------------------


def parses(command: str) -> None:
    """The command lines a page shows are ones the CLI takes (placeholders as they are)."""
    for line in command.splitlines():
        words = shlex.split(line)
        assert words[0] == "edge-monitor"
        _parser().parse_args(words[1:])


def advice(at: AppTest) -> list[str]:
    return [i.value.split("\n")[0] for i in at.info]


def test_without_a_model_the_page_says_how_to_register_one(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(empty_url, monkeypatch)

    assert advice(at) == ["**No model yet**"]
    (code,) = at.code
    assert code.value.splitlines() == [
        "edge-monitor models add NAME",
        "edge-monitor models register NAME --version 1 --reference reference.csv",
    ]
    parses(code.value)


def test_a_model_without_a_version_says_how_to_register_one(
    no_reference_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(no_reference_url, monkeypatch)

    (title,) = advice(at)
    assert title.endswith(" has no version yet**")
    (code,) = at.code
    model = at.selectbox(key="model_picker").value
    assert (
        code.value == f"edge-monitor models register {model} --version 1 --reference reference.csv"
    )
    parses(code.value)
    assert not at.dataframe


def test_a_model_with_one_version_says_how_to_register_and_canary_the_next(
    no_window_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = models_page(no_window_url, monkeypatch)

    model = at.selectbox(key="model_picker").value
    assert advice(at) == ["**One version so far**"]
    (code,) = at.code
    assert code.value.splitlines() == [
        f"edge-monitor models register {model} --onnx model.onnx --card card.json",
        f"edge-monitor models canary {model} VERSION --share 0.1",
        f"edge-monitor models promote {model} VERSION",
    ]
    parses(code.value)
    assert metrics(at)["Production"] == "1"
    assert len(table(at, "node", "assigned", "reported")) == 3


def nodes_on(
    engine: Engine, count: int, *, reporting: dict[str, str], promote: str | None = "1"
) -> None:
    """Model "pump" with versions 1 and 2 (``promote`` in production) and ``count`` nodes
    registered for it; ``reporting``: the version some of them report running."""
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        for version in ("1", "2"):
            registry.register_version(
                conn, model_id, version, artifact=f"onnx-{version}".encode(), card=CARD
            )
        if promote is not None:
            registry.promote(conn, model_id, promote)
        rows = []
        for i in range(count):
            node = nodes.add_node(conn, f"edge-{i:03d}", site="s1")[0]
            nodes.grant_model(conn, node.id, model_id)
            if node.name in reporting:
                rows.append(
                    health.NodeHealth(
                        node_id=node.id,
                        status="online",
                        checked_at=datetime.now(UTC),
                        last_heartbeat_at=datetime.now(UTC),
                        model_version=reporting[node.name],
                        dropped={},
                        spool_records=None,
                        queue_depth=None,
                        latency_p95_ms=None,
                        errors=None,
                        details={},
                    )
                )
        health.save_health(conn, rows)


def test_a_model_with_no_node_says_how_to_add_one(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes_on(engine, 0, reporting={})
    at = models_page(db_url, monkeypatch)

    assert "**No node runs this model yet**" in advice(at)
    (code,) = [c.value for c in at.code if "nodes add" in c.value]
    assert code == "edge-monitor nodes add NODE --model pump --site SITE --group GROUP"
    parses(code)


def test_a_model_with_nothing_deployed_says_how_to_promote_a_version(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes_on(engine, 2, reporting={}, promote=None)
    at = models_page(db_url, monkeypatch)

    assert advice(at)[0] == "**Nothing deployed yet**"
    assert at.code[0].value == "edge-monitor models promote pump 2"
    parses(at.code[0].value)
    assert metrics(at)["Production"] == "none"


def test_mismatched_nodes_are_highlighted_and_a_long_node_table_is_searched_and_paged(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes_on(engine, 120, reporting={"edge-007": "2", "edge-008": "1", "edge-111": "2"})
    at = models_page(db_url, monkeypatch)

    assert next(w.value for w in at.warning).startswith("2 nodes report a version other than")
    shown = table(at, "node", "assigned", "reported")
    assert list(shown["node"]) == [f"edge-{i:03d}" for i in range(50)]
    (styled,) = [d for d in at.dataframe if d.proto.arrow_data.styler.styles]
    css = styled.proto.arrow_data.styler.styles
    assert "rgba(214, 39, 40, 0.18)" in css
    cells = set(re.findall(r"row(\d+)_col(\d+)", css))
    assert cells == {("7", str(col)) for col in range(len(shown.columns))}  # edge-007's row
    pager = at.number_input(key="nodes_page")
    assert pager.label == "Page of 3"

    pager.set_value(3).run()
    assert list(table(at, "node", "assigned", "reported")["node"]) == [
        f"edge-{i:03d}" for i in range(100, 120)
    ]

    at.toggle(key="mismatch_only").set_value(True).run()
    only = table(at, "node", "assigned", "reported")
    assert list(only["node"]) == ["edge-007", "edge-111"]
    assert list(only["mismatch"]) == [True, True]

    at.toggle(key="mismatch_only").set_value(False).run()
    at.text_input(key="nodes_search").input("edge-00").run()
    found = table(at, "node", "assigned", "reported")
    assert list(found["node"]) == [f"edge-{i:03d}" for i in range(10)]


# --- The rollout as spans ---------------------------------------------------------------------


def test_the_rollout_spans_follow_promotions_canaries_pins_and_rollbacks() -> None:
    t = [datetime(2026, 12, 1, hour, tzinfo=UTC) for hour in range(10)]

    def event(at: datetime, action: str, version: str | None, **details: Any) -> dict[str, Any]:
        return {"at": at, "action": action, "version": version, "details": details}

    history = [
        event(t[0], "register", "1"),
        event(t[1], "promote", "1", replaced=None),
        event(t[2], "canary", "2", share=0.25),
        event(t[3], "promote", "2", replaced="1"),  # the canary's version: its canary ends
        event(t[4], "pin", "1", group="line-a"),
        event(t[5], "canary", "3", share=0.1),
        event(t[6], "canary_stop", "3"),
        event(t[7], "unpin", None, group="line-a"),
        event(t[8], "rollback", "1", replaced="2"),
    ]

    spans = data.rollout_spans(history, None, t[9])
    cut = data.rollout_spans(history, t[5], t[9])

    assert [(s.version, s.role, s.start, s.end) for s in spans.itertuples()] == [
        ("1", "production", t[1], t[3]),
        ("2", "canary", t[2], t[3]),
        ("2", "production", t[3], t[8]),
        ("1", "pinned: line-a", t[4], t[7]),
        ("3", "canary", t[5], t[6]),
        ("1", "production", t[8], t[9]),
    ]
    assert [(s.version, s.role, s.start, s.end) for s in cut.itertuples()] == [
        ("3", "canary", t[5], t[6]),
        ("1", "pinned: line-a", t[5], t[7]),
        ("2", "production", t[5], t[8]),
        ("1", "production", t[8], t[9]),
    ]


def test_a_model_registered_by_reference_alone_is_not_told_to_promote_or_canary(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "kiln").id
        registry.register_version(
            conn, model_id, "2025.1", artifact=None, card=None, reference=b"rows", reference_rows=9
        )
        node = nodes.add_node(conn, "kiln-1")[0]
        nodes.grant_model(conn, node.id, model_id)
    at = models_page(db_url, monkeypatch)

    assert advice(at) == ["**One version so far**"]
    (code,) = at.code
    assert code.value == (
        "edge-monitor models register kiln --version VERSION --reference reference.csv"
    )
    parses(code.value)
    assert any("registered by its reference data alone" in c.value for c in at.caption)
    assert metrics(at)["Production"] == "none"
    shown = table(at, "node", "assigned", "reported")
    assert list(shown[["node", "assigned", "mismatch"]].itertuples(index=False)) == [
        ("kiln-1", "", False)
    ]
