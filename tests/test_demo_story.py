"""The demo tells the whole story: the story scenario's acts, and the demo's fast mode run
through the real CLI, which fails naming any milestone that did not happen."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from monitor.demo_story import FAST, Story, StoryConfig, _run_line, _summary
from monitor.fleet.machines import MachineFleetGenerator, Readings
from monitor.fleet.scenarios import NodePlan, plan_fleet, scenario
from monitor.storage.retrains import Run

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
    # Its Fleet page, drawn as the alert fires, says which site drifts.
    re.compile(r"^dashboard: the Fleet page names site-a as drifting: ", re.M),
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
    assert positions[0] < positions[1]
    assert positions[0] < positions[3] < positions[4] < positions[5] < positions[6] < positions[7]
    assert "dropped: none" in out
    # The dashboard ran beside the story, said where, and says how to open it again.
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/ ", out, re.M)
    assert "to look again: edge-monitor --database-url " in out
    # Drawing the page in the demo's process left its logging alone: no request is printed.
    assert "HTTP/1.1" not in out


def test_a_story_missing_milestones_fails_in_fast_mode_naming_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    story = Story(set())
    story.reach("drift alert", "alert FIRING: 3 nodes at site site-a drift on temperature_c")
    story.reach("dashboard", "dashboard: the Fleet page names site-a as drifting: ...")
    story.reach("webhook", "webhook received and verified: alert.fired ...")
    story.reach("accuracy alert", "accuracy alert FIRING: ...")

    assert _summary(story, FAST) == 1
    out = capsys.readouterr().out
    assert "missed: retraining, canary, rollout, recovered\n" in out
    assert "  [x] webhook: " in out and "  [ ] canary: " in out
    # Without --fast the story is told as far as it got, and the demo still succeeds.
    assert _summary(story, StoryConfig()) == 0


def run(status: str, **details: object) -> Run:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Run(
        id=1, model_id=1, model="pump-failure", hook_id=1, hook="demo-retrain", alert_id=2,
        trigger="alert", status=status, version="2", output="line one\nboom", details=details,
        claimed_by=None, created_at=now, started_at=now, finished_at=now, updated_at=now,
    )  # fmt: skip


def test_each_retrain_status_is_told_in_one_line_and_the_milestones_are_the_good_ones() -> None:
    gate = {"candidate_accuracy": 0.912, "production_accuracy": 0.781}
    canary = {"nodes": ["a", "b", "c"], "judgement": {"reason": "no regression"}}

    assert _run_line(run("canary", gate=gate, canary=canary), 12) == (
        "candidate v2 passed the gate (accuracy 0.91 vs 0.78); canary on 3 of 12 nodes",
        "canary",
    )
    assert _run_line(run("promoted", gate=gate, canary=canary), 12) == (
        "canary good: v2 rolled out to every node (no regression)",
        "rollout",
    )
    assert _run_line(run("gated", gate=gate), 12) == (
        "candidate v2 stopped by the gate (accuracy 0.91 vs 0.78)",
        None,
    )
    assert _run_line(run("rolled_back", canary=canary), 12)[1] is None
    assert _run_line(run("failed"), 12) == ("retraining failed: boom", None)
    line, milestone = _run_line(run("produced", trained=gate | {"held_out_rows": 900}), 12)
    assert milestone == "retraining"
    assert line == (
        "retraining: the reference retrainer produced v2 (accuracy 0.91 vs 0.78 on the 900 "
        "newest labelled records it held out)"
    )
