"""A refused token (401/403) keeps the data, retries with a capped backoff, counts and warns."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from monitor import wire
from monitor.sdk import Monitor

from .fakes import Reply, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]

REVOKED = {"error": {"code": "invalid_token", "message": "unknown or revoked", "details": {}}}


def dropped(stats: dict[str, object]) -> dict[str, int]:
    reasons = stats["dropped"]
    assert isinstance(reasons, dict)
    return {k: v for k, v in reasons.items() if v}


@pytest.mark.parametrize("status", [401, 403])
def test_records_refused_during_a_token_rotation_all_arrive_afterwards(
    status: int,
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sdk")
    collector.push(wire.RECORDS_PATH, *[Reply(status, body=REVOKED)] * 6)
    mon = make_monitor(collector.url, batch_size=10, auth_max_backoff=0.05)
    ids = [mon.log({"i": i}, "ok") for i in range(10)]
    assert mon.flush(10)
    assert sorted(collector.records) == sorted(ids)
    stats = mon.stats()
    assert stats["delivered"] == 10
    assert dropped(stats) == {}
    assert (stats["auth_failures"], stats["retries"]) == (6, 6)
    refused = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "refused this node's token" in r.getMessage()
    ]
    assert len(refused) == 1  # one line for the streak, not one per retry
    assert "invalid_token" in refused[0].getMessage()
    recovered = [r for r in caplog.records if "records works again" in r.getMessage()]
    assert [r.levelno for r in recovered] == [logging.INFO]
    assert "after 6 failed attempt(s)" in recovered[0].getMessage()

    mon.heartbeat()  # the collector hears about it too
    assert wait_until(lambda: collector.to(wire.HEARTBEATS_PATH))
    assert collector.to(wire.HEARTBEATS_PATH)[-1].body["sdk"]["auth_failures"] == 6


def test_labels_refused_during_a_token_rotation_are_kept_too(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.LABELS_PATH, *[Reply(401, body=REVOKED)] * 3)
    mon = make_monitor(collector.url, auth_max_backoff=0.05)
    for i in range(4):
        mon.log_label(f"req-{i}", "fail")
    assert mon.flush(10)
    assert [label["request_id"] for label in collector.labels] == [f"req-{i}" for i in range(4)]
    label_stats = mon.label_stats()
    assert (label_stats["delivered"], label_stats["auth_failures"]) == (4, 3)
    assert dropped(label_stats) == {}


def test_records_refused_for_longer_than_the_age_cap_expire_while_waiting(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.always(wire.RECORDS_PATH, Reply(401, body=REVOKED))
    mon = make_monitor(collector.url, spool_max_age=1.0, auth_max_backoff=0.05)
    now = time.time()
    for i in range(3):
        mon.log({"i": i}, "ok", ts=now - 0.5)  # young enough to be sent, old soon after
    assert wait_until(lambda: mon.stats()["dropped"]["expired"] == 3)
    stats = mon.stats()
    assert stats["auth_failures"] >= 1
    assert dropped(stats) == {"expired": 3}  # the spool's age cap, not a refusal, dropped them
    assert wait_until(lambda: mon.stats()["spool_records"] == 0)
    assert collector.records == {}


def test_the_refused_token_backoff_is_capped_by_auth_max_backoff(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    # max_backoff is irrelevant to refused tokens: only auth_max_backoff caps their wait.
    collector.push(wire.RECORDS_PATH, *[Reply(401, body=REVOKED)] * 12)
    mon = make_monitor(collector.url, max_backoff=3600.0, auth_max_backoff=0.02)
    mon.log({"i": 0}, "ok")
    assert mon.flush(30)  # 12 waits of at most 0.02 s each
    assert mon.stats()["auth_failures"] == 12
