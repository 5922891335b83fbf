"""Retries are logged at WARNING, rate-limited with their count; recovery at INFO."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.retrylog import RetryLog

from .fakes import Reply, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("monitor")]


def test_a_failure_streak_is_logged_once_a_minute_with_its_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sdk")
    clock = Clock()
    log = RetryLog("records", interval=60.0, clock=clock)
    log.failed("unavailable", "answered 503", "retrying with backoff")
    assert lines(caplog) == [
        (
            logging.WARNING,
            "edge-monitor: sending records failed: answered 503; retrying with backoff",
        )
    ]
    caplog.clear()
    for _ in range(9):  # within the minute: silent
        clock.now += 5
        log.failed("unavailable", "answered 503", "retrying with backoff")
    assert lines(caplog) == []
    clock.now += 20  # 65 s after the first line
    log.failed("unavailable", "connection failed", "retrying with backoff")
    assert lines(caplog) == [
        (
            logging.WARNING,
            "edge-monitor: sending records still failing: 11 failed attempt(s) in 65 s, "
            "10 since the last report (last: connection failed); retrying with backoff",
        )
    ]
    assert log.failing
    caplog.clear()
    clock.now += 10
    log.recovered()
    assert lines(caplog) == [
        (
            logging.INFO,
            "edge-monitor: sending records works again after 11 failed attempt(s) over 75 s",
        )
    ]
    assert not log.failing
    caplog.clear()
    log.recovered()  # no streak: nothing to say
    assert lines(caplog) == []


def test_a_new_kind_of_failure_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RetryLog("labels", clock=clock)
    log.failed("unavailable", "answered 503", "retrying")
    log.failed("unavailable", "answered 503", "retrying")
    log.failed("auth", "answered 401: the collector refused this node's token", "keeping them")
    log.failed("auth", "answered 401: the collector refused this node's token", "keeping them")
    warnings = [m for level, m in lines(caplog) if level == logging.WARNING]
    assert len(warnings) == 2
    assert "401" in warnings[1]


def test_a_monitor_warns_once_for_a_run_of_retries_and_says_when_it_recovers(
    collector: ScriptedCollector, make_monitor: MakeMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sdk")
    collector.push(wire.RECORDS_PATH, *[Reply(503)] * 5)
    mon = make_monitor(collector.url)
    mon.log({"i": 0}, "ok")
    assert mon.flush(10)
    records = [(level, m) for level, m in lines(caplog) if "sending records" in m]
    assert [level for level, _ in records] == [logging.WARNING, logging.INFO]
    assert "503" in records[0][1]
    assert "after 5 failed attempt(s)" in records[1][1]
    assert mon.stats()["retries"] == 5


def test_failing_heartbeats_are_logged_rate_limited(
    collector: ScriptedCollector, make_monitor: MakeMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sdk")
    collector.push(wire.HEARTBEATS_PATH, *[Reply(500)] * 4)
    mon = make_monitor(collector.url)
    for n in range(1, 6):
        mon.heartbeat()
        assert wait_until(lambda n=n: len(collector.to(wire.HEARTBEATS_PATH)) == n)
    assert wait_until(lambda: any("heartbeats works again" in m for _, m in lines(caplog)))
    beats = [(level, m) for level, m in lines(caplog) if "sending heartbeats" in m]
    assert [level for level, _ in beats] == [logging.WARNING, logging.INFO]
