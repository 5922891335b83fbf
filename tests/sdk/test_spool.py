"""The spool: append/read/ack, replay after reopening, caps, corrupt data, and the lock."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.sdk.spool import (
    Spool,
    SpoolLocked,
    _line_ts,
    _split,
    open_disk_spool,
    open_memory_spool,
    spool_stamp,
)
from monitor.sdk.worker import encode_line

MB = 1024 * 1024


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


NOW = time.time()
#: Bytes a disk spool writes before each line: its spool time and a tab.
STAMP = len(spool_stamp(NOW))


def line(i: int, ts: float = NOW, pad: int = 0) -> bytes:
    return json.dumps({"id": f"r{i}", "ts": ts, "pad": "x" * pad}).encode() + b"\n"


def ids(lines: list[bytes]) -> list[str]:
    return [json.loads(raw)["id"] for raw in lines]


def stored(spool: Spool, raw: bytes) -> int:
    """Bytes of the spool's cap that the line ``raw`` takes: on disk, with its spool time."""
    return len(raw) + (0 if spool.path is None else STAMP)


def drain(spool: Spool, batch: int = 1000) -> list[bytes]:
    """Read and acknowledge everything in the records stream."""
    out: list[bytes] = []
    while (chunk := spool.records.peek(batch, 10 * MB)) is not None:
        out += chunk.lines
        spool.records.ack(chunk)
    return out


OpenSpool = Callable[..., Spool]


@pytest.fixture(params=["disk", "memory"])
def open_any(request: pytest.FixtureRequest, tmp_path: Path) -> OpenSpool:
    """Opens a disk spool in tmp_path, or a memory spool (same accounting)."""

    def opener(max_bytes: int = 100 * MB, max_age: float = 1e9, **kw: object) -> Spool:
        if request.param == "memory":
            return open_memory_spool(max_bytes, max_age, **kw)  # type: ignore[arg-type]
        return open_disk_spool(tmp_path / "spool", max_bytes, max_age, **kw)  # type: ignore[arg-type]

    return opener


def test_append_peek_ack(open_any: OpenSpool) -> None:
    spool = open_any()
    assert spool.records.peek(10, MB) is None
    assert spool.records.append([line(i) for i in range(25)]) == 25
    assert spool.records.pending_records == 25
    chunk = spool.records.peek(10, MB)
    assert chunk is not None
    assert ids(chunk.lines) == [f"r{i}" for i in range(10)]
    # Peeking again without acknowledging gives the same lines (the retry path).
    again = spool.records.peek(10, MB)
    assert again is not None and again.lines == chunk.lines
    spool.records.ack(chunk)
    assert spool.records.pending_records == 15
    assert ids(drain(spool)) == [f"r{i}" for i in range(10, 25)]
    assert spool.records.pending_records == 0
    assert spool.records.pending_bytes == 0
    spool.close()


def test_batch_respects_max_bytes(open_any: OpenSpool) -> None:
    spool = open_any()
    spool.records.append([line(i, pad=100) for i in range(10)])
    one = len(line(0, pad=100)) - 1
    chunk = spool.records.peek(100, 3 * one + 1)
    assert chunk is not None and len(chunk.lines) == 3
    spool.close()


