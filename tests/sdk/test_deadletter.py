"""The dead-letter file: one JSON object per quarantined line, bounded, newest kept."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from monitor.sdk.deadletter import CURRENT, PREVIOUS, DeadLetter
from monitor.sdk.worker import encode_line


def line(i: int, pad: int = 0) -> bytes:
    return encode_line({"id": f"r{i}", "ts": 1.5, "features": {"pad": "x" * pad}})[:-1]


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()]


def test_an_entry_keeps_the_line_as_sent_and_why(tmp_path: Path) -> None:
    dead = DeadLetter(tmp_path / "dl", 1 << 20, clock=lambda: 1234.5)
    where = dead.add("records", line(1), 500, "internal_error", 5)
    assert where == dead.path == tmp_path / "dl" / CURRENT
    assert entries(where) == [
        {
            "at": 1234.5,
            "kind": "records",
            "status": 500,
            "code": "internal_error",
            "failures": 5,
            "line": json.loads(line(1)),
        }
    ]
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o600


def test_a_line_that_is_not_json_is_kept_as_text(tmp_path: Path) -> None:
    dead = DeadLetter(tmp_path, 1 << 20)
    where = dead.add("records", b'{"id":"x","ts":1,"f":[}', 500, None, 5)
    assert where is not None
    (entry,) = entries(where)
    assert entry["text"] == '{"id":"x","ts":1,"f":[}' and "line" not in entry


def test_the_files_never_hold_more_than_max_bytes_and_keep_the_newest(tmp_path: Path) -> None:
    max_bytes = 4096
    dead = DeadLetter(tmp_path, max_bytes)
    for i in range(200):
        dead.add("records", line(i, pad=40), 500, "internal_error", 5)
    current, previous = tmp_path / CURRENT, tmp_path / PREVIOUS
    assert current.stat().st_size + previous.stat().st_size <= max_bytes
    kept = [e["line"]["id"] for e in entries(previous) + entries(current)]  # type: ignore[index]
    assert kept == [f"r{i}" for i in range(200 - len(kept), 200)]  # the newest, in order
    assert previous.stat().st_size > max_bytes // 2 - 200  # a whole half's worth is kept


def test_a_line_too_big_for_the_file_keeps_its_id_and_size(tmp_path: Path) -> None:
    dead = DeadLetter(tmp_path, 1000)
    big = line(7, pad=2000)
    where = dead.add("records", big, 500, "internal_error", 5)
    assert where is not None
    (entry,) = entries(where)
    assert (entry["id"], entry["line_bytes"]) == ("r7", len(big))
    assert "line" not in entry
    assert where.stat().st_size <= 500


def test_without_a_directory_or_a_budget_nothing_is_written(tmp_path: Path) -> None:
    assert DeadLetter(None, 1 << 20).add("records", line(1), 500, None, 5) is None
    off = DeadLetter(tmp_path / "dl", 0)
    assert off.path is None
    assert off.add("records", line(1), 500, None, 5) is None
    assert not (tmp_path / "dl").exists()
