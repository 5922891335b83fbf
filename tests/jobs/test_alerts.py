"""Alert evaluation as the worker runs it: stored window results -> observations -> alerts,
their events and outbox rows, in the results' own transaction (both databases)."""

from __future__ import annotations

import logging
from datetime import timedelta

import jsonschema
import pytest
from sqlalchemy import Engine, func, select

from monitor.alerts.payload import PAYLOAD_SCHEMA
from monitor.alerts.rules import Rule
from monitor.storage import alerts, retrains, webhooks
from monitor.storage import tables as alerts_tables
from monitor.storage.alert_rules import upsert_rule
from monitor.storage.engine import begin_write
from monitor.storage.tables import alert_observations, webhook_messages
from tests.alerts.windows import T0, fleet, node_names, start, store

SITES = {"hot": 12, "cold": 4}
NODES = node_names(SITES)


def add_rule(engine: Engine, **fields) -> Rule:
    fields.setdefault("model", "pump")
    with begin_write(engine) as conn:
        return upsert_rule(conn, Rule(**fields), now=T0)


def add_endpoint(engine: Engine, name: str = "ops") -> None:
    with begin_write(engine) as conn:
        webhooks.upsert_endpoint(
            conn, name=name, url="https://hooks.example/alerts", secret="whsec_" + "A" * 32, now=T0
        )


def all_alerts(engine: Engine) -> list[alerts.Alert]:
    with engine.connect() as conn:
        return alerts.list_alerts(conn)


def events(engine: Engine, alert_id: int) -> list[alerts.AlertEvent]:
    """An alert's events, each payload checked against the documented schema."""
    with engine.connect() as conn:
        found = alerts.alert_events(conn, alert_id)
    for event in found:
        jsonschema.validate(event.payload, PAYLOAD_SCHEMA)
        assert event.payload["data"]["event"]["message_id"] == event.message_id
    return found


def vibration_rule(engine: Engine, **overrides) -> Rule:
    return add_rule(
        engine,
        **{
            "name": "site drift",
            "kind": "feature_drift",
            "params": {"feature": "vibration_mm_s"},
            "scope": "each_node",
            "group_by": "site",
            **overrides,
        },
    )


def test_twelve_drifting_nodes_at_one_site_make_one_alert_updated_as_nodes_join(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine)
    add_endpoint(engine)
    hot = [n for n in NODES if n.startswith("hot")]

    first = store(
        engine, model_id, 0, node_list=NODES, drifting={n: ["vibration_mm_s"] for n in hot[:5]}
    )
    second = store(
        engine, model_id, 1, node_list=NODES, drifting={n: ["vibration_mm_s"] for n in hot}
    )

    [alert] = all_alerts(engine)
    assert alert.state == "firing" and alert.group_key == "site:hot"
    assert sorted(alert.subjects) == sorted(f"node:{n}" for n in hot)
    assert alert.summary == "12 nodes at site hot drift on vibration_mm_s"
    assert [e.kind for e in events(engine, alert.id)] == ["fired", "updated"]
    assert [c.event.kind for c in first + second] == ["fired", "updated"]
    assert second[0].event.payload["data"]["joined"] == sorted(f"node:{n}" for n in hot[5:])
    assert second[0].text.startswith("UPDATED [warning] site drift: 12 nodes at site hot drift")


def test_a_flapping_figure_inside_the_m_of_n_band_never_fires(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine, scope="site", group_by=None, fire_m=3, fire_n=4)
    changes = []
    for i in range(16):
        drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")} if i % 2 else {}
        changes += store(engine, model_id, i, node_list=NODES, drifting=drifting)

    assert changes == []
    assert all_alerts(engine) == []
    with engine.connect() as conn:  # only the windows its 3-of-4 still looks at are kept
        kept = conn.execute(select(alert_observations.c.window_start).distinct()).scalars()
        assert sorted(kept) == [start(13), start(15)]  # the breaching ones of 12..15


