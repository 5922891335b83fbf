"""The Alerts page shows what is stored: the tiles count the stored alerts, messages and runs;
the tables hold the stored alerts with their transitions and each transition's messages, the
delivery log, the endpoints and the retrain runs; the time range cuts what resolved, was sent
or ran; and a new user is told the command that comes next. On both backends."""

from __future__ import annotations

import json
import shlex
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine
from streamlit.testing.v1 import AppTest

from monitor.alerts.rules import Rule
from monitor.cli import _parser
from monitor.dashboards.data.alerts import outcome
from monitor.storage import alert_rules, fleet, models, retrains, webhooks
from monitor.storage import alerts as store
from monitor.storage.engine import begin_write
from tests.dashboards.apptest import draw
from tests.dashboards.seed import Seeded

REPO = Path(__file__).resolve().parents[2]
#: The sidebar's default range.
DAY = timedelta(hours=24)


def alerts_page(
    url: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    query: dict[str, str] | None = None,
    state: dict[str, Any] | None = None,
) -> AppTest:
    """The Alerts page drawn on ``url``: no exception, no error shown."""
    return draw(url, "alerts", monkeypatch, query=query, state=state)


def table(at: AppTest, *columns: str, without: str | None = None) -> pd.DataFrame:
    """The one table shown with these columns (and not ``without``)."""
    found = [
        d.value
        for d in at.dataframe
        if set(columns) <= set(d.value.columns) and (without is None or without not in d.value)
    ]
    assert len(found) == 1, f"{len(found)} tables with {columns}"
    return found[0]


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def stored_alerts(seeded: Seeded, state: str) -> list[store.Alert]:
    with seeded.engine.connect() as conn:
        return store.list_alerts(conn, state=state, limit=1000)


def stored_messages(seeded: Seeded, status: str | None = None) -> list[webhooks.Message]:
    with seeded.engine.connect() as conn:
        return webhooks.list_messages(conn, status=status, limit=1000)


def first_observation(alert: store.Alert) -> tuple[float | None, float | None]:
    observed = alert.details.get("observations") or {}
    first = observed.get(alert.subjects[0]) if alert.subjects else None
    if first is None:
        return None, None
    return first["value"], first["bound"]


def same(shown: Any, stored: float | None) -> bool:
    return pd.isna(shown) if stored is None else shown == pytest.approx(stored)


# --- The seeded database ----------------------------------------------------------------------


def test_the_tiles_count_the_stored_alerts_messages_and_runs(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)
    since = datetime.now(UTC) - DAY

    with seeded.engine.connect() as conn:
        firing = fleet.firing_alerts(conn)
        runs = retrains.list_runs(conn, limit=1000)
    resolved = [a for a in stored_alerts(seeded, "resolved") if a.resolved_at >= since]
    messages = stored_messages(seeded)
    shown = metrics(at)

    assert sum(firing.values()) >= 3 and resolved and messages and runs  # the seed's promise
    assert shown["Firing"] == str(sum(firing.values()))
    (tile,) = [m for m in at.metric if m.label == "Firing"]
    assert tile.delta == ", ".join(f"{n} {s}" for s, n in firing.items() if n)
    assert shown["Resolved"] == str(len(resolved))
    undelivered = [m for m in messages if m.status in ("pending", "delivering")]
    assert shown["Messages pending"] == str(len(undelivered))
    failed = [m for m in messages if m.status == "failed" and m.created_at >= since]
    assert shown["Messages failed"] == str(len(failed)) != "0"
    assert shown["Retrains in flight"] == str(sum(r.in_flight for r in runs))
    (tile,) = [m for m in at.metric if m.label == "Retrains in flight"]
    flying = [r.status for r in runs if r.in_flight]
    assert tile.delta == ", ".join(
        f"{flying.count(s)} {s}" for s in retrains.IN_FLIGHT if s in flying
    )


