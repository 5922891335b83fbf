"""A record the collector keeps failing on is isolated and quarantined; an outage is not."""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.deadletter import CURRENT, DEAD_LETTER_DIR
from monitor.sdk.sender import BISECT_AFTER, QUARANTINE_AFTER

from .fakes import Reply, Request, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]

BUG = {"error": {"code": "internal_error", "message": "internal error", "details": {}}}


def is_marker(record: dict[str, Any]) -> bool:
    return bool(record["features"].get("marker"))


def buggy_collector(broken: threading.Event) -> Callable[[Request], Reply | None]:
    """A collector with a bug: 500 on any batch holding a marker record, and on every batch
    while ``broken`` is set; otherwise the real collector's answer."""

    def reply(req: Request) -> Reply | None:
        if broken.is_set() or any(is_marker(r) for r in req.body["records"]):
            return Reply(500, body=BUG)
        return None

    return reply


def dropped(mon: Monitor) -> dict[str, int]:
    return {k: v for k, v in mon.stats()["dropped"].items() if v}


def dead_letters(spool: Path) -> list[dict[str, Any]]:
    path = spool / DEAD_LETTER_DIR / CURRENT
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def delivered_ids(collector: ScriptedCollector) -> collections.Counter[str]:
    """Record ids in the records requests the collector answered 200."""
    return collections.Counter(
        rec["id"]
        for r in collector.to(wire.RECORDS_PATH)
        if r.status == 200
        for rec in r.body["records"]
    )


