"""flush() says whether what it waited for was delivered, not only whether it is done."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.sampling import is_sampled

from .fakes import Reply, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]


def partial(n: int, rejected: list[int]) -> Reply:
    entries = [
        {"index": i, "code": "invalid_type", "field": f"records[{i}].features.i", "message": ""}
        for i in rejected
    ]
    return Reply(200, body={"accepted": n - len(rejected), "duplicate": 0, "rejected": entries})


def test_flush_is_false_when_a_record_was_rejected_and_true_again_afterwards(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, partial(3, [1]))
    mon = make_monitor(collector.url, batch_size=3, flush_interval=30.0)
    for i in range(3):
        mon.log({"i": i}, "ok")
    assert mon.flush(10) is False
    assert mon.stats()["dropped"]["rejected"] == 1
    for i in range(2):
        mon.log({"i": i}, "ok")
    assert mon.flush(10) is True  # nothing was lost since the previous flush


def test_flush_is_false_when_a_record_was_rejected_before_it_was_called(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, Reply(422))
    mon = make_monitor(collector.url, batch_size=2)
    mon.log({"i": 0}, "ok")
    mon.log({"i": 1}, "ok")
    # Sent and refused in the background before anyone asked for a flush.
    assert wait_until(lambda: mon.stats()["dropped"]["rejected"] == 2)
    assert mon.flush(10) is False
    assert mon.flush(10) is True


def test_flush_is_false_when_a_label_was_rejected(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.LABELS_PATH, Reply(422))
    mon = make_monitor(collector.url)
    mon.log({"i": 0}, "ok", request_id="r0")
    mon.log_label("r0", "fail")
    assert mon.flush(10) is False
    assert mon.stats()["delivered"] == 1
    assert mon.label_stats()["dropped"]["rejected"] == 1


def test_sampling_does_not_fail_a_flush(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    # Sampled-out records are the sampling asked for, not a loss.
    mon = make_monitor(collector.url, sample_rate=0.5)
    for i in range(50):
        mon.log({"i": i}, "ok", request_id=f"r{i}")
    assert mon.flush(10) is True
    stats = mon.stats()
    assert stats["dropped"]["sampled_out"] > 0
    assert stats["delivered"] == 50 - stats["dropped"]["sampled_out"]


def test_flush_is_false_when_log_itself_dropped_a_record(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, sample_rate=0.5)
    kept = next(f"bad-{i}" for i in itertools.count() if is_sampled(f"bad-{i}", 0.5))
    mon.log(None, "ok", request_id=kept)  # type: ignore[arg-type]
    mon.log({"i": 0}, "ok", request_id=kept + "-ok")
    assert mon.flush(10) is False
    assert mon.stats()["dropped"]["invalid"] == 1
    assert mon.flush(10) is True  # nothing was lost since the previous flush


def test_flush_is_false_when_the_queue_was_full(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    mon.close(5)  # after close, log() counts every record as queue_full
    mon.log({"i": 0}, "ok")
    assert mon.stats()["dropped"]["queue_full"] == 1
    assert mon.flush(1) is False


def test_a_record_from_a_clock_that_was_never_set_is_delivered(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, spool_max_age=60.0)
    mon.log({"i": 0}, "ok", ts=1.0)  # a device that booted in 1970
    mon.log({"i": 1}, "ok", ts=86_400.0 * 365 * 300)  # a clock centuries ahead
    assert mon.flush(10) is True
    assert sorted(r["ts"] for r in collector.records.values()) == [1.0, 86_400.0 * 365 * 300]
    assert mon.stats()["dropped"]["expired"] == 0
