"""Per-node and per-site baselines in the scheduled analysis: a fleet whose furnace hall runs
20 degC hotter than the reference by design, judged by workers, verdicts read back from the
result tables with the reference each one used."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from monitor.fleet.machines import SensorDrift
from monitor.fleet.scenarios import CLIMATE, NodePlan
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.storage import nodes, results
from monitor.storage.baselines import BaselineSetting, set_baseline
from monitor.storage.engine import begin_write
from monitor.storage.results import WindowResults
from tests.jobs.fleetdata import SIM_HOURS_PER_SECOND, register_demo_model, store_readings

T0 = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
#: Day-long windows, so that a baseline of one day is one window.
CONFIG = AnalysisConfig(window=DAY, grace=timedelta(minutes=1), lookback=timedelta(days=30))
COLD = [NodePlan(f"cold-{i}", "cold-room", "cold-room/line-1") for i in (1, 2)]
HOT = [NodePlan(f"hot-{i}", "furnace-hall", "furnace-hall/line-1") for i in (1, 2)]
FLEET = COLD + HOT


@dataclass(frozen=True)
class Halls:
    """Furnace-hall nodes read 20 degC hotter than the reference from the start; ``shifted``
    reads 15 degC hotter than itself from window ``shift_window`` on."""

    shifted: str | None = None
    shift_window: int = 0

    def knobs(self, node: NodePlan, hour: float) -> dict[str, Any]:
        offset = 20.0 if node.site == "furnace-hall" else 0.0
        start = 0.0
        if node.name == self.shifted:
            offset += 15.0
            start = self.shift_window * DAY.total_seconds() * SIM_HOURS_PER_SECOND
        drift = SensorDrift(offset=offset, start_hour=start) if offset else None
        return {"site": CLIMATE, "sensor_drift": {"temperature_c": drift} if drift else {}}


def fleet(engine: Engine, windows: int, halls: Halls = Halls()) -> int:
    """The demo model and four nodes (two per hall), ``windows`` days of 300 readings each."""
    model_id = register_demo_model(engine)
    with begin_write(engine) as conn:
        for plan in FLEET:
            nodes.add_node(conn, plan.name, group_name=plan.group, site=plan.site)
    for i in range(windows):
        start = T0 + i * DAY
        store_readings(engine, model_id, FLEET, halls, start, start + DAY, 300, t0=T0)  # type: ignore[arg-type]
    return model_id


def analyse(engine: Engine, windows: int) -> int:
    return Worker(engine, CONFIG).run_due(now=T0 + windows * DAY + timedelta(hours=1))


def window(engine: Engine, model_id: int, number: int) -> WindowResults:
    with engine.connect() as conn:
        found = results.window(conn, model_id, T0 + number * DAY)
    assert found is not None
    return found


def test_per_node_baselines_keep_the_hot_hall_quiet_and_catch_a_node_that_shifts(
    engine: Engine,
) -> None:
    model_id = fleet(engine, 5, Halls(shifted="cold-2", shift_window=4))
    with begin_write(engine) as conn:
        set_baseline(conn, model_id, BaselineSetting("node", days=1))

    assert analyse(engine, 5) == 5

    # A node's day starts with its first record (after midnight), so it ends in window 1:
    # windows 0 and 1 overlap the baseline period and get no verdict.
    for number in (0, 1):
        collecting = window(engine, model_id, number)
        for plan in FLEET:
            row = collecting.drift_of("node", plan.name)
            assert row.result.status == "insufficient_data"
            assert row.result.drifted is None
            assert row.reference is not None
            assert row.reference.startswith(f"baseline node {plan.name}: 2026-11-20T")
            assert "..2026-11-21T" in row.reference
            assert row.reference.endswith(" (collecting)")
    for number in (2, 3):  # steady: neither hall is flagged against its own baselines
        steady = window(engine, model_id, number)
        for plan in FLEET:
            row = steady.drift_of("node", plan.name)
            assert row.result.drifted is False, (number, plan.name)
            assert row.reference is not None
            assert row.reference.startswith(f"baseline node {plan.name}: 2026-11-20T")
            assert "..2026-11-21T" in row.reference
            assert not row.reference.endswith("(collecting)")
    shifted = window(engine, model_id, 4)
    assert "temperature_c" in shifted.drifted_features("node", "cold-2")
    assert [s.scope_key for s in shifted.drifting_scopes("node")] == ["cold-2"]
    # The fleet, groups and sites keep the version's reference, where the hot hall differs.
    assert shifted.drift_of().reference == "version 1"
    assert shifted.drift_of("site", "furnace-hall").reference == "version 1"
    assert "temperature_c" in shifted.drifted_features("site", "furnace-hall")
    assert shifted.quality_of("node", "cold-2").reference == "version 1"


def test_the_shared_reference_flags_the_hot_hall_in_every_window(engine: Engine) -> None:
    model_id = fleet(engine, 2)

    assert analyse(engine, 2) == 2

    for number in (0, 1):
        found = window(engine, model_id, number)
        for plan in HOT:
            assert "temperature_c" in found.drifted_features("node", plan.name)
        for plan in COLD:
            assert found.drift_of("node", plan.name).result.drifted is False
        assert {s.reference for s in found.drift} == {"version 1"}


def test_per_site_baselines_of_rows_judge_each_site_and_its_nodes(engine: Engine) -> None:
    model_id = fleet(engine, 2)
    with begin_write(engine) as conn:
        # Two nodes of 300 readings a day: a site's first 600 records are its first day.
        set_baseline(conn, model_id, BaselineSetting("site", rows=600))

    assert analyse(engine, 2) == 2

    first = window(engine, model_id, 0)
    for site, plans in (("cold-room", COLD), ("furnace-hall", HOT)):
        assert first.drift_of("site", site).result.drifted is None
        for plan in plans:
            assert first.drift_of("node", plan.name).result.status == "insufficient_data"
    second = window(engine, model_id, 1)
    for site, plans in (("cold-room", COLD), ("furnace-hall", HOT)):
        row = second.drift_of("site", site)
        assert row.result.drifted is False, site
        assert row.reference is not None
        assert row.reference.startswith(f"baseline site {site}: 2026-11-20T")
        assert "..2026-11-20T23:" in row.reference  # just after its 600th record
        for plan in plans:
            node = second.drift_of("node", plan.name)
            assert node.result.drifted is False, plan.name
            assert node.reference == row.reference
    assert second.drift_of().reference == "version 1"
    assert second.drift_of().result.drifted is True  # the fleet still sees the hot hall


def test_a_model_back_on_the_shared_reference_names_its_version_everywhere(
    engine: Engine,
) -> None:
    model_id = fleet(engine, 2)
    with begin_write(engine) as conn:
        set_baseline(conn, model_id, BaselineSetting("node", rows=300))
        set_baseline(conn, model_id, None)

    analyse(engine, 2)

    found = window(engine, model_id, 1)
    assert {s.reference for s in found.drift} == {"version 1"}
    assert all("temperature_c" in found.drifted_features("node", p.name) for p in HOT)
    assert {s.reference for s in found.quality} == {"version 1"}