def test_a_record_the_collector_keeps_failing_on_is_quarantined_and_the_rest_flows(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    broken = threading.Event()
    broken.set()  # at first the collector fails on everything: no record may be blamed
    collector.always(wire.RECORDS_PATH, buggy_collector(broken))
    mon = make_monitor(collector.url, batch_size=16)
    ids = [mon.log({"i": i, "marker": i == 5}, "ok") for i in range(16)]
    marker = ids[5]
    # Far past the point where the batch was split down to single records.
    assert wait_until(lambda: len(collector.to(wire.RECORDS_PATH)) >= 40)

    # Meanwhile labels and heartbeats flow: the records stream holds up nothing else.
    for request_id in ids[:3]:
        mon.log_label(request_id, "fail")
    mon.heartbeat()
    assert wait_until(lambda: len(collector.labels) == 3)
    assert wait_until(lambda: any(r.status == 204 for r in collector.to(wire.HEARTBEATS_PATH)))
    beat = [r for r in collector.to(wire.HEARTBEATS_PATH) if r.status == 204][-1]
    assert beat.body["sdk"]["retries"] >= 1  # the node tells the collector it is retrying
    stats = mon.stats()
    assert stats["delivered"] == 0  # the records stream was still failing all along
    assert dropped(mon) == {}  # and without proof that the collector works, nothing is lost

    broken.clear()  # the collector works again, except on the marker record
    assert mon.flush(10) is False  # everything is done with, but one record was not delivered
    assert sorted(collector.records) == sorted(set(ids) - {marker})
    assert mon.stats()["delivered"] == 15
    assert dropped(mon) == {"poisoned": 1}
    assert mon.stats()["spool_records"] == 0
    (entry,) = dead_letters(tmp_path / "spool")
    assert entry["line"]["id"] == marker
    assert entry["line"]["features"] == {"i": 5, "marker": True}
    assert (entry["kind"], entry["status"], entry["code"]) == ("records", 500, "internal_error")
    assert entry["failures"] >= QUARANTINE_AFTER
    alone = [r for r in collector.to(wire.RECORDS_PATH) if r.body["records"] == [entry["line"]]]
    assert len(alone) >= QUARANTINE_AFTER
    assert set(delivered_ids(collector).values()) == {1}  # nothing was delivered twice
    assert mon.label_stats()["delivered"] == 3


def test_a_batch_is_split_only_after_repeated_server_errors(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, *[Reply(500, body=BUG)] * (BISECT_AFTER - 1))
    mon = make_monitor(collector.url, batch_size=8, flush_interval=30.0)
    for i in range(8):
        mon.log({"i": i}, "ok")
    assert mon.flush(10)
    sizes = [len(r.body["records"]) for r in collector.to(wire.RECORDS_PATH)]
    assert sizes == [8] * BISECT_AFTER  # one batch, retried whole, then delivered
    assert mon.stats()["delivered"] == 8


def test_a_record_alone_is_only_quarantined_once_other_records_went_through(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    collector.always(wire.RECORDS_PATH, buggy_collector(threading.Event()))
    mon = make_monitor(collector.url, batch_size=100)
    marker = mon.log({"marker": True}, "ok")

    def tried_alone() -> int:
        return sum(1 for r in collector.to(wire.RECORDS_PATH) if len(r.body["records"]) == 1)

    # Alone in the spool, the record fails again and again, but nothing else was tried, so
    # nothing says the collector works for other records: it is kept.
    assert wait_until(lambda: tried_alone() >= QUARANTINE_AFTER + 2)
    assert dropped(mon) == {}
    assert mon.stats()["spool_records"] == 1

    # Newer records are sent before it; once they went through, it is quarantined.
    later = [mon.log({"i": i}, "ok") for i in range(5)]
    assert mon.flush(10) is False
    assert sorted(collector.records) == sorted(later)
    assert dropped(mon) == {"poisoned": 1}
    assert [e["line"]["id"] for e in dead_letters(tmp_path / "spool")] == [marker]
    assert set(delivered_ids(collector).values()) == {1}


def test_a_collector_failing_on_everything_loses_nothing(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    broken = threading.Event()
    broken.set()
    collector.always(wire.RECORDS_PATH, buggy_collector(broken))
    mon = make_monitor(collector.url, batch_size=8)
    ids = [mon.log({"i": i}, "ok") for i in range(8)]
    # Enough failures to split the batch to single records, each failing over the threshold.
    needed = 3 * BISECT_AFTER + 8 * QUARANTINE_AFTER
    assert wait_until(lambda: len(collector.to(wire.RECORDS_PATH)) >= needed, timeout=30)
    assert dropped(mon) == {}
    broken.clear()
    assert mon.flush(10)
    assert sorted(collector.records) == sorted(ids)
    assert dropped(mon) == {}
    assert not (tmp_path / "spool" / DEAD_LETTER_DIR).exists()


def test_an_unavailable_collector_is_waited_for_never_split_or_blamed(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    unavailable = [Reply(503), Reply(502), Reply(504), Reply(429), Reply(408)]
    collector.push(wire.RECORDS_PATH, *unavailable * 4)
    mon = make_monitor(collector.url, batch_size=8)
    mon.log({"i": 0}, "ok")  # alone in its batch: would be quarantined if blamed
    assert mon.flush(10)
    reqs = collector.to(wire.RECORDS_PATH)
    assert len(reqs) == 21
    assert len({r.body["batch_id"] for r in reqs}) == 1  # the same batch every time
    assert mon.stats()["delivered"] == 1
    assert mon.stats()["retries"] == 20
    assert dropped(mon) == {}


def test_a_hanging_records_request_holds_up_neither_labels_nor_heartbeats(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    release = threading.Event()

    def hang(req: Request) -> Reply | None:
        release.wait(30)
        return None

    collector.always(wire.RECORDS_PATH, hang)
    mon = make_monitor(collector.url, timeout=60.0)
    request_id = mon.log({"i": 0}, "ok")
    assert wait_until(lambda: collector.to(wire.RECORDS_PATH))  # in flight, hanging
    mon.log_label(request_id, "fail")
    mon.heartbeat()
    try:
        assert wait_until(lambda: len(collector.labels) == 1)
        assert wait_until(lambda: collector.to(wire.HEARTBEATS_PATH))
        assert collector.records == {}  # the records request is still hanging
    finally:
        release.set()
    assert mon.flush(10)
    assert list(collector.records) == [request_id]


def test_labels_the_collector_keeps_failing_on_are_quarantined_too(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    def reply(req: Request) -> Reply | None:
        if any(label["label"] == "poison" for label in req.body["labels"]):
            return Reply(500, body=BUG)
        return None

    collector.always(wire.LABELS_PATH, reply)
    mon = make_monitor(collector.url, batch_size=8)
    for i in range(8):
        mon.log_label(f"req-{i}", "poison" if i == 3 else "ok")
    assert mon.flush(10) is False
    assert sorted(label["request_id"] for label in collector.labels) == [
        f"req-{i}" for i in range(8) if i != 3
    ]
    label_stats = mon.label_stats()
    assert label_stats["delivered"] == 7
    assert {k: v for k, v in label_stats["dropped"].items() if v} == {"poisoned": 1}
    (entry,) = dead_letters(tmp_path / "spool")
    assert (entry["kind"], entry["line"]["request_id"]) == ("labels", "req-3")


def test_a_memory_only_monitor_quarantines_without_a_file(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    collector.always(wire.RECORDS_PATH, buggy_collector(threading.Event()))
    mon = make_monitor(collector.url, spool_dir=False, batch_size=4)
    ids = [mon.log({"i": i, "marker": i == 0}, "ok") for i in range(4)]
    assert mon.flush(10) is False
    assert sorted(collector.records) == sorted(ids[1:])
    assert dropped(mon) == {"poisoned": 1}
    assert list(tmp_path.iterdir()) == []


def test_a_batch_of_only_poison_records_gives_way_to_the_records_after_it(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    # The same bad value often repeats: here a whole batch fails, and nothing in it can prove
    # that the collector works; the records logged after it must not wait behind it for good.
    collector.always(wire.RECORDS_PATH, buggy_collector(threading.Event()))
    mon = make_monitor(collector.url, batch_size=2, flush_interval=30.0)
    poison = [mon.log({"marker": True, "i": i}, "ok") for i in range(2)]  # one full batch
    assert wait_until(lambda: len(collector.to(wire.RECORDS_PATH)) >= 2 * QUARANTINE_AFTER)
    later = [mon.log({"i": i}, "ok") for i in range(3)]
    assert mon.flush(10) is False
    assert sorted(collector.records) == sorted(later)
    assert dropped(mon) == {"poisoned": 2}
    assert sorted(e["line"]["id"] for e in dead_letters(tmp_path / "spool")) == sorted(poison)
    assert set(delivered_ids(collector).values()) == {1}
    assert mon.stats()["spool_records"] == 0
