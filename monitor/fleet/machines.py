"""A seeded, physically plausible generator of industrial machine sensor readings and failures.

Each reading is one machine seen at one moment: its type, the site's climate, how hard it runs,
what its sensors say, and whether it fails within the next 7 days (the label). The physics is
deliberately simple but causal, so drift has plausible consequences:

* **Climate.** Ambient temperature follows the site's mean plus a day/night sine (peak at 15:00)
  plus noise; relative humidity falls as the air warms.
* **Operation.** Load is a per-type Beta share of full load; fixed-speed machines (pump, press,
  compressor, conveyor) run near nominal rpm with a little slip, variable-speed ones (lathe,
  fan) scale rpm with load. Power draw is proportional to load x speed, plus friction losses
  that grow with wear. Pressure follows load and sags as seals wear.
* **Wear.** Hidden: ``(operating_hours / service_life)^2`` times a per-machine lognormal factor
  (some machines age badly). Worn bearings raise vibration (quadratically), friction heating
  raises temperature, and both raise the acoustic level.
* **Failure** (the label, ~5-15% positives with the default site and mix, documented band
  ``FAILURE_RATE_BAND``): Bernoulli of a hidden probability. The *baseline* mode is wear
  amplified by overheating above the machine's temperature alarm and by vibration above its
  ISO-10816-style alarm level, with a wear x vibration interaction. A second, *seal* mode
  (humid air, high pressure and high load degrade seals whatever the wear) is the concept-drift
  knob: ``concept=s`` mixes the modes, ``p = (1 - s) p_baseline + s p_seal``, which changes
  the input -> label relation while the inputs do not move at all.

Sensor drift and faults are applied to the *observed* readings after the label is drawn: a
miscalibrated sensor does not change whether the machine fails.

Typical use (a fleet simulator generates per node)::

    gen = MachineFleetGenerator(seed=7)
    node = gen.child("node-17")              # an independent, reproducible stream per node
    batch = node.readings(
        1_000,
        start_hour=48.0, hours=24.0,         # the time span the readings cover
        site="hot-humid",                    # or a Site(...)
        machine_mix={"pump": 3, "fan": 1},   # weights, normalised
        sensor_drift={"temperature_c": SensorDrift(offset=4.0, ramp_hours=72.0)},
        faults=[SensorFault("vibration_mm_s", "missing", start_hour=60.0, hours=2.0)],
        concept=0.5,
    )
    batch.rows()      # list of feature dicts (None where missing), in FEATURE_NAMES order
    batch.labels()    # "fail" / "ok"

Same seed and the same sequence of calls give the same data, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

#: Label values: the positive class first.
FAIL, OK = "fail", "ok"
#: Share of failures with the default site and machine mix at ``concept=0`` (and at 1).
FAILURE_RATE_BAND = (0.05, 0.15)
#: How far ahead the label looks.
LABEL_HORIZON_DAYS = 7


@dataclass(frozen=True)
class Feature:
    """One observed column: its unit, the sensor's measuring range and its resolution."""

    name: str
    unit: str | None
    low: float | None = None  # None: categorical
    high: float | None = None
    decimals: int = 0

    @property
    def categorical(self) -> bool:
        return self.low is None


#: The observed columns, in the order a model takes them. Ranges are the instruments' measuring
#: ranges: a value outside is a faulty reading, not a rare one.
FEATURES: tuple[Feature, ...] = (
    Feature("machine_type", None),
    Feature("ambient_temp_c", "degC", -40.0, 60.0, 1),
    Feature("humidity_pct", "%RH", 0.0, 100.0, 1),
    Feature("rpm", "1/min", 0.0, 6000.0, 0),
    Feature("load_pct", "%", 0.0, 120.0, 1),
    Feature("temperature_c", "degC", -40.0, 200.0, 1),
    Feature("vibration_mm_s", "mm/s RMS", 0.0, 50.0, 2),
    Feature("pressure_bar", "bar", 0.0, 400.0, 3),
    Feature("power_kw", "kW", 0.0, 250.0, 2),
    Feature("acoustic_db", "dB(A)", 20.0, 140.0, 1),
    Feature("operating_hours", "h", 0.0, 200_000.0, 0),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if not f.categorical)
_BY_NAME = {f.name: f for f in FEATURES}


@dataclass(frozen=True)
class MachineSpec:
    """Nominal behaviour of one machine type (a healthy machine at full load)."""

    rpm: float  # nominal speed, 1/min
    variable_speed: bool  # speed follows load (a drive) instead of staying near nominal
    power_kw: float  # rated electrical power
    pressure_bar: float  # nominal reading of the machine's main pressure sensor
    heat_rise_c: float  # surface temperature above ambient at full load, when new
    vibration_mm_s: float  # RMS vibration when healthy, at nominal speed
    acoustic_db: float  # sound level when healthy, at nominal speed
    service_life_h: float  # operating hours at which the wear index reaches 1
    load_beta: tuple[float, float]  # Beta(a, b) of the load share
    temp_alarm_c: float  # surface temperature above which heat damages the machine
    vibration_alarm_mm_s: float  # vibration above which bearings deteriorate fast


