"""Fleet scenarios: what happens to which nodes, and when, in a simulated run.

A run lasts ``hours`` of simulated time. Each scenario changes the generator's knobs for some
nodes from an onset (a third of the way in) on; before the onset every scenario is ``steady``:

* ``steady`` -- nothing changes: the data keeps the training distribution.
* ``sensor-drift`` -- at the affected sites the temperature sensors drift upward (+12 degC)
  and the vibration sensors read high (+60%), ramping in over a third of the run.
* ``sudden-shift`` -- the machine-type mix changes at once fleet-wide: compressors and presses
  take over, and conveyors (a type the model never saw) appear.
* ``quality`` -- bursts of missing vibration readings and out-of-range temperature readings at
  the affected sites.
* ``concept-drift`` -- failures come from a new mode (seal wear from humidity, pressure and
  load) instead of bearing wear, ramping in: accuracy drops while the inputs do not move.
* ``story`` -- the demo's three acts: steady, then the temperature and vibration sensors at
  the affected sites read high at once (as in ``sensor-drift``) until they are recalibrated,
  when failures switch to the seal mode fleet-wide at once (full ``concept-drift``) for the rest
  of the run. The acts start at ``Scenario.acts`` (by default a sixth and a third of the way
  in). The seal mode is learnable from the inputs (humidity, pressure, load), so a model
  retrained on recent labels wins back the accuracy the shipped model loses.

Every site has the training site's climate: sites differ in who is affected, not in weather,
so that a steady fleet matches its reference data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.fleet.machines import SITES, SensorDrift, SensorFault, Site

SCENARIOS = ("steady", "sensor-drift", "sudden-shift", "quality", "concept-drift", "story")
#: The climate every simulated site shares (the demo model's training site).
CLIMATE: Site = SITES["temperate"]
#: The machine mix after a sudden shift.
SHIFTED_MIX: dict[str, float] = {
    "pump": 0.1,
    "press": 0.3,
    "lathe": 0.05,
    "compressor": 0.4,
    "fan": 0.05,
    "conveyor": 0.1,
}


@dataclass(frozen=True)
class NodePlan:
    """One simulated node: its name, site and group."""

    name: str
    site: str
    group: str


def plan_fleet(nodes: int, sites: int = 4, prefix: str = "sim") -> list[NodePlan]:
    """``nodes`` nodes spread round-robin over ``sites`` sites; each site's nodes form two
    groups (production lines)."""
    if nodes < 1 or sites < 1:
        raise ValueError("a fleet needs at least one node and one site")
    site_names = [f"site-{chr(ord('a') + i)}" if i < 26 else f"site-{i}" for i in range(sites)]
    return [
        NodePlan(
            name=f"{prefix}-{i + 1:04d}",
            site=site_names[i % sites],
            group=f"{site_names[i % sites]}/line-{(i // sites) % 2 + 1}",
        )
        for i in range(nodes)
    ]


@dataclass(frozen=True)
class Scenario:
    """A scenario laid over a run of ``hours`` simulated hours."""

    name: str
    hours: float
    affected_sites: frozenset[str] = field(default_factory=frozenset)
    #: The story's acts: (sensor drift from, concept drift from), in simulated hours; None:
    #: a sixth and a third of the way in. Other scenarios ignore it.
    acts: tuple[float, float] | None = None

    @property
    def onset_hour(self) -> float:
        if self.name == "story":
            return self.story_acts[0]
        return self.hours / 3

    @property
    def story_acts(self) -> tuple[float, float]:
        """When the story's sensor drift and its concept drift begin, in simulated hours."""
        return self.acts if self.acts is not None else (self.hours / 6, self.hours / 3)

    @property
    def ramp_hours(self) -> float:
        return self.hours / 3

    def affects(self, node: NodePlan) -> bool:
        """Whether this node's data changes in this scenario."""
        if self.name == "steady":
            return False
        if self.name in ("sudden-shift", "concept-drift", "story"):
            return True
        return node.site in self.affected_sites

    def shifted_features(self) -> tuple[str, ...]:
        """The inputs whose distribution the scenario moves (concept drift moves none)."""
        return {
            "sensor-drift": ("temperature_c", "vibration_mm_s"),
            "story": ("temperature_c", "vibration_mm_s"),
            "sudden-shift": (
                "machine_type",
                "rpm",
                "power_kw",
                "pressure_bar",
                "temperature_c",
                "acoustic_db",
                "vibration_mm_s",
            ),
            "quality": ("vibration_mm_s", "temperature_c"),
        }.get(self.name, ())

    def knobs(self, node: NodePlan, hour: float) -> dict[str, Any]:
        """The generator's keyword arguments for this node's readings from ``hour`` on."""
        knobs: dict[str, Any] = {"site": CLIMATE}
        if not self.affects(node):
            return knobs
        onset, ramp = self.onset_hour, self.ramp_hours
        if self.name == "sensor-drift":
            knobs["sensor_drift"] = {
                "temperature_c": SensorDrift(offset=12.0, start_hour=onset, ramp_hours=ramp),
                "vibration_mm_s": SensorDrift(gain=0.6, start_hour=onset, ramp_hours=ramp),
            }
        elif self.name == "sudden-shift" and hour >= onset:
            knobs["machine_mix"] = SHIFTED_MIX
        elif self.name == "quality":
            # Bursts of a tenth of the run, twice, after the onset.
            burst = self.hours / 10
            knobs["faults"] = [
                fault
                for start in (onset, onset + 2 * burst)
                for fault in (
                    SensorFault("vibration_mm_s", "missing", start, burst, rate=0.6),
                    SensorFault("temperature_c", "out_of_range", start, burst, rate=0.4),
                )
            ]
        elif self.name == "concept-drift":
            knobs["concept"] = min(1.0, max(0.0, (hour - onset) / ramp))
        elif self.name == "story":
            drift_from, concept_from = self.story_acts
            if hour >= concept_from:
                knobs["concept"] = 1.0
            elif hour >= drift_from and node.site in self.affected_sites:
                # A step, not a ramp: the story's windows are few, and each act must show.
                knobs["sensor_drift"] = {
                    "temperature_c": SensorDrift(offset=12.0, start_hour=drift_from),
                    "vibration_mm_s": SensorDrift(gain=0.6, start_hour=drift_from),
                }
        return knobs


def scenario(
    name: str,
    hours: float,
    sites: Sequence[str],
    *,
    affected: Mapping[str, Any] | None = None,
    acts: tuple[float, float] | None = None,
) -> Scenario:
    """The named scenario over a run of ``hours``; site-bound scenarios hit the first site (a
    quarter of a four-site fleet) unless ``affected`` names others. ``acts`` places the
    story's sensor drift and concept drift (simulated hours)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")
    if hours <= 0:
        raise ValueError("a run needs a positive duration")
    if acts is not None and not 0 <= acts[0] <= acts[1]:
        raise ValueError("the story's sensor drift must begin before its concept drift")
    chosen = frozenset(affected or ([sites[0]] if sites else []))
    return Scenario(name, hours, chosen, acts)