def test_size_cap_drops_newest_and_counts_exactly(open_any: OpenSpool) -> None:
    probe = open_any(max_bytes=0)
    size = stored(probe, line(0))
    probe.close()
    spool = open_any(max_bytes=10 * size + size // 2)
    assert spool.records.append([line(i) for i in range(25)]) == 10
    assert spool.records.pending_bytes == 10 * size
    assert ids(drain(spool)) == [f"r{i}" for i in range(10)]  # the oldest were kept
    # Acknowledging frees the budget again.
    assert spool.records.append([line(i) for i in range(5)]) == 5
    spool.close()


def test_cap_is_shared_by_records_and_labels(open_any: OpenSpool) -> None:
    probe = open_any(max_bytes=0)
    size = stored(probe, line(0))
    probe.close()
    spool = open_any(max_bytes=4 * size)
    assert spool.records.append([line(i) for i in range(3)]) == 3
    assert spool.labels.append([line(i) for i in range(3)]) == 1
    spool.close()


def test_age_cap_counts_expired_exactly(open_any: OpenSpool) -> None:
    clock = Clock()
    spool = open_any(max_age=60.0, clock=clock)
    spool.records.append([line(i) for i in range(10)])
    clock.now += 50
    spool.records.append([line(i) for i in range(10, 30)])
    clock.now += 20  # the first ten have waited 70 s, the others 20 s
    expired = 0
    kept: list[bytes] = []
    while (chunk := spool.records.peek(7, MB)) is not None:
        expired += chunk.expired
        kept += chunk.lines
        assert chunk.spooled == [clock.now - 20] * len(chunk.lines)
        spool.records.ack(chunk)
    assert expired == 10
    assert ids(kept) == [f"r{i}" for i in range(10, 30)]
    assert spool.records.pending_records == 0
    spool.close()


def test_age_is_time_in_the_spool_not_the_age_of_ts(open_any: OpenSpool) -> None:
    # A device whose clock was never set stamps its records 1970; they are as fresh as any.
    clock = Clock(NOW)
    spool = open_any(max_age=60.0, clock=clock)
    spool.records.append([line(0, ts=1.0), line(1, ts=NOW - 7 * 86400), line(2, ts=NOW + 1e9)])
    clock.now += 59
    chunk = spool.records.peek(10, MB)
    assert chunk is not None and chunk.expired == 0
    assert ids(chunk.lines) == ["r0", "r1", "r2"]
    assert [json.loads(raw)["ts"] for raw in chunk.lines] == [1.0, NOW - 7 * 86400, NOW + 1e9]
    spool.close()


def test_oversized_line_is_reported_too_large(open_any: OpenSpool) -> None:
    spool = open_any()
    spool.records.append([line(0), line(1, pad=5000), line(2)])
    chunk = spool.records.peek(10, 1000)
    assert chunk is not None and ids(chunk.lines) == ["r0"]
    spool.records.ack(chunk)
    chunk = spool.records.peek(10, 1000)
    assert chunk is not None and chunk.too_large == 1 and ids(chunk.lines) == ["r2"]
    spool.close()


def test_flush_targets(open_any: OpenSpool) -> None:
    spool = open_any()
    spool.records.append([line(i) for i in range(5)])
    target = spool.records.tail()
    assert not spool.records.reached(target)
    assert not spool.records.wait_acked(target, 0.01)
    drain(spool)
    assert spool.records.reached(target)
    assert spool.records.wait_acked(target, 0.01)
    spool.close()


# -- disk only -------------------------------------------------------------------------------


def test_unacknowledged_lines_survive_reopening(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.records.append([line(i) for i in range(20)])
    spool.labels.append([line(100)])
    chunk = spool.records.peek(8, MB)
    assert chunk is not None
    spool.records.ack(chunk)
    spool.close()

    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    assert spool.records.pending_records == 12
    assert spool.labels.pending_records == 1
    assert ids(drain(spool)) == [f"r{i}" for i in range(8, 20)]
    spool.close()


def test_segments_rotate_and_are_deleted_once_acknowledged(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9, segment_bytes=1000)
    for start in range(0, 200, 10):
        spool.records.append([line(i) for i in range(start, start + 10)])
    segments = sorted(tmp_path.glob("records-*.jsonl"))
    assert len(segments) > 5
    assert all(p.stat().st_size <= 1000 + STAMP + len(line(0)) for p in segments)
    assert ids(drain(spool, batch=33)) == [f"r{i}" for i in range(200)]
    assert len(list(tmp_path.glob("records-*.jsonl"))) == 1
    spool.close()
    # Nothing is replayed after a full acknowledgement.
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9, segment_bytes=1000)
    assert spool.records.pending_records == 0
    assert spool.records.peek(10, MB) is None
    spool.close()


def test_torn_last_line_is_cut_off_on_reopening(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.records.append([line(i) for i in range(5)])
    spool.close()
    (segment,) = tmp_path.glob("records-*.jsonl")
    with segment.open("ab") as f:
        f.write(line(5)[:-7])  # a crash in the middle of a write
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    assert spool.records.pending_records == 5
    spool.records.append([line(6)])  # appends start on a clean line
    assert ids(drain(spool)) == ["r0", "r1", "r2", "r3", "r4", "r6"]
    spool.close()


def test_torn_line_alone_in_a_segment(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.close()
    (segment,) = tmp_path.glob("records-*.jsonl")
    segment.write_bytes(b'{"id": "r0", "t')
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    assert spool.records.pending_records == 0
    assert segment.stat().st_size == 0
    spool.close()


def test_garbage_lines_are_skipped(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.close()
    (segment,) = tmp_path.glob("records-*.jsonl")
    segment.write_bytes(line(0) + b"\x00\x00\x00\n" + b"[1, 2]\n" + b"\n" + line(1))
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    chunk = spool.records.peek(100, MB)
    assert chunk is not None
    assert ids(chunk.lines) == ["r0", "r1"]
    assert chunk.corrupt == 3
    spool.records.ack(chunk)
    assert spool.records.pending_records == 0
    spool.close()


@pytest.mark.parametrize(
    ("obj", "ts"),
    [
        ({"id": "01a2", "ts": 1732530000.125, "features": {"ts": 1}}, 1732530000.125),
        ({"id": "01a2", "ts": 5, "request_id": 'q","ts":1,'}, 5.0),
        ({"request_id": 'x","ts":1}', "label": "a,b", "ts": 2.5}, 2.5),  # labels: ts last
        ({"request_id": "q", "label": 7, "ts": 1e-3}, 0.001),
    ],
)
def test_ts_scan_reads_what_the_sdk_writes(obj: dict[str, object], ts: float) -> None:
    raw = encode_line(obj)[:-1]
    assert _line_ts(raw) == ts == json.loads(raw)["ts"]


def test_a_line_is_its_spool_time_then_its_wire_json() -> None:
    raw = encode_line({"id": "r", "ts": 1.5, "features": {"a": "x\ty"}})[:-1]
    line = spool_stamp(1732530000.125) + raw
    assert line.count(b"\t") == 1  # JSON escapes a tab, so the first one ends the time
    assert _split(line, 0, len(line)) == (raw, 1732530000.125)
    assert _split(b"xx" + line + b"yy", 2, 2 + len(line)) == (raw, 1732530000.125)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"", None),
        (b"12.5\t", None),
        (b"12.5\t[1, 2]", None),
        (b"soon\t{}", None),
        (b"nan\t{}", None),
        (b"inf\t{}", None),
        (b"12.5" + b"0" * 40 + b"\t{}", None),  # no tab where a spool time ends
        (b'12.5\t{"id": "r0", "ts": 1', None),  # torn
        (b'12.5\t{"id": "r0\x00\x00"}', None),  # zero-filled
        (b'12.5\t{"id": "r0"}', (b'{"id": "r0"}', 12.5)),  # ts is the collector's to judge
        ('12.5\t{"id": "é"}'.encode(), ('{"id": "é"}'.encode(), 12.5)),  # json decides
    ],
)
def test_damaged_lines_are_told_from_good_ones(
    line: bytes, expected: tuple[bytes, float] | None
) -> None:
    assert _split(line, 0, len(line)) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"[1, 2]", None),
        (b'{"id": "r0", "ts": 1', None),  # torn
        (b'{"id": "r0", "t\x00\x00\x00s": 1}', None),  # zero-filled
        (b'{"id": "r0", "ts": "soon"}', None),
        (b'{"id": "r0", "ts": NaN}', None),
        (b'{"id": "r0"}', None),
        ('{"id": "é", "ts": 1}'.encode(), 1.0),  # not ASCII: json.loads decides
        (b'{"id": "r0", "ts": -1}', -1.0),
        (b'{"id": "r0", "ts": 100.5}', 100.5),
    ],
)
def test_a_line_spooled_before_spool_times_is_aged_by_its_ts(
    raw: bytes, expected: float | None
) -> None:
    assert _split(raw, 0, len(raw)) == (None if expected is None else (raw, expected))