#: Machine types. ``conveyor`` is not in ``DEFAULT_MIX``: a model trained on the default mix
#: has never seen it (an unknown category when a fleet adds conveyors).
MACHINE_TYPES: dict[str, MachineSpec] = {
    "pump": MachineSpec(1480, False, 15.0, 6.0, 28, 1.8, 78, 40_000, (5, 3), 75, 4.5),
    "press": MachineSpec(1000, False, 30.0, 180.0, 32, 3.0, 88, 30_000, (4, 4), 80, 7.1),
    "lathe": MachineSpec(2200, True, 11.0, 4.0, 22, 1.2, 75, 50_000, (3, 4), 65, 2.8),
    "compressor": MachineSpec(2950, False, 22.0, 8.5, 45, 2.5, 85, 35_000, (6, 3), 95, 4.5),
    "fan": MachineSpec(960, True, 5.5, 0.05, 12, 2.2, 72, 60_000, (5, 4), 55, 4.5),
    "conveyor": MachineSpec(1450, False, 4.0, 5.0, 15, 1.5, 70, 45_000, (4, 3), 60, 4.5),
}
#: The machine-type weights a model is trained on.
DEFAULT_MIX: dict[str, float] = {
    "pump": 0.35,
    "press": 0.15,
    "lathe": 0.2,
    "compressor": 0.2,
    "fan": 0.1,
}


@dataclass(frozen=True)
class Site:
    """A site's climate: mean ambient temperature, day/night swing, mean relative humidity."""

    name: str
    temp_c: float
    day_night_c: float  # amplitude of the daily sine (half the peak-to-trough range)
    humidity_pct: float


#: Preset sites; ``temperate`` is the default (and the demo model's training site).
SITES: dict[str, Site] = {
    "temperate": Site("temperate", 15.0, 5.0, 65.0),
    "hot-humid": Site("hot-humid", 30.0, 4.0, 82.0),
    "cold-dry": Site("cold-dry", -2.0, 4.0, 45.0),
    "desert": Site("desert", 33.0, 11.0, 20.0),
}


@dataclass(frozen=True)
class SensorDrift:
    """A sensor's calibration error, growing over time.

    ``observed = true * (1 + gain * f) + offset * f`` where ``f`` ramps linearly from 0 at
    ``start_hour`` to 1 at ``start_hour + ramp_hours`` (a step at ``start_hour`` when
    ``ramp_hours`` is 0) and stays at 1 after.
    """

    offset: float = 0.0  # in the feature's unit, at full effect
    gain: float = 0.0  # relative, at full effect (0.1 reads 10% high)
    start_hour: float = 0.0
    ramp_hours: float = 0.0

    def factor(self, t: np.ndarray) -> np.ndarray:
        if self.ramp_hours <= 0:
            return (t >= self.start_hour).astype(float)
        return np.clip((t - self.start_hour) / self.ramp_hours, 0.0, 1.0)


@dataclass(frozen=True)
class SensorFault:
    """A burst of bad readings of one feature in ``[start_hour, start_hour + hours)``.

    ``kind="missing"``: the value is absent (NaN in ``features``, None in ``rows()``).
    ``kind="out_of_range"``: the sensor reports past its measuring range (5-50% of the range
    above its top, like a disconnected thermocouple); numeric features only.
    ``rate`` is the share of readings in the burst that are affected.
    """

    feature: str
    kind: Literal["missing", "out_of_range"]
    start_hour: float = 0.0
    hours: float = math.inf
    rate: float = 1.0