def test_open_alerts_are_the_firing_ones_with_subjects_and_last_value_against_threshold(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "in_trouble", "since", without="resolved_at").set_index("id")
    firing = stored_alerts(seeded, "firing")

    assert sorted(shown.index) == sorted(a.id for a in firing)
    for alert in firing:
        row = shown.loc[alert.id]
        assert (row["rule"], row["group"], row["severity"], row["episode"]) == (
            alert.rule,
            alert.group_key,
            alert.severity,
            alert.episode,
        )
        assert row["in_trouble"] == ", ".join(alert.subjects)
        assert row["subjects"] == len(alert.subjects)
        assert row["since"] == pd.Timestamp(alert.fired_at)
        value, bound = first_observation(alert)
        assert same(row["value"], value) and same(row["bound"], bound)
    drift = [a for a in firing if a.group_key == f"site:{seeded.drifting_site}"]
    assert len(drift) == 1, "the drifting site's alert is open"
    order = list(shown["severity"].map({"critical": 0, "warning": 1, "info": 2}))
    assert order == sorted(order), "critical first"


def test_open_alerts_are_summed_by_rule_and_severity(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "rule", "severity", "alerts")
    expected: dict[tuple[str, str], list[int]] = {}
    for alert in stored_alerts(seeded, "firing"):
        counts = expected.setdefault((alert.rule, alert.severity), [0, 0])
        counts[0] += 1
        counts[1] += len(alert.subjects)

    assert {(r.rule, r.severity): [r.alerts, r.subjects] for r in shown.itertuples()} == expected