def test_an_accuracy_drop_on_too_few_labels_makes_no_alert_and_on_many_labels_fires(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    add_rule(
        engine, name="accuracy", kind="performance", params={"metric": "accuracy", "below": 0.8}
    )
    few = store(engine, model_id, 0, node_list=NODES, performance={("fleet", ""): (40, 0.7)})
    assert few == [] and all_alerts(engine) == []

    many = store(engine, model_id, 1, node_list=NODES, performance={("fleet", ""): (1000, 0.7)})
    [alert] = all_alerts(engine)
    assert [c.event.kind for c in many] == ["fired"]
    assert alert.group_key == "fleet"
    data = many[0].event.payload["data"]
    assert data["value"] == pytest.approx(0.7) and data["bound"] == pytest.approx(0.8)
    low, high = data["details"]["interval"]
    assert low < 0.7 < high < 0.8


def test_a_steady_fleet_over_100_windows_makes_no_alert(engine: Engine) -> None:
    model_id = fleet(engine, {"hot": 3, "cold": 3})
    names = node_names({"hot": 3, "cold": 3})
    vibration_rule(engine)
    add_rule(engine, name="any drift", kind="scope_drift", scope="site")
    add_rule(
        engine, name="accuracy", kind="performance", params={"metric": "accuracy", "below": 0.8}
    )
    changes = []
    for i in range(100):
        changes += store(
            engine, model_id, i, node_list=names, performance={("fleet", ""): (300, 0.93)}
        )
    assert changes == [] and all_alerts(engine) == []


def test_judging_a_window_again_creates_no_second_alert_and_no_second_event(
    engine: Engine,
) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine)
    add_endpoint(engine)
    drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")}
    store(engine, model_id, 0, node_list=NODES, drifting=drifting)
    again = store(engine, model_id, 0, node_list=NODES, drifting=drifting)

    assert again == []
    [alert] = all_alerts(engine)
    assert len(events(engine, alert.id)) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_messages)).scalar() == 1
        observed = conn.execute(select(func.count()).select_from(alert_observations)).scalar()
    assert observed == 12  # replaced, not added to


def test_firing_then_resolved_records_both_with_distinct_stable_message_ids(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine, resolve_m=2, resolve_n=2)
    add_endpoint(engine)
    drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")}
    with caplog.at_level(logging.INFO, logger="monitor.jobs.alerts"):
        store(engine, model_id, 0, node_list=NODES, drifting=drifting)
        assert store(engine, model_id, 1, node_list=NODES) == []  # 1 of 2 clear: still firing
        resolved = store(engine, model_id, 2, node_list=NODES)

    [alert] = all_alerts(engine)
    assert alert.state == "resolved" and alert.subjects == ()
    assert [c.event.kind for c in resolved] == ["resolved"]
    fired, done = events(engine, alert.id)
    assert (fired.kind, done.kind) == ("fired", "resolved")
    assert fired.message_id != done.message_id
    assert fired.message_id == alerts.message_id(alert.id, 1)
    assert done.payload["type"] == "alert.resolved" and done.payload["data"]["resolved_at"]
    assert len(done.payload["data"]["left"]) == 12
    with engine.connect() as conn:
        queued = conn.execute(
            select(webhook_messages.c.message_id, webhook_messages.c.event_type).order_by(
                webhook_messages.c.id
            )
        ).all()
    assert queued == [(fired.message_id, "alert.fired"), (done.message_id, "alert.resolved")]
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.jobs.alerts"]
    assert lines[0].startswith("alert FIRING: [warning] site drift: 12 nodes at site hot")
    assert lines[-1].startswith("alert RESOLVED: [warning] site drift")


def test_a_resolved_alert_does_not_fire_again_within_its_cooldown(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine, cooldown_seconds=3600)
    drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")}
    store(engine, model_id, 0, node_list=NODES, drifting=drifting)
    store(engine, model_id, 1, node_list=NODES)  # resolved at window 2's start
    assert store(engine, model_id, 2, node_list=NODES, drifting=drifting) == []  # cooling down
    later = store(
        engine, model_id, 3, node_list=NODES, drifting=drifting, now=T0 + timedelta(hours=3)
    )
    assert [c.event.kind for c in later] == ["fired"]
    episodes = sorted(a.episode for a in all_alerts(engine))
    assert episodes == [1, 2]


