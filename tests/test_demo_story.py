"""The demo tells the whole story: the story scenario's acts, and the demo's fast mode run
through the real CLI, which fails naming any milestone that did not happen."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from monitor.fleet.machines import MachineFleetGenerator, Readings
from monitor.fleet.scenarios import NodePlan, plan_fleet, scenario

REPO = Path(__file__).resolve().parents[1]
DAY = 24.0
N = 3_000


@pytest.fixture
def fleet() -> list[NodePlan]:
    return plan_fleet(8, sites=4)


def day(knobs: dict[str, object], node: NodePlan, start: float) -> Readings:
    generator = MachineFleetGenerator(seed=5).child(f"{node.name}-{start}")
    return generator.readings(N, start_hour=start, hours=DAY, **knobs)  # type: ignore[arg-type]


def same(a: Readings, b: Readings, feature: str) -> bool:
    return float(stats.ks_2samp(a.features[feature], b.features[feature]).pvalue) > 1e-3


def test_the_story_is_steady_then_one_site_drifts_then_the_concept_changes_everywhere(
    fleet: list[NodePlan],
) -> None:
    story = scenario("story", 10 * DAY, ["site-a", "site-b"], acts=(2 * DAY, 5 * DAY))
    at_a = next(n for n in fleet if n.site == "site-a")
    at_b = next(n for n in fleet if n.site == "site-b")
    assert story.affected_sites == {"site-a"}
    assert story.onset_hour == 2 * DAY
    steady = day({"site": story.knobs(at_a, 0.0)["site"]}, at_a, 0.0)

    # Act one: steady, everywhere.
    for node in (at_a, at_b):
        knobs = story.knobs(node, 1 * DAY)
        assert "sensor_drift" not in knobs and knobs.get("concept", 0.0) == 0.0

    # Act two: site-a's temperature and vibration sensors read high at once; site-b is as
    # before; failures still follow wear.
    drifting = day(story.knobs(at_a, 2 * DAY), at_a, 2 * DAY)
    assert not same(steady, drifting, "temperature_c")
    assert (
        np.nanmean(drifting.features["temperature_c"])
        > np.nanmean(steady.features["temperature_c"]) + 8
    )
    assert not same(steady, drifting, "vibration_mm_s")
    assert same(steady, drifting, "humidity_pct")
    assert "sensor_drift" not in story.knobs(at_b, 3 * DAY)
    assert story.knobs(at_a, 4.9 * DAY).get("concept", 0.0) == 0.0

    # Act three: the sensors are recalibrated and failures switch to the seal mode everywhere.
    for node in (at_a, at_b):
        knobs = story.knobs(node, 5 * DAY)
        assert knobs["concept"] == 1.0 and "sensor_drift" not in knobs
    after = day(story.knobs(at_a, 6 * DAY), at_a, 6 * DAY)
    assert same(steady, after, "temperature_c") and same(steady, after, "vibration_mm_s")

    # The failures now follow humidity rather than wear: learnable from the inputs.
    def corr(readings: Readings, column: np.ndarray) -> float:
        return float(np.corrcoef(column, readings.failure.astype(float))[0, 1])

    assert (
        corr(after, after.features["humidity_pct"])
        > corr(steady, steady.features["humidity_pct"]) + 0.1
    )
    assert corr(steady, steady.wear) > corr(after, after.wear) + 0.1


def test_the_story_acts_default_to_a_sixth_and_a_third_and_must_be_in_order() -> None:
    assert scenario("story", 60.0, ["site-a"]).story_acts == (10.0, 20.0)
    with pytest.raises(ValueError, match="before its concept drift"):
        scenario("story", 60.0, ["site-a"], acts=(30.0, 20.0))


#: One line per milestone, as the demo tells it (the summary names each one it missed).
MILESTONE_LINES = (
    # One alert for the site, naming its three nodes (as it fires, or as they join it).
    re.compile(r"^alert (FIRING|updated): 3 nodes at site site-a drift on .*temperature_c", re.M),
    re.compile(r"^webhook received and verified: alert\.fired ", re.M),
    re.compile(r"^accuracy alert FIRING: fleet accuracy 0\.\d+ \(95% interval ", re.M),
    re.compile(r"^retraining: the reference retrainer produced v2", re.M),
    re.compile(
        r"^candidate v2 passed the gate \(accuracy 0\.\d+ vs 0\.\d+\); canary on 3 of 12", re.M
    ),
    re.compile(r"^canary good: v2 rolled out to every node", re.M),
    re.compile(r"^accuracy recovered: 0\.\d+ on v2", re.M),
)


def test_the_fast_demo_tells_the_whole_story_and_asserts_each_milestone(
    db_url: str, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "--data-dir",
            str(tmp_path),
            "--database-url",
            db_url,
            "demo",
            "--fast",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )

    out = result.stdout
    assert result.returncode == 0, out + result.stderr[-4000:]
    for line in MILESTONE_LINES:
        assert line.search(out), f"{line.pattern} not in:\n{out}"
    assert "the whole story was told" in out
    assert "missed:" not in out
    # In order: the drift alert before the accuracy alert, retraining, canary, rollout, recovery.
    positions = [line.search(out).start() for line in MILESTONE_LINES]  # type: ignore[union-attr]
    assert positions[0] < positions[2] < positions[3] < positions[4] < positions[5] < positions[6]
    assert "dropped: none" in out
