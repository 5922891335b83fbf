"""The machine-readings generator: reproducible, failure rate in its band, knobs do their job."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.fleet.machines import (
    DEFAULT_MIX,
    FAILURE_RATE_BAND,
    FEATURE_NAMES,
    FEATURES,
    MACHINE_TYPES,
    NUMERIC_FEATURES,
    MachineFleetGenerator,
    Readings,
    SensorDrift,
    SensorFault,
)

N = 20_000


def same(a: Readings, b: Readings) -> bool:
    return (
        np.array_equal(a.t_hours, b.t_hours)
        and np.array_equal(a.failure, b.failure)
        and all(
            np.array_equal(a.features[k], b.features[k], equal_nan=k != "machine_type")
            for k in FEATURE_NAMES
        )
    )


def test_the_same_seed_and_calls_give_the_same_data() -> None:
    a, b = MachineFleetGenerator(7), MachineFleetGenerator(7)
    for _ in range(2):  # successive calls continue the stream the same way
        assert same(a.readings(500, concept=0.3), b.readings(500, concept=0.3))
    assert not same(MachineFleetGenerator(7).readings(500), MachineFleetGenerator(8).readings(500))


def test_child_streams_depend_on_seed_and_key_only() -> None:
    gen = MachineFleetGenerator(7)
    gen.readings(100)  # the parent's own use does not shift its children
    assert same(
        gen.child("node-1").readings(300), MachineFleetGenerator(7).child("node-1").readings(300)
    )
    assert not same(gen.child("node-1").readings(300), gen.child("node-2").readings(300))


def test_readings_are_physically_plausible_and_in_sensor_range() -> None:
    r = MachineFleetGenerator(1).readings(N)
    assert len(r) == N and list(r.features) == list(FEATURE_NAMES)
    assert np.all(np.diff(r.t_hours) >= 0)
    for f in FEATURES:
        values = r.features[f.name]
        if f.categorical:
            assert set(values.tolist()) == set(DEFAULT_MIX)
        else:
            assert np.all((values >= f.low) & (values <= f.high)), f.name
            assert np.array_equal(values, np.round(values, f.decimals)), f.name
    x = r.features
    # Machines run hotter than the air around them, and power grows with load.
    assert np.mean(x["temperature_c"] > x["ambient_temp_c"]) > 0.99
    assert (
        np.corrcoef(
            x["load_pct"],
            x["power_kw"] / np.array([MACHINE_TYPES[t].power_kw for t in x["machine_type"]]),
        )[0, 1]
        > 0.8
    )
    # Wear (hidden) shows in vibration; the day is warmer than the night.
    assert np.corrcoef(r.wear, x["vibration_mm_s"])[0, 1] > 0.5
    hour = np.mod(r.t_hours, 24)
    afternoon = x["ambient_temp_c"][(hour > 12) & (hour < 18)].mean()
    night = x["ambient_temp_c"][(hour < 6)].mean()
    assert afternoon > night + 5


@pytest.mark.parametrize("concept", [0.0, 1.0])
def test_the_failure_rate_is_within_its_documented_band(concept: float) -> None:
    rate = MachineFleetGenerator(2).readings(N, concept=concept).failure.mean()
    assert FAILURE_RATE_BAND[0] <= rate <= FAILURE_RATE_BAND[1]


def test_failures_follow_the_hidden_process() -> None:
    r = MachineFleetGenerator(3).readings(N)
    worn = r.wear > 0.8
    assert r.failure[worn].mean() > 3 * r.failure[~worn].mean()
    # The label is drawn from p_failure: calibrated in the large.
    assert abs(r.failure.mean() - r.p_failure.mean()) < 0.01


def test_machine_mix_sets_the_type_shares() -> None:
    r = MachineFleetGenerator(4).readings(N, machine_mix={"pump": 3, "fan": 1})
    types = r.features["machine_type"]
    assert set(types.tolist()) == {"pump", "fan"}
    assert np.mean(types == "pump") == pytest.approx(0.75, abs=0.02)


def test_site_moves_the_climate() -> None:
    gen = MachineFleetGenerator(5)
    temperate, hot = gen.readings(N, site="temperate"), gen.readings(N, site="hot-humid")
    assert hot.features["ambient_temp_c"].mean() - temperate.features["ambient_temp_c"].mean() == (
        pytest.approx(15.0, abs=0.5)
    )
    assert hot.features["humidity_pct"].mean() > temperate.features["humidity_pct"].mean() + 10


def test_sensor_drift_ramps_the_observed_value_but_not_the_label() -> None:
    drift = {"temperature_c": SensorDrift(offset=6.0, gain=0.1, start_hour=24.0, ramp_hours=48.0)}
    clean = MachineFleetGenerator(6).readings(N, hours=96.0)
    drifted = MachineFleetGenerator(6).readings(N, hours=96.0, sensor_drift=drift)
    delta = drifted.features["temperature_c"] - clean.features["temperature_c"]
    t = clean.t_hours
    assert np.abs(delta[t < 24.0]).max() <= 0.05  # rounding only, before the drift starts
    expected_full = 6.0 + 0.1 * clean.features["temperature_c"][t > 72.0]
    assert np.abs(delta[t > 72.0] - expected_full).max() < 0.2
    middle = (t > 47.0) & (t < 49.0)  # half way up the ramp
    assert np.median(delta[middle] / (6.0 + 0.1 * clean.features["temperature_c"][middle])) == (
        pytest.approx(0.5, abs=0.05)
    )
    assert np.array_equal(clean.failure, drifted.failure)
    for name in NUMERIC_FEATURES:
        if name != "temperature_c":
            assert np.array_equal(clean.features[name], drifted.features[name])


def test_faults_blank_or_break_readings_inside_their_burst_only() -> None:
    faults = [
        SensorFault("vibration_mm_s", "missing", start_hour=10.0, hours=5.0),
        SensorFault("pressure_bar", "out_of_range", start_hour=0.0, hours=24.0, rate=0.5),
        SensorFault("machine_type", "missing", start_hour=20.0, hours=2.0),
    ]
    r = MachineFleetGenerator(7).readings(N, hours=48.0, faults=faults)
    t = r.t_hours
    burst = (t >= 10.0) & (t < 15.0)
    assert np.all(np.isnan(r.features["vibration_mm_s"][burst]))
    assert not np.any(np.isnan(r.features["vibration_mm_s"][~burst]))
    broken = r.features["pressure_bar"] > 400.0
    assert not np.any(broken[t >= 24.0])
    assert np.mean(broken[t < 24.0]) == pytest.approx(0.5, abs=0.03)
    types = r.features["machine_type"]
    assert all(v is None for v in types[(t >= 20.0) & (t < 22.0)])
    rows = r.rows()
    assert rows[int(np.argmax(burst))]["vibration_mm_s"] is None
    with pytest.raises(ValueError, match="no range"):
        MachineFleetGenerator(0).readings(10, faults=[SensorFault("machine_type", "out_of_range")])


def test_concept_changes_who_fails_while_the_inputs_stay_put() -> None:
    base = MachineFleetGenerator(8).readings(N, concept=0.0)
    shifted = MachineFleetGenerator(8).readings(N, concept=1.0)
    for name in NUMERIC_FEATURES:  # identical draws: the inputs do not move at all
        assert np.array_equal(base.features[name], shifted.features[name])

    # Under the old concept wear explains failures; under the new one it barely does,
    # while humidity does.
    def corr(r: Readings, x: np.ndarray) -> float:
        return float(np.corrcoef(x, r.p_failure)[0, 1])

    assert corr(base, base.wear) > 0.5 > 0.1 > corr(shifted, shifted.wear)
    humidity = base.features["humidity_pct"]
    assert corr(shifted, humidity) > corr(base, humidity) + 0.3


def test_bad_knobs_are_refused() -> None:
    gen = MachineFleetGenerator(0)
    with pytest.raises(ValueError, match="site"):
        gen.readings(10, site="mars")
    with pytest.raises(ValueError, match="machine_mix"):
        gen.readings(10, machine_mix={"robot": 1.0})
    with pytest.raises(ValueError, match="concept"):
        gen.readings(10, concept=1.5)
    with pytest.raises(ValueError, match="numeric"):
        gen.readings(10, sensor_drift={"machine_type": SensorDrift(offset=1.0)})
