"""Each scenario produces the shift it promises, where it promises it; steady produces none."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitor.fleet.machines import NUMERIC_FEATURES, MachineFleetGenerator, Readings
from monitor.fleet.scenarios import NodePlan, Scenario, plan_fleet, scenario

HOURS = 72.0  # three simulated days: before and after the change both span whole days
N = 4_000


def sample(plan: Scenario, node: NodePlan, start: float, end: float) -> Readings:
    generator = MachineFleetGenerator(seed=11).child(node.name + str(start))
    return generator.readings(N, start_hour=start, hours=end - start, **plan.knobs(node, start))


def before_and_after(plan: Scenario, node: NodePlan) -> tuple[Readings, Readings]:
    """Readings before the onset and after the change is complete."""
    return (
        sample(plan, node, 0.0, plan.onset_hour),
        sample(plan, node, plan.onset_hour + plan.ramp_hours, plan.hours),
    )


def shifted(before: Readings, after: Readings, feature: str) -> float:
    """The p-value of 'the same distribution' for one feature (KS, or chi-square for types)."""
    a, b = before.features[feature], after.features[feature]
    if feature == "machine_type":
        kinds = sorted(set(a) | set(b))
        table = [[int(np.sum(a == k)) for k in kinds], [int(np.sum(b == k)) for k in kinds]]
        return float(stats.chi2_contingency(table).pvalue)
    return float(stats.ks_2samp(a[~np.isnan(a)], b[~np.isnan(b)]).pvalue)


@pytest.fixture
def fleet() -> list[NodePlan]:
    return plan_fleet(8, sites=4)


def test_the_fleet_plan_spreads_nodes_over_sites_and_lines(fleet: list[NodePlan]) -> None:
    assert [n.site for n in fleet[:5]] == ["site-a", "site-b", "site-c", "site-d", "site-a"]
    assert {n.group for n in fleet if n.site == "site-a"} == {"site-a/line-1", "site-a/line-2"}
    assert len({n.name for n in fleet}) == 8


def test_steady_changes_nothing(fleet: list[NodePlan]) -> None:
    plan = scenario("steady", HOURS, ["site-a"])
    before, after = before_and_after(plan, fleet[0])

    for feature in (*NUMERIC_FEATURES, "machine_type"):
        assert shifted(before, after, feature) > 1e-3, feature


def test_sensor_drift_moves_the_sensors_at_the_affected_site_only(fleet: list[NodePlan]) -> None:
    plan = scenario("sensor-drift", HOURS, ["site-a"])
    hit, spared = fleet[0], fleet[1]
    before, after = before_and_after(plan, hit)

    for feature in plan.shifted_features():
        assert shifted(before, after, feature) < 1e-6, feature
    assert (
        np.nanmean(after.features["temperature_c"])
        > np.nanmean(before.features["temperature_c"]) + 8
    )
    for feature in ("rpm", "power_kw", "ambient_temp_c"):
        assert shifted(before, after, feature) > 1e-3, feature
    calm_before, calm_after = before_and_after(plan, spared)
    assert shifted(calm_before, calm_after, "temperature_c") > 1e-3


def test_a_sudden_shift_changes_the_machine_mix_everywhere(fleet: list[NodePlan]) -> None:
    plan = scenario("sudden-shift", HOURS, ["site-a"])

    for node in (fleet[0], fleet[3]):
        before, after = before_and_after(plan, node)
        assert shifted(before, after, "machine_type") < 1e-6
        assert "conveyor" in set(after.features["machine_type"])
        assert "conveyor" not in set(before.features["machine_type"])


def test_quality_bursts_bring_missing_and_out_of_range_readings(fleet: list[NodePlan]) -> None:
    plan = scenario("quality", HOURS, ["site-a"])
    burst = sample(plan, fleet[0], plan.onset_hour, plan.onset_hour + HOURS / 10)
    clean = sample(plan, fleet[0], 0.0, plan.onset_hour)

    assert np.isnan(burst.features["vibration_mm_s"]).mean() > 0.4
    assert (burst.features["temperature_c"] > 200).mean() > 0.25
    assert np.isnan(clean.features["vibration_mm_s"]).mean() == 0
    assert (clean.features["temperature_c"] > 200).mean() == 0


def test_concept_drift_changes_failures_but_not_inputs(fleet: list[NodePlan]) -> None:
    plan = scenario("concept-drift", HOURS, ["site-a"])
    before, after = before_and_after(plan, fleet[0])

    for feature in (*NUMERIC_FEATURES, "machine_type"):
        assert shifted(before, after, feature) > 1e-3, feature

    # Failures stop following wear (bearing mode) and follow humidity and load (seal mode).
    def corr(readings: Readings, column: np.ndarray) -> float:
        return float(np.corrcoef(column, readings.failure.astype(float))[0, 1])

    assert corr(before, before.wear) > corr(after, after.wear) + 0.1
    assert corr(after, after.features["humidity_pct"]) > corr(
        before, before.features["humidity_pct"]
    )


def test_unknown_scenarios_and_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario("meteor", HOURS, ["site-a"])
    with pytest.raises(ValueError, match="positive duration"):
        scenario("steady", 0, ["site-a"])
