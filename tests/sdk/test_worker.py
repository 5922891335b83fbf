"""Sending: batching by size and time, and what each collector answer does to a batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.worker import encode_line, splice_body

from .fakes import Reply, Request, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]


def log_n(mon: Monitor, n: int) -> list[str]:
    return [mon.log({"i": i, "kind": "press"}, "ok") for i in range(n)]


def dropped(mon: Monitor) -> dict[str, int]:
    return {k: v for k, v in mon.stats()["dropped"].items() if v}


def test_splice_body_matches_the_wire_helpers() -> None:
    records = [{"id": "a", "ts": 1.0}, {"id": "b", "ts": 2.0}]
    lines = [encode_line(r)[:-1] for r in records]
    import json

    body = json.loads(splice_body(wire.records_body("B", "m", "v", []), "records", lines))
    assert body == wire.records_body("B", "m", "v", records)
    labels = json.loads(splice_body(wire.labels_body("m", []), "labels", lines))
    assert labels == wire.labels_body("m", records)


def test_full_batches_go_without_waiting_for_the_interval(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, batch_size=10, flush_interval=30.0)
    log_n(mon, 30)
    assert wait_until(lambda: len(collector.records) == 30)
    sizes = [len(r.body["records"]) for r in collector.to(wire.RECORDS_PATH)]
    assert sizes == [10, 10, 10]


def test_partial_batch_goes_after_the_interval(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, batch_size=1000, flush_interval=0.3)
    log_n(mon, 5)  # no flush(): time alone must send them
    assert wait_until(lambda: len(collector.records) == 5)
    assert 1 <= len(collector.to(wire.RECORDS_PATH)) <= 2


def test_batches_on_the_wire(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    mon = make_monitor(collector.url, batch_size=50)
    request_ids = log_n(mon, 120)
    assert mon.flush(10)
    reqs = collector.to(wire.RECORDS_PATH)
    assert all(r.headers["content-encoding"] == "gzip" for r in reqs)
    assert all(r.headers["authorization"] == "Bearer emn_test" for r in reqs)
    assert all(len(r.body["records"]) <= 50 for r in reqs)
    assert len({r.body["batch_id"] for r in reqs}) == len(reqs)
    body = reqs[0].body
    assert (body["model"], body["model_version"]) == ("pump", "3")
    assert set(body) == set(wire.records_body("x", "m", "v", []))
    got = collector.received_records()
    # A generated request id is the record id, sent once: the collector defaults to it.
    assert [r["id"] for r in got] == request_ids  # in order, once each
    assert list(got[0]) == ["id", "ts", "features", "prediction", "probabilities", "latency_ms"]
    stats = mon.stats()
    assert (stats["logged"], stats["enqueued"], stats["delivered"]) == (120, 120, 120)


RETRIED = sorted(wire.RETRYABLE_STATUSES | {500, 501})
REJECTED = [400, 404, 409, 410, 422]


@pytest.mark.parametrize("status", RETRIED)
def test_retryable_statuses_resend_the_same_batch(
    status: int, collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, Reply(status), Reply(status))
    mon = make_monitor(collector.url, batch_size=100)
    log_n(mon, 7)
    assert mon.flush(10)
    reqs = collector.to(wire.RECORDS_PATH)
    assert [r.status for r in reqs] == [status, status, 200]
    assert len({r.body["batch_id"] for r in reqs}) == 1  # same batch, same id
    assert all(r.body == reqs[0].body for r in reqs)
    assert mon.stats()["delivered"] == 7
    assert dropped(mon) == {}


@pytest.mark.parametrize("status", REJECTED)
def test_other_4xx_drop_the_batch_as_rejected(
    status: int,
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector.push(wire.RECORDS_PATH, Reply(status), Reply(status))
    mon = make_monitor(collector.url, batch_size=5, flush_interval=30.0)
    log_n(mon, 15)
    assert mon.flush(10) is False  # not everything was delivered
    reqs = collector.to(wire.RECORDS_PATH)
    assert [r.status for r in reqs] == [status, status, 200]  # each batch tried once
    stats = mon.stats()
    assert stats["delivered"] == 5
    assert dropped(mon) == {"rejected": 10}
    warnings = [r for r in caplog.records if f"http_{status}" in r.getMessage()]
    assert len(warnings) == 1  # once per error code, not once per batch


def test_rejected_entries_in_a_200_are_counted_and_not_retried(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    partial = {
        "accepted": 3,
        "duplicate": 1,
        "rejected": [
            {"index": 0, "code": "invalid_type", "field": "records[0].features.i", "message": ""},
            {"index": 4, "code": "invalid_type", "field": "records[4].features.i", "message": ""},
        ],
    }
    collector.push(wire.RECORDS_PATH, Reply(200, body=partial))
    mon = make_monitor(collector.url, batch_size=6, flush_interval=30.0)
    log_n(mon, 6)
    assert mon.flush(10) is False
    assert len(collector.to(wire.RECORDS_PATH)) == 1
    assert mon.stats()["delivered"] == 4
    assert dropped(mon) == {"rejected": 2}


def test_connection_failures_are_retried(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, Reply(drop=True), Reply(drop=True), Reply(hang=0.0))
    mon = make_monitor(collector.url, batch_size=100)
    log_n(mon, 4)
    assert mon.flush(10)
    assert len(collector.records) == 4
    assert mon.stats()["delivered"] == 4


def test_timeouts_are_retried(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    collector.push(wire.RECORDS_PATH, Reply(hang=1.0))
    mon = make_monitor(collector.url, batch_size=100, timeout=0.2)
    log_n(mon, 3)
    assert mon.flush(10)
    assert len(collector.to(wire.RECORDS_PATH)) >= 2
    assert mon.stats()["delivered"] == 3  # the collector deduplicated the late first copy


def test_retry_after_is_a_floor_on_the_backoff(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.RECORDS_PATH, Reply(503, headers={"Retry-After": "1"}))
    mon = make_monitor(collector.url, batch_size=100, backoff_base=0.001, max_backoff=0.002)
    log_n(mon, 2)
    assert mon.flush(10)
    first, second = collector.to(wire.RECORDS_PATH)
    # Without the header the backoff would be at most 2 ms; only a lower bound is asserted.
    assert second.at - first.at >= 0.9


def test_retry_after_as_http_date(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    import email.utils

    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    collector.push(wire.RECORDS_PATH, Reply(429, headers={"Retry-After": when}))
    mon = make_monitor(collector.url, batch_size=100, backoff_base=0.001, max_backoff=0.002)
    log_n(mon, 2)
    assert mon.flush(10)
    first, second = collector.to(wire.RECORDS_PATH)
    assert second.at - first.at >= 0.9  # the date has 1 s resolution


def _too_large_above(limit: int) -> Callable[[Request], Reply | None]:
    def reply(req: Request) -> Reply | None:
        return Reply(413) if len(req.body["records"]) > limit else None

    return reply


def test_413_splits_until_batches_fit(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.always(wire.RECORDS_PATH, _too_large_above(2))
    mon = make_monitor(collector.url, batch_size=8, flush_interval=30.0)
    ids = log_n(mon, 8)
    assert mon.flush(10)
    sizes = [len(r.body["records"]) for r in collector.to(wire.RECORDS_PATH)]
    assert sizes == [8, 4, 2, 2, 4, 2, 2]  # depth first, halves in order
    assert [r["request_id"] for r in collector.records.values()] == ids
    assert mon.stats()["delivered"] == 8
    assert dropped(mon) == {}


def test_413_down_to_single_records_drops_them_as_too_large(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.always(wire.RECORDS_PATH, Reply(413))
    mon = make_monitor(collector.url, batch_size=8, flush_interval=30.0)
    log_n(mon, 8)
    assert mon.flush(10) is False
    assert len(collector.to(wire.RECORDS_PATH)) == 1 + 2 + 4 + 8
    assert mon.stats()["delivered"] == 0
    assert dropped(mon) == {"too_large": 8}


def test_one_record_too_large_among_good_ones(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    def reply(req: Request) -> Reply | None:
        big = any(r["features"].get("blob") for r in req.body["records"])
        return Reply(413) if big else None

    collector.always(wire.RECORDS_PATH, reply)
    mon = make_monitor(collector.url, batch_size=5, flush_interval=30.0)
    for i in range(5):
        mon.log({"i": i, "blob": "x" * 100 if i == 3 else ""}, "ok")
    assert mon.flush(10) is False
    assert sorted(r["features"]["i"] for r in collector.records.values()) == [0, 1, 2, 4]
    assert dropped(mon) == {"too_large": 1}


def test_labels_are_batched_to_the_labels_endpoint(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, batch_size=4)
    ids = log_n(mon, 10)
    ts = time.time() - 60  # labels arrive after the fact; older than spool_max_age expires
    for request_id in ids:
        mon.log_label(request_id, "fail", ts=ts)
    assert mon.flush(10)
    reqs = collector.to(wire.LABELS_PATH)
    assert all(len(r.body["labels"]) <= 4 for r in reqs)
    assert all(set(r.body) == set(wire.labels_body("m", [])) for r in reqs)
    assert reqs[0].body["model"] == "pump"
    ts = round(ts, 3)  # to the millisecond
    assert collector.labels == [{"request_id": i, "label": "fail", "ts": ts} for i in ids]
    label_stats = mon.label_stats()
    assert (label_stats["logged"], label_stats["delivered"]) == (10, 10)


def test_labels_retry_and_reject_like_records(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.push(wire.LABELS_PATH, Reply(503), Reply(422))
    mon = make_monitor(collector.url, batch_size=2, flush_interval=30.0)
    for i in range(4):
        mon.log_label(f"req-{i}", i)
    assert mon.flush(10) is False  # two labels were rejected
    assert [r.status for r in collector.to(wire.LABELS_PATH)] == [503, 422, 200]
    label_stats = mon.label_stats()
    assert label_stats["delivered"] == 2
    assert label_stats["dropped"]["rejected"] == 2


def test_heartbeats(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    mon = make_monitor(collector.url, telemetry=lambda: {"p50_ms": 1.5})
    log_n(mon, 3)
    assert mon.flush(10)
    before = len(collector.to(wire.HEARTBEATS_PATH))  # the one sent at start
    mon.heartbeat()
    assert wait_until(lambda: len(collector.to(wire.HEARTBEATS_PATH)) == before + 1)
    body: dict[str, Any] = collector.to(wire.HEARTBEATS_PATH)[-1].body
    assert set(body) == {"ts", "model", "model_version", "sdk", "runtime"}
    assert (body["model"], body["model_version"]) == ("pump", "3")
    assert body["runtime"] == {"p50_ms": 1.5}
    assert body["sdk"] == {**mon.stats(), "queue_depth": 0}
    assert body["sdk"]["delivered"] == 3


def test_telemetry_is_fitted_to_the_wires_bounds_rather_than_dropped(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    message = "swap failed: " + "x" * 5_000
    mon = make_monitor(
        collector.url, telemetry=lambda: {"last_error": message, "p50_ms": float("nan")}
    )
    mon.heartbeat()
    assert wait_until(lambda: len(collector.to(wire.HEARTBEATS_PATH)) >= 1)

    runtime = collector.to(wire.HEARTBEATS_PATH)[-1].body["runtime"]
    cut = runtime["last_error"]
    assert len(cut) <= wire.MAX_RUNTIME_STRING_CHARS
    assert cut.startswith("swap failed: xxx")  # an error message's start says what went wrong
    assert runtime["p50_ms"] is None
    assert wire.runtime_problem(runtime) is None


def test_periodic_heartbeats_and_a_failing_telemetry(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("telemetry is broken")

    make_monitor(collector.url, heartbeat_interval=0.1, telemetry=broken)
    assert wait_until(lambda: len(collector.to(wire.HEARTBEATS_PATH)) >= 3)
    body = collector.to(wire.HEARTBEATS_PATH)[0].body
    assert "runtime" not in body
    assert set(body["sdk"]["dropped"]) == set(wire.DROP_REASONS)


def test_concurrent_producers_against_a_flaky_collector(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    import random
    import threading

    rng = random.Random(42)
    lock = threading.Lock()

    def flaky(req: Request) -> Reply | None:
        with lock:
            roll = rng.random()
        if roll < 0.15:
            return Reply(503)
        if roll < 0.25:
            return Reply(drop=True)
        if roll < 0.35 and len(req.body.get("records", [])) > 1:
            return Reply(413)
        if roll < 0.45:
            return Reply(500)
        return None

    collector.always(wire.RECORDS_PATH, flaky)
    collector.always(wire.LABELS_PATH, flaky)
    mon = make_monitor(collector.url, batch_size=64, queue_size=100_000)
    per_thread = 500

    def produce(t: int) -> None:
        for i in range(per_thread):
            rid = mon.log({"t": t, "i": i}, "ok", request_id=f"{t}-{i}")
            if i % 10 == 0:
                mon.log_label(rid, "fail")

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mon.flush(30)
    stats = mon.stats()
    assert stats["logged"] == stats["enqueued"] == 4 * per_thread
    assert stats["delivered"] == len(collector.records) == 4 * per_thread
    assert dropped(mon) == {}
    assert (stats["queue_depth"], stats["spool_records"], stats["spool_bytes"]) == (0, 0, 0)
    assert {label["request_id"] for label in collector.labels} == {
        f"{t}-{i}" for t in range(4) for i in range(0, per_thread, 10)
    }
