"""Devices that come back late are not ignored: records that arrive after their window was
analysed re-open it (drift, quality and performance, every scope), and the new results say
which revision they are and how many rows arrived late; windows past the horizon stay as
they were."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from monitor.cli import main
from monitor.jobs.analysis import AnalysisConfig, Worker
from monitor.storage import results
from monitor.storage.results import WindowResults
from tests.jobs.sensorfleet import WINDOW, SensorFleet, window_start

WINDOWS = 8
OFFLINE = (4, 5, 6)  # edge-7 sends nothing in these windows, then all of it at once
SHIFTED = (5, 6)  # and its temperature had moved by 3 standard deviations in these
CONFIG = AnalysisConfig(window=WINDOW, grace=timedelta(hours=1), lookback=timedelta(days=400))
NOW = window_start(WINDOWS) + timedelta(hours=2)
BIG = ("big-1", "big-2")


def stored(engine: Engine, fleet: SensorFleet, window: int) -> WindowResults:
    with engine.connect() as conn:
        found = results.window(conn, fleet.model_id, window_start(window))
    assert found is not None
    return found


@pytest.fixture
def fleet(engine: Engine) -> SensorFleet:
    fleet = SensorFleet.register(engine, [*BIG, "edge-7"])
    for window in range(WINDOWS):
        for node in BIG:
            fleet.send(node, window, 400)
        if window not in OFFLINE:
            fleet.send("edge-7", window, 250)
    assert Worker(engine, CONFIG).run_due(now=NOW) == WINDOWS
    return fleet


def come_back(fleet: SensorFleet) -> None:
    for window in OFFLINE:
        shift = {"temperature": 3.0} if window in SHIFTED else {}
        fleet.send("edge-7", window, 250, shift)


def test_records_that_arrive_late_reopen_their_windows(
    engine: Engine, fleet: SensorFleet, caplog: pytest.LogCaptureFixture
) -> None:
    before = stored(engine, fleet, 5)
    assert ("node", "edge-7") not in {(s.scope_kind, s.scope_key) for s in before.drift}
    come_back(fleet)

    with caplog.at_level(logging.INFO, logger="monitor.jobs.analysis"):
        reopened = Worker(engine, CONFIG).reopen_late(now=NOW)

    assert reopened == len(OFFLINE)
    for window in OFFLINE:
        found = stored(engine, fleet, window)
        every_row = [*found.drift, *found.quality, *found.performance]
        assert {(r.revision, r.n_late) for r in every_row} == {(2, 250)}
        # The fleet's results now hold the late rows too.
        assert found.drift_of().result.n_rows == 2 * 400 + 250
        assert found.quality_of("node", "edge-7").result.n_rows == 250
        expected = ["temperature"] if window in SHIFTED else []
        assert found.drifted_features("node", "edge-7") == expected
        assert found.drift_of("node", "edge-7").computed_at > before.drift_of().computed_at
    for window in set(range(WINDOWS)) - set(OFFLINE):
        assert {(r.revision, r.n_late) for r in stored(engine, fleet, window).drift} == {(1, 0)}
    lines = [r.getMessage() for r in caplog.records if "late rows" in r.getMessage()]
    assert len(lines) == len(OFFLINE)
    assert all("(revision 2, 250 late rows)" in line for line in lines)
    assert any(getattr(r, "late_rows", None) == 250 for r in caplog.records)


def test_the_results_command_says_a_window_was_revised_with_late_rows(
    engine: Engine, db_url: str, fleet: SensorFleet, capsys: pytest.CaptureFixture[str]
) -> None:
    come_back(fleet)
    Worker(engine, CONFIG).reopen_late(now=NOW)
    window = window_start(5).isoformat()

    code = main(["--database-url", db_url, "results", "--model", "sensors", "--window", window,
                 "--scope", "node:edge-7"])  # fmt: skip

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    verdict = next(i for i, line in enumerate(out) if line.startswith("node:edge-7: "))
    assert out[verdict].startswith("node:edge-7: drifted")
    assert out[verdict + 1] == "  judged revision 2, 250 late rows"


def test_a_window_is_reopened_once_and_again_for_each_later_arrival(
    engine: Engine, fleet: SensorFleet
) -> None:
    come_back(fleet)
    first, second = Worker(engine, CONFIG), Worker(engine, CONFIG)

    assert first.reopen_late(now=NOW) == len(OFFLINE)
    assert second.reopen_late(now=NOW) == 0  # the same arrivals: nothing left to do
    assert first.reopen_late(now=NOW) == 0

    fleet.send("edge-7", 5, 40)  # what was still in its spool
    assert second.reopen_late(now=NOW) == 1

    found = stored(engine, fleet, 5)
    assert {(r.revision, r.n_late) for r in found.drift} == {(3, 40)}
    assert found.drift_of("node", "edge-7").result.n_rows == 290


def test_windows_past_the_horizon_are_left_as_they_were(engine: Engine, fleet: SensorFleet) -> None:
    come_back(fleet)
    fleet.send("edge-7", 1, 100)
    # Windows that ended less than 2 days and 2 hours ago: 6 and 7.
    short = AnalysisConfig(
        window=WINDOW,
        grace=timedelta(hours=1),
        lookback=timedelta(days=400),
        late_horizon=timedelta(days=2, hours=1),
    )

    assert Worker(engine, short).reopen_late(now=NOW) == 1

    assert stored(engine, fleet, 6).drift_of().revision == 2
    for window in (1, 4, 5):
        assert stored(engine, fleet, window).drift_of().revision == 1
    never = AnalysisConfig(window=WINDOW, late_horizon=timedelta(0))
    assert Worker(engine, never).reopen_late(now=NOW) == 0


def test_a_window_never_analysed_gets_its_first_analysis_when_records_reach_it(
    engine: Engine,
) -> None:
    fleet = SensorFleet.register(engine, ["edge-1"])
    for window in (0, 1, 3, 4):
        fleet.send("edge-1", window, 250)
    # The worker looks back one day only: window 2 is long past when its records arrive.
    recent = AnalysisConfig(window=WINDOW, grace=timedelta(hours=1), lookback=timedelta(days=1))
    worker = Worker(engine, recent)
    now = window_start(5) + timedelta(hours=2)
    assert worker.run_due(now=now) == 1  # window 4
    # What was stored before the worker started is the look-back's business, not this pass's.
    assert worker.reopen_late(now=now) == 0
    fleet.send("edge-1", 2, 250)

    assert worker.reopen_late(now=now) == 1

    found = stored(engine, fleet, 2)
    assert (found.drift_of().revision, found.drift_of().n_late) == (1, 0)
    assert found.drift_of().result.n_rows == 250
    with engine.connect() as conn:
        assert results.window(conn, fleet.model_id, window_start(1)) is None
