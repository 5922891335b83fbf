"""A device whose clock was never set loses nothing: the real SDK sends its 1970 records to a
real collector on loopback, which stores them at the time they arrived and shows the skew."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.jobs.health import check_fleet
from monitor.sdk import Monitor
from monitor.sdk import records as sdk_records
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write
from monitor.storage.health import health_by_node
from monitor.storage.heartbeats import latest_heartbeat
from monitor.storage.windows import load_window
from tests.sdk.conftest import FAST
from tests.sdk.fakes import wait_until

#: The device booted at the epoch and has been up an hour: its clock reads 1970-01-01 01:00.
UPTIME_S = 3600


@pytest.fixture
def real_collector(engine: Engine, db_url: str, tmp_path: Path) -> Iterator[BackgroundCollector]:
    settings = Settings(database_url=db_url, data_dir=tmp_path / "collector", admin_token=None)
    with BackgroundCollector(settings) as running:
        yield running


def test_records_of_a_device_that_booted_in_1970_are_stored_when_they_arrive(
    engine: Engine,
    real_collector: BackgroundCollector,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with begin_write(engine) as conn:
        model_id = models.add_model(conn, "pump").id
        node, token = nodes.add_node(conn, "booted-in-1970")
        nodes.grant_model(conn, node.id, model_id)
    started = time.monotonic_ns()
    # The clock the SDK reads for a record's default ts and id: the device's, not the host's.
    monkeypatch.setattr(
        sdk_records, "_time_ns", lambda: UPTIME_S * 10**9 + time.monotonic_ns() - started
    )
    before = datetime.now(UTC)
    mon = Monitor(
        real_collector.url, token, "pump", "3", **{**FAST, "spool_dir": tmp_path / "spool"}
    )
    try:
        for i in range(5):
            mon.log({"temperature": 70.0 + i}, "ok")  # ts: the device's clock, 1970
        mon.log({"temperature": 99.0}, "ok", ts=time.time())  # a time from a good clock
        assert mon.flush(30) is True
        after = datetime.now(UTC)
        stats = mon.stats()
        mon.heartbeat()
        assert wait_until(lambda: _heartbeat_seen(engine, node.id), timeout=30)
    finally:
        mon.close(5)

    # The SDK counts nothing as lost: nothing expired for its ts.
    assert stats["delivered"] == 6
    assert {reason: n for reason, n in stats["dropped"].items() if n} == {}

    with engine.connect() as conn:
        frame = load_window(conn, model_id, before, after)
        in_1970 = load_window(
            conn, model_id, datetime(1970, 1, 1, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC)
        )
        seen = nodes.get_node(conn, "booted-in-1970")
    # Analysed in the window of the time they were received, with the device's time kept.
    frame = frame.sort_values("feature:temperature").reset_index(drop=True)
    assert frame["feature:temperature"].tolist() == [70.0, 71.0, 72.0, 73.0, 74.0, 99.0]
    assert all(before <= ts < after for ts in frame["ts"])
    device = frame["device_ts"].tolist()
    assert all(UPTIME_S <= t < UPTIME_S + 600 for t in device[:5])
    assert device[5] != device[5]  # NaN: the good clock's record kept its own ts
    assert in_1970.empty

    # The node is marked: device time minus received time, and when.
    assert seen.clock_skew_at is not None and before <= seen.clock_skew_at <= after
    assert seen.clock_skew_seconds is not None
    received = max(device[:5]) - seen.clock_skew_seconds
    assert before.timestamp() - 1 <= received <= after.timestamp() + 1

    with begin_write(engine) as conn:
        check_fleet(conn, now=datetime.now(UTC))
        health = health_by_node(conn)["booted-in-1970"]
    assert health.status == "degraded"
    assert health.details["clock_skew"]["seconds"] == seen.clock_skew_seconds
    assert any(problem.startswith("clock skew: ") for problem in health.details["problems"])
    assert "backlog" not in health.details
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    with begin_write(engine) as conn:
        (verdict,) = check_fleet(conn, now=later)
    assert "clock_skew" not in verdict.details  # an hour without such records clears it


def _heartbeat_seen(engine: Engine, node_id: int) -> bool:
    with engine.connect() as conn:
        return latest_heartbeat(conn, node_id) is not None