@dataclass(frozen=True)
class Readings:
    """Generated readings, column-wise.

    ``features`` maps each of ``FEATURE_NAMES`` to an array: float64 for numeric features (NaN
    where missing), object (str, or None where missing) for ``machine_type``. ``failure`` is
    the label; ``p_failure`` the hidden probability it was drawn from and ``wear`` the hidden
    wear index (ground truth for analysis, not model inputs).
    """

    t_hours: np.ndarray
    features: dict[str, np.ndarray]
    failure: np.ndarray
    p_failure: np.ndarray
    wear: np.ndarray

    def __len__(self) -> int:
        return len(self.t_hours)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per reading, features in ``FEATURE_NAMES`` order, None where missing."""
        columns = []
        for name in FEATURE_NAMES:
            values = self.features[name]
            if values.dtype == object:
                columns.append(values.tolist())
            else:
                columns.append([None if v != v else v for v in values.tolist()])
        return [dict(zip(FEATURE_NAMES, row, strict=True)) for row in zip(*columns, strict=True)]

    def labels(self) -> list[str]:
        """``"fail"`` or ``"ok"`` per reading."""
        return np.where(self.failure, FAIL, OK).tolist()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _stable_int(key: str) -> int:
    # Python's hash() is salted per process; the child streams must not be.
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class MachineFleetGenerator:
    """Seeded source of machine readings; see the module docstring for the physics.

    The generator owns one random stream: successive ``readings()`` calls continue it, so the
    same seed and the same calls give the same data. ``child(key)`` derives an independent
    stream (per node, per site) that depends only on the seed and the key.
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._seq = np.random.SeedSequence(seed)
        self._rng = np.random.default_rng(self._seq)

    def child(self, key: str) -> MachineFleetGenerator:
        """An independent generator for ``key`` (e.g. a node name); reproducible by key."""
        child = MachineFleetGenerator.__new__(MachineFleetGenerator)
        child.seed = self.seed
        child._seq = np.random.SeedSequence([self.seed, _stable_int(key)])
        child._rng = np.random.default_rng(child._seq)
        return child

    def readings(
        self,
        n: int,
        *,
        start_hour: float = 0.0,
        hours: float = 24.0 * 7,
        site: str | Site = "temperate",
        machine_mix: Mapping[str, float] | None = None,
        sensor_drift: Mapping[str, SensorDrift] | None = None,
        faults: Sequence[SensorFault] = (),
        concept: float = 0.0,
    ) -> Readings:
        """``n`` readings at times spread uniformly over ``[start_hour, start_hour + hours)``.

        Args:
            n: number of readings.
            start_hour, hours: the time span, in hours since the simulation's epoch (hour 0 is
                midnight); drives the day/night cycle, sensor drift ramps and fault bursts.
                Readings come sorted by time.
            site: a preset name from ``SITES`` or a ``Site`` (the climate).
            machine_mix: machine type -> weight (normalised; default ``DEFAULT_MIX``); types
                are keys of ``MACHINE_TYPES``.
            sensor_drift: feature -> ``SensorDrift``, applied to the observed numeric values.
            faults: ``SensorFault`` bursts (missing or out-of-range values).
            concept: 0..1, the share of failures driven by the seal mode instead of the
                baseline wear mode (concept drift with unchanged inputs).
        """
        if n < 0:
            raise ValueError("n must be >= 0")
        if not 0.0 <= concept <= 1.0:
            raise ValueError(f"concept must be in [0, 1], got {concept!r}")
        if isinstance(site, str):
            if site not in SITES:
                raise ValueError(f"unknown site {site!r}; presets: {', '.join(SITES)}")
            site = SITES[site]
        mix = dict(DEFAULT_MIX if machine_mix is None else machine_mix)
        unknown = set(mix) - set(MACHINE_TYPES)
        if unknown or not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
            raise ValueError(
                f"machine_mix needs non-negative weights of known types "
                f"({', '.join(MACHINE_TYPES)}); got {mix!r}"
            )
        for name in sensor_drift or {}:
            if name not in NUMERIC_FEATURES:
                raise ValueError(f"sensor_drift: {name!r} is not a numeric feature")
        for fault in faults:
            if fault.feature not in FEATURE_NAMES:
                raise ValueError(f"faults: unknown feature {fault.feature!r}")
            if fault.kind == "out_of_range" and _BY_NAME[fault.feature].categorical:
                raise ValueError(f"faults: {fault.feature!r} has no range to leave")
            if fault.kind not in ("missing", "out_of_range"):
                raise ValueError(f"faults: unknown kind {fault.kind!r}")

        rng = self._rng
        t = np.sort(rng.uniform(start_hour, start_hour + hours, n))
        types = list(mix)
        weights = np.array([mix[k] for k in types], dtype=float)
        type_idx = rng.choice(len(types), size=n, p=weights / weights.sum())
        specs = [MACHINE_TYPES[k] for k in types]

        def per_type(attr: str) -> np.ndarray:
            return np.array([float(getattr(s, attr)) for s in specs])[type_idx]

        rpm_nom = per_type("rpm")
        variable = per_type("variable_speed") > 0
        kw = per_type("power_kw")
        p_nom = per_type("pressure_bar")
        rise = per_type("heat_rise_c")
        vib0 = per_type("vibration_mm_s")
        db0 = per_type("acoustic_db")
        life = per_type("service_life_h")
        temp_alarm = per_type("temp_alarm_c")
        vib_alarm = per_type("vibration_alarm_mm_s")
        beta_a = np.array([float(s.load_beta[0]) for s in specs])[type_idx]
        beta_b = np.array([float(s.load_beta[1]) for s in specs])[type_idx]

        # Climate: a daily sine peaking at 15:00; warmer air holds the same water at lower RH.
        hour_of_day = np.mod(t, 24.0)
        ambient = site.temp_c + site.day_night_c * np.sin(2 * np.pi * (hour_of_day - 9.0) / 24.0)
        ambient = ambient + rng.normal(0.0, 1.0, n)
        humidity = site.humidity_pct - 2.0 * (ambient - site.temp_c) + rng.normal(0.0, 5.0, n)
        humidity = np.clip(humidity, 3.0, 100.0)

        # Age and hidden wear: some machines of the same age are in much worse shape.
        op_hours = rng.uniform(0.0, 1.1, n) * life
        wear = np.clip((op_hours / life) ** 2 * rng.lognormal(0.0, 0.35, n), 0.0, 2.0)

        load = rng.beta(beta_a, beta_b)
        slip = 0.96 + 0.03 * (1.0 - load)
        speed = np.where(variable, 0.45 + 0.6 * load, slip) * (1.0 + rng.normal(0.0, 0.01, n))
        rpm = rpm_nom * speed
        power = kw * (0.12 + 0.88 * load) * speed * (1.0 + 0.15 * wear)
        power = power * (1.0 + rng.normal(0.0, 0.02, n))
        temperature = ambient + rise * (0.35 + 0.85 * load) + 20.0 * wear * speed
        temperature = temperature + rng.normal(0.0, 1.5, n)
        vibration = vib0 * speed**1.5 * (0.8 + 0.3 * load) + 3.5 * wear**2
        vibration = vibration * rng.lognormal(0.0, 0.12, n)
        pressure = p_nom * (0.75 + 0.35 * load) * (1.0 - 0.12 * np.minimum(wear, 1.0))
        pressure = pressure * (1.0 + rng.normal(0.0, 0.02, n))
        acoustic = db0 + 20.0 * np.log10(np.maximum(speed, 0.05)) + 6.0 * np.log2(vibration / vib0)
        acoustic = acoustic + rng.normal(0.0, 1.2, n)

        # The label, from the true (not the observed) state.
        overheat = np.maximum(0.0, temperature - temp_alarm)
        vib_excess = np.maximum(0.0, vibration - vib_alarm)
        z_base = (
            -5.25
            + 2.2 * wear
            + 0.22 * overheat
            + 0.5 * vib_excess
            + 1.5 * wear * (vibration / vib_alarm)
        )
        z_seal = (
            -3.65
            + 0.15 * (humidity - site.humidity_pct)
            + 0.1 * (humidity - 65.0)
            + 3.0 * (pressure / p_nom - 0.9)
            + 1.5 * (load - 0.6)
        )
        p_fail = (1.0 - concept) * _sigmoid(z_base) + concept * _sigmoid(z_seal)
        failure = rng.uniform(0.0, 1.0, n) < p_fail

        values: dict[str, np.ndarray] = {
            "ambient_temp_c": ambient,
            "humidity_pct": humidity,
            "rpm": rpm,
            "load_pct": 100.0 * load,
            "temperature_c": temperature,
            "vibration_mm_s": vibration,
            "pressure_bar": pressure,
            "power_kw": power,
            "acoustic_db": acoustic,
            "operating_hours": op_hours,
        }
        for name, drift in (sensor_drift or {}).items():
            f = drift.factor(t)
            values[name] = values[name] * (1.0 + drift.gain * f) + drift.offset * f
        features: dict[str, np.ndarray] = {
            "machine_type": np.array([types[i] for i in type_idx.tolist()], dtype=object)
        }
        for name in NUMERIC_FEATURES:
            feature = _BY_NAME[name]
            assert feature.low is not None and feature.high is not None
            # Real sensors report in steps and within their range (a gauge pegs at its ends).
            observed = np.clip(values[name], feature.low, feature.high)
            features[name] = np.round(observed, feature.decimals)
        for fault in faults:
            # Faults come last, so adding one leaves every other value of this call unchanged.
            hit = (t >= fault.start_hour) & (t < fault.start_hour + fault.hours)
            hit &= rng.uniform(0.0, 1.0, n) < fault.rate
            feature = _BY_NAME[fault.feature]
            column = features[fault.feature].copy()
            if fault.kind == "missing":
                column[hit] = None if feature.categorical else np.nan
            else:
                assert feature.low is not None and feature.high is not None
                span = feature.high - feature.low
                bad = feature.high + span * rng.uniform(0.05, 0.5, n)
                column[hit] = np.round(bad[hit], feature.decimals)
            features[fault.feature] = column
        return Readings(t, {k: features[k] for k in FEATURE_NAMES}, failure, p_fail, wear)
