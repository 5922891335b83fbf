"""Scheduled analysis end to end: simulated fleets stored in SQL, windows analysed by workers,
verdicts read back from the result tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from monitor.fleet.scenarios import scenario
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.storage import results
from tests.jobs.fleetdata import (
    WINDOW,
    register_demo_model,
    register_fleet,
    store_readings,
)

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(minutes=1), lookback=timedelta(days=30))
NOW = T0 + timedelta(days=1)


def run_scenario(engine: Engine, name: str, windows: int = 3, per_node: int = 300):
    model_id = register_demo_model(engine)
    plans = register_fleet(engine, 8)
    plan = scenario(name, hours=24.0 * windows, sites=["site-a"])
    stored = []
    for i in range(windows):
        start = T0 + i * WINDOW
        stored.append(
            store_readings(engine, model_id, plans, plan, start, start + WINDOW, per_node, t0=T0)
        )
    return model_id, plans, stored


def drifted(engine: Engine, model_id: int, window: int, scope_kind: str) -> dict[str, list[str]]:
    """Drifted features per scope key, in window number ``window``."""
    start = T0 + window * WINDOW
    with engine.connect() as conn:
        stored = results.window(conn, model_id, start)
    assert stored is not None
    return {
        s.scope_key: stored.drifted_features(scope_kind, s.scope_key)
        for s in stored.drift
        if s.scope_kind == scope_kind
    }


def test_sensor_drift_is_flagged_at_the_affected_site_and_fleet_wide(engine: Engine) -> None:
    model_id, plans, _ = run_scenario(engine, "sensor-drift")

    analysed = Worker(engine, CONFIG).run_due(now=NOW)

    assert analysed == 3
    last = 2  # the drift is complete in the third window
    sites = drifted(engine, model_id, last, "site")
    assert {"temperature_c", "vibration_mm_s"} <= set(sites["site-a"])
    assert all(not sites[s] for s in ("site-b", "site-c", "site-d")), sites
    assert "temperature_c" in drifted(engine, model_id, last, "fleet")[""]
    node_verdicts = drifted(engine, model_id, last, "node")
    affected = [p.name for p in plans if p.site == "site-a"]
    assert all("temperature_c" in node_verdicts[n] for n in affected)
    assert all(not node_verdicts[p.name] for p in plans if p.site != "site-a"), node_verdicts
    assert drifted(engine, model_id, 0, "site") == {s: [] for s in sites}


def test_a_sudden_shift_is_flagged_everywhere(engine: Engine) -> None:
    model_id, _, _ = run_scenario(engine, "sudden-shift")

    Worker(engine, CONFIG).run_due(now=NOW)

    assert "machine_type" in drifted(engine, model_id, 2, "fleet")[""]
    assert all(
        "machine_type" in features for features in drifted(engine, model_id, 2, "site").values()
    )


def test_a_steady_fleet_stays_quiet_window_after_window(engine: Engine) -> None:
    model_id, _, _ = run_scenario(engine, "steady", windows=4)

    Worker(engine, CONFIG).run_due(now=NOW)

    with engine.connect() as conn:
        runs = results.drift(conn, model_id)
        flagged = results.features(conn, "drift", [r.id for r in runs])
    alarms = [
        (r.scope_kind, r.scope_key, f.feature) for r in runs for f in flagged[r.id] if f.drifted
    ]
    assert len(runs) == 4 * (1 + 4 + 8 + 8)
    assert alarms == []
    assert not any(r.result.drifted for r in runs)