def test_a_spool_written_before_spool_times_is_read_and_aged_by_ts(tmp_path: Path) -> None:
    clock = Clock(NOW)
    open_disk_spool(tmp_path, 100 * MB, 60.0).close()
    (segment,) = tmp_path.glob("records-*.jsonl")
    segment.write_bytes(line(0, ts=NOW - 120) + line(1, ts=NOW - 10))
    spool = open_disk_spool(tmp_path, 100 * MB, 60.0, clock=clock)
    spool.records.append([line(2, ts=1.0)])
    chunk = spool.records.peek(10, MB)
    assert chunk is not None
    assert (chunk.expired, ids(chunk.lines)) == (1, ["r1", "r2"])
    assert chunk.spooled == [NOW - 10, round(NOW, 3)]
    spool.close()


def test_unreadable_ack_file_replays_everything(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.records.append([line(i) for i in range(4)])
    chunk = spool.records.peek(2, MB)
    assert chunk is not None
    spool.records.ack(chunk)
    spool.close()
    (tmp_path / "records.ack").write_text("{not json")
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    assert ids(drain(spool)) == ["r0", "r1", "r2", "r3"]
    spool.close()


def test_ack_file_is_replaced_atomically(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.records.append([line(i) for i in range(4)])
    chunk = spool.records.peek(3, MB)
    assert chunk is not None
    spool.records.ack(chunk)
    assert json.loads((tmp_path / "records.ack").read_text()) == {
        "segment": 1,
        "offset": 3 * (STAMP + len(line(0))),
    }
    assert not list(tmp_path.glob("*.tmp"))
    spool.close()


def test_existing_data_over_a_lowered_cap_is_kept_but_blocks_appends(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path, 100 * MB, 1e9)
    spool.records.append([line(i) for i in range(10)])
    spool.close()
    spool = open_disk_spool(tmp_path, 3 * len(line(0)), 1e9)
    assert spool.records.pending_records == 10
    assert spool.records.append([line(99)]) == 0
    assert len(drain(spool)) == 10
    assert spool.records.append([line(99)]) == 1
    spool.close()


def test_second_opener_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = open_disk_spool(tmp_path, MB, 1e9)
    with pytest.raises(SpoolLocked):
        open_disk_spool(tmp_path, MB, 1e9)
    first.close()
    second = open_disk_spool(tmp_path, MB, 1e9)
    second.close()


def test_spool_files_are_private(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path / "s", MB, 1e9)
    spool.records.append([line(0)])
    (segment,) = (tmp_path / "s").glob("records-*.jsonl")
    assert os.stat(segment).st_mode & 0o077 == 0
    spool.close()


def test_peek_after_reads_past_an_unacknowledged_chunk(open_any: OpenSpool) -> None:
    spool = open_any()
    spool.records.append([line(i) for i in range(5)])
    first = spool.records.peek(2, 10 * MB)
    assert first is not None and ids(first.lines) == ["r0", "r1"]
    second = spool.records.peek(2, 10 * MB, after=first.end)
    assert second is not None and ids(second.lines) == ["r2", "r3"]
    assert spool.records.peek(2, 10 * MB, after=first.then(second).end) is not None
    spool.records.ack(first.then(second))  # both at once
    assert spool.records.pending_records == 1
    assert ids(drain(spool)) == ["r4"]
    assert spool.records.peek(2, 10 * MB) is None


def test_peek_after_crosses_segments(tmp_path: Path) -> None:
    spool = open_disk_spool(tmp_path / "spool", 100 * MB, 1e9, segment_bytes=250)
    spool.records.append([line(i, pad=60) for i in range(6)])  # two lines a segment
    seen: list[str] = []
    chunk = spool.records.peek(1, 10 * MB)
    assert chunk is not None
    seen += ids(chunk.lines)
    while (later := spool.records.peek(1, 10 * MB, after=chunk.end)) is not None:
        seen += ids(later.lines)
        chunk = chunk.then(later)
    assert seen == [f"r{i}" for i in range(6)]
    spool.records.ack(chunk)
    assert spool.records.pending_records == 0
    assert len(list((tmp_path / "spool").glob("records-*.jsonl"))) == 1
    spool.close()