def test_each_transition_of_an_alert_shows_its_webhook_messages_and_their_status(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = stored_alerts(seeded, "firing") + stored_alerts(seeded, "resolved")
    delivered_somewhere = False
    for alert in every:
        at = alerts_page(seeded.url, monkeypatch, query={"alert": str(alert.id)})

        with seeded.engine.connect() as conn:
            events = store.alert_events(conn, alert.id)
            sent = webhooks.messages_for_events(conn, [e.id for e in events])
            attempts = webhooks.attempts_of(conn, [m.id for ms in sent.values() for m in ms])
        assert at.selectbox(key="alert").value == alert.id
        shown_events = table(at, "transition", "webhook_id")
        assert list(shown_events["seq"]) == [e.seq for e in events]
        assert list(shown_events["transition"]) == [e.kind for e in events]
        assert list(shown_events["webhook_id"]) == [e.message_id for e in events]
        messages = [(e.seq, m) for e in events for m in sent.get(e.id, [])]
        if not messages:
            assert not [d for d in at.dataframe if "answers" in d.value]
            continue
        shown = table(at, "endpoint", "answers")
        assert [(r.seq, r.endpoint, r.status, r.attempts) for r in shown.itertuples()] == [
            (seq, m.endpoint, m.status, m.attempts) for seq, m in messages
        ]
        for row, (_, m) in zip(shown.itertuples(), messages, strict=True):
            codes = [str(a.status_code) if a.status_code else a.error for a in attempts[m.id]]
            assert row.answers == ", ".join(c or "no answer" for c in codes)
            assert row.last_error == (m.last_error or "")
        delivered_somewhere |= any(m.status == "delivered" for _, m in messages)
    assert delivered_somewhere, "the seed delivered one alert's message"


def test_the_alerts_resolved_in_the_range_are_listed_latest_first(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "resolved_at", "in_trouble")
    resolved = stored_alerts(seeded, "resolved")

    assert resolved, "the seed resolved an alert"
    expected = sorted(resolved, key=lambda a: (a.resolved_at, a.id), reverse=True)
    assert list(shown["id"]) == [a.id for a in expected]
    assert list(shown["resolved_at"]) == [pd.Timestamp(a.resolved_at) for a in expected]
    assert list(shown["rule"]) == [a.rule for a in expected]


def test_the_timeline_draws_one_span_per_alert_on_its_rules_row(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    (chart,) = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    every = stored_alerts(seeded, "firing") + stored_alerts(seeded, "resolved")

    rows = [
        (y, c[0])
        for trace in spec["data"]
        for y, c in zip(trace["y"], trace["customdata"], strict=True)
    ]
    assert sorted(rows) == sorted((a.rule, f"#{a.id} {a.group_key}") for a in every)
    by_severity = {trace["name"]: len(trace["y"]) for trace in spec["data"]}
    expected: dict[str, int] = {}
    for alert in every:
        expected[alert.severity] = expected.get(alert.severity, 0) + 1
    assert by_severity == expected


def test_the_delivery_log_lists_every_message_and_filters_by_status(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "message_id", "event", "next_try")
    messages = stored_messages(seeded)

    assert [(r.message_id, r.endpoint, r.status, r.attempts) for r in shown.itertuples()] == [
        (m.message_id, m.endpoint, m.status, m.attempts) for m in messages
    ]
    assert list(shown["last_error"]) == [m.last_error or "" for m in messages]
    statuses = {m.status for m in messages}
    assert {"delivered", "failed", "pending", "delivering"} <= statuses
    for status in sorted(statuses):
        at.selectbox(key="delivery_status").set_value(status).run()
        assert not at.exception
        filtered = table(at, "message_id", "event", "next_try")
        assert list(filtered["message_id"]) == [
            m.message_id for m in stored_messages(seeded, status)
        ]
        assert set(filtered["status"]) == {status}


def test_the_endpoints_show_their_state(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "endpoint", "url", "state")
    with seeded.engine.connect() as conn:
        stored = webhooks.list_endpoints(conn)

    assert [(r.endpoint, r.url, r.state, r.reason) for r in shown.itertuples()] == [
        (e.name, e.url, "enabled" if e.enabled else "disabled", e.disabled_reason or "")
        for e in stored
    ]
    assert "secret" not in shown


def test_the_retrain_runs_show_their_outcome_in_words(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(seeded.url, monkeypatch)

    shown = table(at, "hook", "trigger", "outcome")
    with seeded.engine.connect() as conn:
        runs = retrains.list_runs(conn, limit=1000)

    assert [(r.id, r.hook, r.status, r.version) for r in shown.itertuples()] == [
        (r.id, r.hook, r.status, r.version or "") for r in runs
    ]
    assert list(shown["queued"]) == [pd.Timestamp(r.created_at) for r in runs]
    assert list(shown["outcome"]) == [outcome(r) for r in runs]
    by_status = {r.status: o for r, o in zip(runs, shown["outcome"], strict=True)}
    assert by_status["failed"].startswith("failed: ")
    assert by_status["canary"] == "produced version 2, passed the gate; its canary is running"
    words = [m.value for m in at.markdown]
    for run in runs[:5]:
        assert any(w.startswith(f"- **Run {run.id}**") and outcome(run) in w for w in words)


def test_a_range_before_anything_happened_leaves_out_what_resolved_was_sent_or_ran(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(
        seeded.url,
        monkeypatch,
        state={"range": "Custom", "custom_days": (date(2020, 1, 1), date(2020, 1, 2))},
    )

    shown = metrics(at)
    with seeded.engine.connect() as conn:
        firing = fleet.firing_alerts(conn)

    assert shown["Resolved"] == "0"
    assert shown["Messages failed"] == "0"
    assert shown["Firing"] == str(sum(firing.values()))  # firing now, whatever the range
    notes = [i.value for i in at.info]
    assert "No alert resolved in the range (Custom)." in notes
    assert "No webhook message in the range." in notes
    assert "No retrain run in the range (Custom)." in notes
    assert not [d for d in at.dataframe if "message_id" in d.value or "outcome" in d.value]
    assert not at.get("plotly_chart")


# --- Empty states -----------------------------------------------------------------------------


def parses(command: str) -> None:
    """The command line a page shows is one the CLI takes (placeholders as they are)."""
    for line in command.splitlines():
        words = shlex.split(line)
        assert words[0] == "edge-monitor"
        _parser().parse_args(words[1:])


def test_without_a_model_the_page_says_how_to_register_one(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(empty_url, monkeypatch)

    assert [i.value.split("\n")[0] for i in at.info] == ["**No model yet**"]
    (code,) = at.code
    assert code.value.startswith("edge-monitor models register NAME")
    parses(code.value)
    assert not at.metric


def test_without_rules_endpoints_or_hooks_the_page_says_the_next_commands(
    no_reference_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = alerts_page(no_reference_url, monkeypatch)

    titles = [i.value.split("\n")[0] for i in at.info]
    assert titles == [
        "**No alert rules yet**",
        "**No webhook endpoint yet**",
        "**No retrain hook yet**",
    ]
    assert "examples/alerts.toml" in at.info[0].value
    commands = [c.value for c in at.code]
    assert commands == [
        "edge-monitor alerts apply rules.toml",
        "edge-monitor webhooks add NAME URL",
        "edge-monitor retrain add-hook NAME --model MODEL --kind reference --cooldown 6h",
    ]
    for command in commands:
        parses(command)
    assert not at.metric and not at.dataframe, "nothing empty beside the advice"


# --- A fleet's worth of alerts -----------------------------------------------------------------


def many_resolved(engine: Engine, count: int) -> list[int]:
    """``count`` alerts of one rule, one per site, each fired and resolved within the hour."""
    now = datetime.now(UTC) - timedelta(minutes=30)
    with begin_write(engine) as conn:
        models.add_model(conn, "pump")
        rule = alert_rules.upsert_rule(
            conn, Rule(name="site drift", kind="scope_drift", model="pump", group_by="site"),
            now=now,
        )  # fmt: skip
        assert rule.id is not None
        ids = []
        for i in range(count):
            alert_id = store.open_alert(
                conn,
                rule_id=rule.id,
                model_id=None,
                group_key=f"site:s{i:03d}",
                severity="warning",
                summary=f"site s{i:03d} drifts",
                subjects=[f"site:s{i:03d}"],
                details={},
                window_start=now,
                now=now,
            )
            store.update_alert(
                conn,
                alert_id,
                subjects=[],
                summary=f"site s{i:03d} drifts",
                details={},
                window_start=now,
                now=now + timedelta(seconds=i),
                resolve=True,
            )
            ids.append(alert_id)
    return ids


def test_a_long_table_is_searched_and_paged(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = many_resolved(engine, 120)
    at = alerts_page(db_url, monkeypatch)

    shown = table(at, "resolved_at", "in_trouble")
    assert list(shown["id"]) == ids[::-1][:50]
    assert metrics(at)["Resolved"] == "120"
    pager = at.number_input(key="resolved_page")
    assert pager.label == "Page of 3"

    pager.set_value(3).run()
    assert list(table(at, "resolved_at", "in_trouble")["id"]) == ids[::-1][100:]

    at.text_input(key="resolved_search").input("s007").run()
    found = table(at, "resolved_at", "in_trouble")
    assert list(found["group"]) == ["site:s007"]


def test_with_rules_but_no_endpoint_or_hook_their_tabs_say_how_to_add_one(
    engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_resolved(engine, 1)
    at = alerts_page(db_url, monkeypatch)

    titles = [i.value.split("\n")[0] for i in at.info]
    assert "**No webhook endpoint yet**" in titles and "**No retrain hook yet**" in titles
    assert [c.value for c in at.code] == [
        "edge-monitor webhooks add NAME URL",
        "edge-monitor retrain add-hook NAME --model MODEL --kind reference --cooldown 6h",
    ]
    assert metrics(at)["Resolved"] == "1"


# --- A retrain run's outcome in words ---------------------------------------------------------


def run_in(status: str, **fields: Any) -> retrains.Run:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": 1,
        "model_id": 1,
        "model": "pump",
        "hook_id": 1,
        "hook": "h",
        "alert_id": None,
        "trigger": "manual",
        "status": status,
        "version": "5",
        "output": "",
        "details": {},
        "claimed_by": None,
        "created_at": now,
        "started_at": None,
        "finished_at": None,
        "updated_at": now,
    }
    return retrains.Run(**(values | fields))


def test_every_run_status_has_its_outcome_in_words() -> None:
    judged = {"judgement": {"decision": "rollback", "reason": "the canary drifts more"}}
    said = [
        (run_in("queued", version=None), "waiting for a worker"),
        (run_in("running", version=None), "its hook is running"),
        (run_in("running", details={"awaiting_result": True}), "waiting for the pipeline's result"),
        (run_in("failed", output="step 1\nno labels\n"), "failed: no labels"),
        (run_in("failed", output=""), "failed"),
        (run_in("timed_out"), "timed out: its hook took longer than its timeout"),
        (run_in("produced"), "produced version 5; the promotion gate has yet to judge it"),
        (
            run_in("gated", details={"gate": {"reason": "no better"}}),
            "produced version 5, stopped by the promotion gate (no better)",
        ),
        (run_in("canary"), "produced version 5, passed the gate; its canary is running"),
        (
            run_in("promoted"),
            "produced version 5, passed the gate and its canary: rolled out to every node",
        ),
        (
            run_in("rolled_back", details={"canary": judged}),
            "produced version 5, passed the gate; rolled back after its canary "
            "(the canary drifts more)",
        ),
    ]
    assert {r.status for r, _ in said} == set(retrains.STATUSES)
    for run, words in said:
        assert outcome(run) == words