def test_a_rule_with_hooks_requests_a_retrain_run_when_it_fires(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    with begin_write(engine) as conn:
        retrains.upsert_hook(
            conn,
            name="retrain",
            model_id=model_id,
            kind="command",
            config={"argv": ["true"]},
            timeout_seconds=60,
            cooldown_seconds=0,
            now=T0,
        )
    add_rule(
        engine,
        name="accuracy",
        kind="performance",
        params={"metric": "accuracy", "below": 0.8},
        hooks=("retrain",),
    )
    fired = store(engine, model_id, 0, node_list=NODES, performance={("fleet", ""): (1000, 0.6)})
    with engine.connect() as conn:
        [run] = retrains.list_runs(conn, model_id=model_id)
    assert run.alert_id == fired[0].alert_id and run.trigger == "alert"


def test_the_worker_raises_one_site_alert_and_re_analysing_the_period_adds_nothing(
    engine: Engine,
) -> None:
    from monitor.demo_model import MODEL_NAME
    from monitor.jobs.analysis import Worker
    from monitor.storage.models import get_model
    from tests.jobs.test_analysis import CONFIG, NOW, run_scenario
    from tests.jobs.test_analysis import T0 as SCENARIO_T0

    _, plans, _ = run_scenario(engine, "sensor-drift", windows=3, per_node=250)
    add_rule(
        engine,
        name="temperature drift",
        model=MODEL_NAME,
        kind="feature_drift",
        params={"feature": "temperature_c"},
        scope="each_node",
        group_by="site",
    )
    add_endpoint(engine)
    worker = Worker(engine, CONFIG, clock=lambda: NOW)

    assert worker.run_due(now=NOW) == 3

    [alert] = all_alerts(engine)
    assert alert.group_key == "site:site-a" and alert.state == "firing"
    assert set(alert.subjects) == {f"node:{p.name}" for p in plans if p.site == "site-a"}
    before = events(engine, alert.id)
    with engine.connect() as conn:
        model = get_model(conn, MODEL_NAME)
    again = worker.analyse_period(model, SCENARIO_T0, SCENARIO_T0 + 3 * CONFIG.window)
    assert len(again.analysed) == 3
    assert [a.id for a in all_alerts(engine)] == [alert.id]
    assert events(engine, alert.id) == before
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(webhook_messages)).scalar() == len(
            before
        )


def test_node_rules_fire_per_site_and_resolve_on_the_health_clock(engine: Engine) -> None:
    from monitor.jobs.alerts import evaluate_nodes
    from monitor.storage import health, heartbeats, nodes
    from monitor.storage.types import utcnow

    with begin_write(engine) as conn:
        ids = {}
        for name, site in (("n1", "hot"), ("n2", "hot"), ("n3", "cold"), ("n4", "cold")):
            ids[name] = nodes.add_node(conn, name, site=site)[0].id
        for name in ("n1", "n2", "n3"):  # n4 never sends one: silent, unknown
            heartbeats.record_heartbeat(
                conn, node_id=ids[name], ts=utcnow(), model_version_id=None, sdk={}, runtime=None
            )
    add_rule(
        engine,
        name="offline",
        model=None,
        kind="node_offline",
        params={"for_seconds": 300},
        scope="each_node",
        group_by="site",
    )
    add_rule(
        engine,
        name="slow",
        model=None,
        kind="latency_p95",
        params={"above_ms": 100},
        scope="node",
        scope_key="n3",
    )
    add_endpoint(engine)
    now = utcnow()

    def latency(ms: float) -> None:
        with begin_write(engine) as conn:
            health.save_health(
                conn,
                [
                    health.NodeHealth(
                        ids["n3"], "online", now, now, None, {}, None, None, ms, None, {}
                    )
                ],
            )

    latency(20)
    assert evaluate_nodes(engine, now=now, offline_after=timedelta(minutes=5)) == 0
    latency(500)
    assert (
        evaluate_nodes(engine, now=now + timedelta(seconds=30), offline_after=timedelta(minutes=5))
        == 1
    )
    latency(20)
    assert (
        evaluate_nodes(engine, now=now + timedelta(seconds=60), offline_after=timedelta(minutes=5))
        == 1
    )
    [slow] = all_alerts(engine)
    assert slow.state == "resolved" and slow.group_key == "node:n3"
    assert [e.kind for e in events(engine, slow.id)] == ["fired", "resolved"]

    later = now + timedelta(minutes=10)  # every heartbeat is 10 minutes old: offline
    assert evaluate_nodes(engine, now=later, offline_after=timedelta(minutes=5)) == 2
    assert evaluate_nodes(engine, now=later, offline_after=timedelta(minutes=5)) == 0  # same tick
    offline = sorted((a.group_key, a.subjects) for a in all_alerts(engine) if a.rule == "offline")
    assert offline == [("site:cold", ("node:n3",)), ("site:hot", ("node:n1", "node:n2"))]
    assert [a.summary for a in all_alerts(engine) if a.group_key == "site:hot"] == [
        "2 nodes at site hot: offline"
    ]


