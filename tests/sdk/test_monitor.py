"""The public Monitor: never raising, counting every record, deadlines, and durability."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from monitor import wire
from monitor.sdk import Monitor
from monitor.sdk.sampling import is_sampled

from .fakes import Reply, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]
REPO = Path(__file__).resolve().parents[2]


def check_invariants(mon: Monitor) -> dict[str, Any]:
    """Every logged record is enqueued or dropped at log() time, exactly once."""
    stats = mon.stats()
    dropped = stats["dropped"]
    at_log = dropped["sampled_out"] + dropped["queue_full"] + dropped["invalid"]
    assert stats["logged"] == stats["enqueued"] + at_log
    return stats


class Weird:
    def __repr__(self) -> str:
        raise RuntimeError("repr explodes")

    def __str__(self) -> str:
        raise RuntimeError("str explodes")


class ExplodingMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("getitem explodes")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("iter explodes")

    def __len__(self) -> int:
        return 1


class ExplodingScalar:
    def item(self) -> Any:
        raise RuntimeError("item explodes")


GARBAGE: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((None, "ok"), {}),
    (([1, 2], "ok"), {}),
    (("features", "ok"), {}),
    (({1: 2.0}, "ok"), {}),
    (({"a": object()}, "ok"), {}),
    (({"a": Weird()}, "ok"), {}),
    (({"a": [1, 2]}, "ok"), {}),
    (({"a": ExplodingScalar()}, "ok"), {}),
    ((ExplodingMapping(), "ok"), {}),
    (({"a": 1}, None), {}),
    (({"a": 1}, math.nan), {}),
    (({"a": 1}, object()), {}),
    (({"a": 1}, "ok"), {"probabilities": "high"}),
    (({"a": 1}, "ok"), {"probabilities": [math.nan]}),
    (({"a": 1}, "ok"), {"latency_ms": "slow"}),
    (({"a": 1}, "ok"), {"latency_ms": math.inf}),
    (({"a": 1}, "ok"), {"ts": math.nan}),
    (({"a": 1}, "ok"), {"ts": "yesterday"}),
    (({"a": 1}, "ok"), {"request_id": 123}),
    (({"a": 1}, "ok"), {"request_id": ""}),
    (({"a": 1}, "ok"), {"request_id": "x" * (wire.MAX_ID_CHARS + 1)}),
    (({f"f{i}": i for i in range(wire.MAX_FEATURES + 1)}, "ok"), {}),
]


def test_log_never_raises_and_counts_invalid(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    for args, kwargs in GARBAGE:
        result = mon.log(*args, **kwargs)
        assert isinstance(result, str)
    good = mon.log({"a": math.nan, "b": 1}, "ok")
    assert mon.flush(10) is False  # the invalid records are lost, and flush() says so
    stats = check_invariants(mon)
    assert stats["dropped"]["invalid"] == len(GARBAGE)
    assert stats["delivered"] == 1
    assert stats["internal_errors"] == 0
    (record,) = collector.records.values()
    assert record["request_id"] == good
    assert record["features"] == {"a": None, "b": 1}  # NaN travels as null


def test_log_returns_the_request_id(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    assert mon.log({"a": 1}, "ok", request_id="req-1") == "req-1"
    generated = mon.log({"a": 1}, "ok")
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert mon.flush(10)
    got = {r["request_id"]: r for r in collector.records.values()}
    assert set(got) == {"req-1", generated}
    assert got["req-1"]["id"] != "req-1"  # the record id is its own UUIDv7
    assert got[generated]["id"] == generated  # no request id given: the record id serves
    sent = {r["id"]: r for r in collector.received_records()}
    assert sent[got["req-1"]["id"]]["request_id"] == "req-1"
    assert "request_id" not in sent[generated]  # not sent twice


def test_a_generated_request_id_takes_labels_and_sampling(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, sample_rate=0.5)
    returned = [mon.log({"i": i}, "ok") for i in range(400)]
    for request_id in returned:
        mon.log_label(request_id, "fail")
    assert mon.flush(10)
    kept = {rid for rid in returned if is_sampled(rid, 0.5)}
    assert 100 < len(kept) < 300
    assert set(collector.records) == kept  # stored under the record id that log() returned
    assert {r["request_id"] for r in collector.records.values()} == kept
    assert {label["request_id"] for label in collector.labels} == kept
    assert mon.label_stats()["dropped"]["sampled_out"] == 400 - len(kept)


def test_metadata_is_rounded_and_features_are_not(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    features = {"x": 0.1234567890123, "y": 1 / 3}
    now = float(int(time.time()))
    mon.log(
        features,
        "ok",
        probabilities={"ok": 2 / 3, "fail": 1 / 3},
        latency_ms=1.23456789,
        ts=now + 0.1234567,
        request_id="r",
    )
    assert mon.flush(10)
    (record,) = collector.received_records()
    assert record["ts"] == now + 0.123
    assert record["latency_ms"] == 1.235
    assert record["probabilities"] == {"ok": 0.666667, "fail": 0.333333}
    assert record["features"] == features


def test_ts_is_seconds_now_unless_given(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    before = time.time()
    mon.log({"a": 1}, "ok", request_id="now")
    mon.log({"a": 1}, "ok", request_id="given", ts=before - 3600)
    assert mon.flush(10)
    got = {r["request_id"]: r["ts"] for r in collector.records.values()}
    # Both to the millisecond: "now" is truncated, a given ts rounded.
    assert int(before * 1000) / 1000 <= got["now"] <= time.time()
    assert got["given"] == round(before - 3600, 3)
    assert all(len(repr(ts).partition(".")[2]) <= 3 for ts in got.values())


def test_log_label_never_raises(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    mon = make_monitor(collector.url)
    mon.log_label(None, "x")  # type: ignore[arg-type]
    mon.log_label("r", None)
    mon.log_label("r", object())
    mon.log_label("r", "x", ts=math.nan)
    mon.log_label("r", Weird())
    assert mon.label_stats()["dropped"]["invalid"] == 5
    assert mon.label_stats()["logged"] == 5


def test_stats_shape_matches_the_heartbeat_sdk_object(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url)
    stats = mon.stats()
    assert set(stats) == {
        "logged",
        "enqueued",
        "delivered",
        "dropped",
        "queue_depth",
        "spool_records",
        "spool_bytes",
        "retries",
        "auth_failures",
        "internal_errors",
    }
    assert tuple(stats["dropped"]) == wire.DROP_REASONS
    json.dumps(stats)


def test_sampling_and_labels_follow_their_records(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(collector.url, sample_rate=0.5, batch_size=1000)
    ids = [f"req-{i}" for i in range(400)]
    for request_id in ids:
        mon.log({"a": 1}, "ok", request_id=request_id)
        mon.log_label(request_id, "fail")
    assert mon.flush(10)
    kept = {i for i in ids if is_sampled(i, 0.5)}
    assert {r["request_id"] for r in collector.records.values()} == kept
    assert {label["request_id"] for label in collector.labels} == kept
    stats = check_invariants(mon)
    assert stats["dropped"]["sampled_out"] == 400 - len(kept)
    assert mon.label_stats()["dropped"]["sampled_out"] == 400 - len(kept)
    assert 100 < len(kept) < 300


def test_queue_full_is_counted(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    mon = make_monitor(collector.url, queue_size=10, batch_size=1000)
    for i in range(5000):
        mon.log({"i": i}, "ok")
    assert mon.flush(10) is False  # records were lost to the full queue
    stats = check_invariants(mon)
    assert stats["dropped"]["queue_full"] > 0
    assert stats["delivered"] == stats["enqueued"] == len(collector.records)


def test_flush_and_close_honour_their_deadline_when_the_collector_is_down(
    dead_url: str, make_monitor: MakeMonitor
) -> None:
    mon = make_monitor(dead_url, backoff_base=0.2, max_backoff=5.0)
    for i in range(20):
        mon.log({"i": i}, "ok")
    start = time.monotonic()
    assert mon.flush(0.5) is False
    assert time.monotonic() - start < 2.5
    start = time.monotonic()
    mon.close(0.5)
    assert time.monotonic() - start < 2.5
    assert mon.stats()["spool_records"] == 20  # left for the next start


def test_close_honours_its_deadline_when_the_collector_hangs(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    collector.always(wire.RECORDS_PATH, Reply(hang=8.0))
    mon = make_monitor(collector.url, timeout=30.0)
    mon.log({"a": 1}, "ok")
    assert wait_until(lambda: collector.to(wire.RECORDS_PATH))
    start = time.monotonic()
    mon.close(0.5)
    assert time.monotonic() - start < 3.0


def test_close_without_time_does_not_wait_or_warn_about_busy_threads(
    collector: ScriptedCollector, make_monitor: MakeMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    # close(0) (and atexit_timeout=0, as the fleet simulator uses on Ctrl-C) chose not to
    # wait: busy threads are expected, not worth a warning per node.
    collector.always(wire.RECORDS_PATH, Reply(hang=8.0))
    mon = make_monitor(collector.url, timeout=30.0)
    mon.log({"a": 1}, "ok")
    assert wait_until(lambda: collector.to(wire.RECORDS_PATH))

    with caplog.at_level(logging.WARNING, logger="monitor.sdk"):
        mon.close(0)

    assert [r.getMessage() for r in caplog.records] == []
    assert mon.stats()["spool_records"] == 1  # kept for the next start


def test_close_is_idempotent_and_log_after_close_is_counted(
    collector: ScriptedCollector, make_monitor: MakeMonitor
) -> None:
    with make_monitor(collector.url) as mon:
        mon.log({"a": 1}, "ok")
    assert len(collector.records) == 1  # __exit__ flushed
    mon.close()
    mon.log({"a": 2}, "ok")
    mon.log_label("x", 1)
    assert mon.flush(0.1) is False
    stats = check_invariants(mon)
    assert stats["dropped"]["queue_full"] == 1


def test_undelivered_records_wait_in_the_spool_for_the_next_start(
    dead_url: str, collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    spool = tmp_path / "shared"
    first = make_monitor(dead_url, spool_dir=spool)
    ids = [first.log({"i": i}, "ok") for i in range(30)]
    first.log_label(ids[0], "fail")
    first.close(0.3)

    second = make_monitor(collector.url, spool_dir=spool)
    assert wait_until(lambda: second.stats()["spool_records"] == 0 and len(collector.records) == 30)
    assert second.flush(10)
    assert [r["request_id"] for r in collector.records.values()] == ids
    assert [label["request_id"] for label in collector.labels] == [ids[0]]
    assert second.stats()["delivered"] == 30  # replayed records count where delivered


def test_a_torn_spool_line_after_a_crash_is_tolerated(
    dead_url: str, collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    spool = tmp_path / "torn"
    first = make_monitor(dead_url, spool_dir=spool)
    ids = [first.log({"i": i}, "ok") for i in range(5)]
    first.close(0.3)
    (segment,) = spool.glob("records-*.jsonl")
    with segment.open("ab") as f:
        f.write(b'{"id": "torn", "ts": 1')  # what a crash mid-write leaves behind

    second = make_monitor(collector.url, spool_dir=spool)
    second.log({"i": 5}, "ok", request_id="after")
    assert second.flush(10)
    assert [r["request_id"] for r in collector.records.values()] == [*ids, "after"]


def test_a_spool_line_damaged_but_intact_looking_costs_only_itself(
    dead_url: str, collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    # The spool judges lines by a cheap scan; a line that passes it but is not JSON makes the
    # collector refuse the batch, and the sender then skips just that line.
    spool = tmp_path / "damaged"
    first = make_monitor(dead_url, spool_dir=spool)
    ids = [first.log({"i": i}, "ok") for i in range(5)]
    first.close(0.3)
    (segment,) = spool.glob("records-*.jsonl")
    lines = segment.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"id":"bad","ts":%.3f,"features":{"i":2]]}\n' % time.time())
    segment.write_bytes(b"".join(lines))

    second = make_monitor(collector.url, spool_dir=spool)
    assert second.flush(10)
    assert [r["request_id"] for r in collector.records.values()] == ids
    statuses = [r.status for r in collector.to(wire.RECORDS_PATH)]
    assert statuses == [400, 200]
    assert second.stats()["dropped"]["rejected"] == 0


def test_spool_size_cap_is_counted_exactly(dead_url: str, make_monitor: MakeMonitor) -> None:
    mon = make_monitor(dead_url, spool_max_bytes=4000)
    for i in range(200):
        mon.log({"i": i, "pad": "x" * 50}, "ok")
    assert wait_until(lambda: mon.stats()["queue_depth"] == 0)
    assert wait_until(
        lambda: mon.stats()["spool_records"] + mon.stats()["dropped"]["spool_overflow"] == 200
    )
    stats = check_invariants(mon)
    assert 0 < stats["spool_records"] < 200
    assert stats["spool_bytes"] <= 4000


def test_spool_age_cap_counts_time_in_the_spool_exactly(
    dead_url: str, collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    spool = tmp_path / "aged"
    first = make_monitor(dead_url, spool_dir=spool)
    for i in range(5):
        first.log({"i": i}, "ok")
    first.close(0.3)
    time.sleep(1.1)  # the five have now waited longer than the second Monitor's age cap

    second = make_monitor(collector.url, spool_dir=spool, spool_max_age=1.0)
    now = time.time()
    for i in range(5, 10):  # fresh in the spool, whatever their ts says
        second.log({"i": i}, "ok", ts=now - 120 if i % 2 else 1.0)
    assert second.flush(10) is False  # done, but not everything it waited for was delivered
    assert sorted(r["features"]["i"] for r in collector.records.values()) == [5, 6, 7, 8, 9]
    stats = second.stats()
    assert stats["dropped"]["expired"] == 5
    assert stats["delivered"] == 5


def test_memory_only_mode(collector: ScriptedCollector, make_monitor: MakeMonitor) -> None:
    for disabled in (False, ""):
        mon = make_monitor(collector.url, spool_dir=disabled)
        mon.log({"a": 1}, "ok")
        assert mon.flush(10)
    assert len(collector.records) == 2


def test_default_spool_dir_is_per_model_under_the_cache(
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mon = make_monitor(collector.url, spool_dir=None)
    mon.log({"a": 1}, "ok")
    assert mon.flush(10)
    spool = tmp_path / "cache" / "edge-monitor" / "spool" / "pump"
    assert (spool / "lock").exists()
    assert list(spool.glob("records-*.jsonl"))


def test_second_monitor_on_a_spool_runs_memory_only(
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = make_monitor(collector.url, spool_dir=tmp_path / "one")
    second = make_monitor(collector.url, spool_dir=tmp_path / "one")
    first.log({"m": 1}, "ok")
    second.log({"m": 2}, "ok")
    assert first.flush(10) and second.flush(10)
    assert sorted(r["features"]["m"] for r in collector.records.values()) == [1, 2]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("memory-only" in r.getMessage() for r in errors)


def test_an_unusable_url_is_logged_not_raised(
    make_monitor: MakeMonitor, caplog: pytest.LogCaptureFixture
) -> None:
    mon = make_monitor("not a url")
    mon.log({"a": 1}, "ok")
    mon.heartbeat()
    assert mon.flush(0.3) is False
    assert wait_until(lambda: mon.stats()["spool_records"] == 1)
    assert any("url" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 1.5},
        {"sample_rate": -0.1},
        {"batch_size": 0},
        {"batch_size": wire.MAX_RECORDS_PER_BATCH + 1},
        {"queue_size": 0},
        {"gzip_level": 10},
        {"flush_interval": 0},
        {"spool_flush_interval": -1},
        {"heartbeat_interval": 0},
        {"telemetry": "not callable"},
        {"token": "emn_x\r\nX-Injected: 1"},
        {"token": None},
    ],
)
def test_plainly_invalid_arguments_raise_value_error(kwargs: dict[str, Any]) -> None:
    args = {"url": "http://127.0.0.1:1", "token": "t", "model": "pump", "model_version": "3"}
    args.update(kwargs)
    with pytest.raises(ValueError):
        Monitor(spool_dir=False, **args)


@pytest.mark.parametrize(
    "model", ["", "x" * (wire.MAX_ID_CHARS + 1), None, "pump\x00", "pump\ud800"]
)
def test_invalid_model_raises_value_error(model: Any) -> None:
    # A name the collector refuses would get every batch refused: refuse it up front.
    with pytest.raises(ValueError):
        Monitor("http://127.0.0.1:1", "t", model, "3", spool_dir=False)
    with pytest.raises(ValueError):
        Monitor("http://127.0.0.1:1", "t", "pump", model, spool_dir=False)


# -- in other processes ----------------------------------------------------------------------


def run_child(code: str, *, pipe: bool = True, **env: str) -> subprocess.Popen[str]:
    """``python -c code`` in the repository; its stdout is a pipe only if asked for."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE if pipe else None,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def test_records_survive_sigkill_after_the_spool_flush_interval(
    dead_url: str, collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    interval = 0.2
    child = run_child(
        """
        import os, time
        from monitor.sdk import Monitor
        mon = Monitor(os.environ["URL"], "t", "pump", "3", spool_dir=os.environ["SPOOL"],
                      spool_flush_interval=float(os.environ["INTERVAL"]),
                      heartbeat_interval=None, backoff_base=5.0,
                      batch_size=10_000, queue_size=100_000)  # only the timer writes
        for i in range(500):
            mon.log({"i": i}, "ok", request_id=f"req-{i}")
            if i == 250:
                mon.log_label(f"req-{i}", "fail")
        print("logged", flush=True)
        time.sleep(60)
        """,
        URL=dead_url,
        SPOOL=str(tmp_path / "crash"),
        INTERVAL=str(interval),
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "logged"
        time.sleep(interval)  # the promise: older than one spool_flush_interval is on disk
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()  # under -W error an unclosed pipe fails the test

    mon = make_monitor(collector.url, spool_dir=tmp_path / "crash")
    assert wait_until(lambda: len(collector.records) == 500)
    assert mon.flush(10)
    received = collector.received_records()
    assert len(received) == 500  # no duplicates by record id either
    assert len({r["id"] for r in received}) == 500
    assert {r["request_id"] for r in received} == {f"req-{i}" for i in range(500)}
    assert [label["request_id"] for label in collector.labels] == ["req-250"]


def test_exit_without_close_flushes_via_atexit(
    collector: ScriptedCollector, tmp_path: Path
) -> None:
    child = run_child(
        """
        import os
        from monitor.sdk import Monitor
        mon = Monitor(os.environ["URL"], "t", "pump", "3", spool_dir=os.environ["SPOOL"],
                      flush_interval=30.0, heartbeat_interval=None)
        for i in range(25):
            mon.log({"i": i}, "ok")
        """,
        pipe=False,
        URL=collector.url,
        SPOOL=str(tmp_path / "atexit"),
    )
    assert child.wait(20) == 0
    assert len(collector.records) == 25


def test_exit_with_the_collector_down_is_bounded_by_atexit_timeout(
    dead_url: str, tmp_path: Path
) -> None:
    child = run_child(
        """
        import os
        from monitor.sdk import Monitor
        mon = Monitor(os.environ["URL"], "t", "pump", "3", spool_dir=os.environ["SPOOL"],
                      atexit_timeout=0.5, heartbeat_interval=None)
        mon.log({"i": 1}, "ok")
        """,
        pipe=False,
        URL=dead_url,
        SPOOL=str(tmp_path / "atexit"),
    )
    start = time.monotonic()
    assert child.wait(20) == 0
    assert time.monotonic() - start < 10  # interpreter start + 0.5 s, generously