def test_two_breaches_in_three_windows_fire_on_the_second_breach(engine: Engine) -> None:
    model_id = fleet(engine, SITES)
    vibration_rule(engine, scope="site", group_by=None, fire_m=2, fire_n=3)
    drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")}

    assert store(engine, model_id, 0, node_list=NODES, drifting=drifting) == []
    assert store(engine, model_id, 1, node_list=NODES) == []
    fired = store(engine, model_id, 2, node_list=NODES, drifting=drifting)

    assert [(c.event.kind, c.event.payload["data"]["group"]) for c in fired] == [
        ("fired", "site:hot")
    ]


def test_the_worker_s_results_and_the_stored_ones_get_the_same_judgement(engine: Engine) -> None:
    from monitor.alerts.evaluate import evaluate
    from monitor.analysis import AnalysisPolicy
    from monitor.demo_model import MODEL_NAME
    from monitor.jobs.alerts import figures_from, figures_of
    from monitor.jobs.analysis import Worker, analyse_window
    from monitor.jobs.windows import Window
    from monitor.storage import results
    from monitor.storage.models import get_model
    from tests.jobs.test_analysis import CONFIG, run_scenario
    from tests.jobs.test_analysis import T0 as SCENARIO_T0

    model_id, _, _ = run_scenario(engine, "quality", windows=1, per_node=250)
    with engine.connect() as conn:
        model = get_model(conn, MODEL_NAME)
    window = Window(SCENARIO_T0, SCENARIO_T0 + CONFIG.window)
    worker = Worker(engine, CONFIG)
    analysed = analyse_window(worker._load(model, window, pooled=False), AnalysisPolicy())
    with begin_write(engine) as conn:
        results.save_window(
            conn,
            model_id,
            window.start,
            window.end,
            analysed.results,
            model_version_id=analysed.model_version_id,
            n_reference=analysed.n_reference,
        )
    with engine.connect() as conn:
        stored = results.window(conn, model_id, window.start)
    assert stored is not None
    rules = [
        Rule("a", "scope_drift", MODEL_NAME, scope="each_node"),
        Rule("b", "feature_drift", MODEL_NAME, {"feature": "temperature_c"}, scope="site"),
        Rule("c", "share_drifted", MODEL_NAME, {"min_share": 0.1}, scope="group"),
        Rule("d", "prediction_drift", MODEL_NAME),
        Rule("e", "quality", MODEL_NAME, {"figure": "missing_share", "above": 0.05}, "each_node"),
        Rule("f", "quality", MODEL_NAME, {"figure": "out_of_range_share", "above": 0.01}),
        Rule("g", "performance", MODEL_NAME, {"metric": "accuracy", "below": 0.9}, "site"),
    ]

    def judged(figures) -> list[tuple]:
        out = evaluate(figures, rules)
        values = [None if v != v else round(float(v), 9) for v in out["value"]]
        return sorted(
            zip(out["rule"], out["subject"], out["state"], values, strict=True),
            key=lambda row: row[:3],
        )

    from_columns = judged(figures_from(analysed.results, window.start, window.end))
    read_back = judged(figures_of(stored))
    assert from_columns == read_back
    assert {state for *_, state, _ in read_back} >= {"breach", "clear"}


def test_two_workers_judging_two_windows_at_once_open_one_alert(engine: Engine) -> None:
    import threading
    import time

    from monitor.jobs.alerts import evaluate_window
    from tests.alerts.windows import save, start

    model_id = fleet(engine, SITES)
    vibration_rule(engine)
    drifting = {n: ["vibration_mm_s"] for n in NODES if n.startswith("hot")}
    first_judged = threading.Event()
    failures: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            if i == 1:
                first_judged.wait()
            with begin_write(engine) as conn:
                save(conn, model_id, i, node_list=NODES, drifting=drifting)
                evaluate_window(conn, model_id, start(i), now=start(2))
                if i == 0:
                    first_judged.set()
                    time.sleep(0.3)  # the other worker is judging too, before this commits
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
            first_judged.set()

    threads = [threading.Thread(target=worker, args=(i,)) for i in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    [alert] = all_alerts(engine)
    assert [e.kind for e in events(engine, alert.id)] == ["fired"]


def test_an_accuracy_drop_is_judged_against_the_version_s_own_reference_figure(
    engine: Engine,
) -> None:
    from monitor.demo_model import MODEL_NAME
    from monitor.jobs.alerts import _reference_figures
    from monitor.storage import nodes
    from monitor.storage.models import version_id
    from tests.jobs.fleetdata import register_demo_model

    model_id = register_demo_model(engine)
    with begin_write(engine) as conn:
        version = version_id(conn, model_id, "1")
        for name in NODES:
            nodes.add_node(conn, name, site=name.rsplit("-", 1)[0])
        # Measured on the reference data's labels and predictions (the card says 0.9564 on
        # its held-out rows).
        reference = _reference_figures(conn, model_id, version)
    assert 0.9 < reference["accuracy"] < 1.0
    assert set(reference) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    add_rule(
        engine,
        name="drop",
        model=MODEL_NAME,
        kind="performance_drop",
        params={"metric": "accuracy", "drop": 0.05},
    )

    kept = store(
        engine,
        model_id,
        0,
        node_list=NODES,
        performance={("fleet", ""): (2000, reference["accuracy"] - 0.01)},
        version_id=version,
    )
    dropped = store(
        engine,
        model_id,
        1,
        node_list=NODES,
        performance={("fleet", ""): (2000, reference["accuracy"] - 0.15)},
        version_id=version,
    )

    assert kept == []
    [fired] = dropped
    data = fired.event.payload["data"]
    assert data["bound"] == pytest.approx(reference["accuracy"] - 0.05)
    assert data["details"]["reference"] == pytest.approx(reference["accuracy"])


def test_late_labels_judge_the_window_s_performance_rules_again(engine: Engine) -> None:
    from monitor.demo_model import MODEL_NAME
    from monitor.jobs.analysis import Worker
    from tests.jobs.fleetdata import send_labels
    from tests.jobs.test_analysis import CONFIG, NOW, run_scenario

    model_id, _, stored = run_scenario(engine, "steady", windows=1, per_node=250)
    add_rule(
        engine,
        name="accuracy",
        model=MODEL_NAME,
        kind="performance",
        # Labels alone: the window's estimate (below 0.995 too) would fire it before they came.
        params={"metric": "accuracy", "below": 0.995, "estimated": False},
    )
    worker = Worker(engine, CONFIG, clock=lambda: NOW)
    assert worker.run_due(now=NOW) == 1
    assert all_alerts(engine) == []  # no labels yet: unknown

    send_labels(engine, model_id, stored[0])
    assert worker.refresh_performance(now=NOW) == 1

    [alert] = all_alerts(engine)
    assert alert.group_key == "fleet" and alert.rule == "accuracy"


def test_a_steady_simulated_fleet_analysed_over_100_windows_raises_no_alert(
    engine: Engine,
) -> None:
    """The real thing: steady readings of 8 nodes, labelled, analysed window by window by the
    worker with rules as a user would write them; no window may page anyone."""
    from monitor.demo_model import MODEL_NAME
    from monitor.fleet.scenarios import scenario
    from monitor.jobs.analysis import Worker
    from tests.jobs.fleetdata import (
        WINDOW,
        register_demo_model,
        register_fleet,
        send_labels,
        store_readings,
    )
    from tests.jobs.test_analysis import CONFIG
    from tests.jobs.test_analysis import T0 as DATA_T0

    windows = 100
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 8)
    plan = scenario("steady", hours=24.0 * windows, sites=["site-a"])
    every = {"model": MODEL_NAME, "fire_m": 2, "fire_n": 3}
    add_rule(engine, name="site drift", kind="scope_drift", scope="site", **every)
    add_rule(
        engine, name="node drift", kind="scope_drift", scope="each_node", group_by="site", **every
    )
    add_rule(engine, name="prediction drift", kind="prediction_drift", **every)
    add_rule(
        engine,
        name="accuracy",
        model=MODEL_NAME,
        kind="performance",
        params={"metric": "accuracy", "below": 0.85},
    )
    for i in range(windows):
        start_at = DATA_T0 + i * WINDOW
        stored = store_readings(
            engine, model_id, plans, plan, start_at, start_at + WINDOW, 120, t0=DATA_T0
        )
        send_labels(engine, model_id, stored, share=0.5)

    worker = Worker(engine, CONFIG, clock=lambda: now)
    now = DATA_T0 + windows * WINDOW + timedelta(hours=1)
    assert worker.run_due(now=now) == windows

    assert all_alerts(engine) == []
    with engine.connect() as conn:
        judged = conn.execute(
            select(func.count()).select_from(alerts_tables.alert_evaluations)
        ).scalar_one()
    assert judged == 4 * windows  # every rule judged every window
