"""A Monitor across os.fork(): parent and child each deliver their own records exactly once."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

from monitor import wire
from monitor.sdk import Monitor

from .fakes import Reply, ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]
REPO = Path(__file__).resolve().parents[2]


def fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process: the point of these tests.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def exit_status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def request_ids(collector: ScriptedCollector) -> collections.Counter[str]:
    return collections.Counter(r.get("request_id", r["id"]) for r in collector.received_records())


def test_parent_and_child_each_deliver_their_records_once(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    # A slow collector keeps the parent's sender busy with a request in flight, and its
    # writer's queue non-empty, at the moment of the fork.
    collector.push(wire.RECORDS_PATH, Reply(hang=0.3))
    mon = make_monitor(collector.url, heartbeat_interval=0.05)
    for i in range(30):
        mon.log({"i": i}, "ok", request_id=f"parent-before-{i}")
    assert wait_until(lambda: collector.to(wire.RECORDS_PATH))  # the hanging request is out
    for i in range(30):
        mon.log({"i": i}, "ok", request_id=f"parent-queued-{i}")

    pid = fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status only
        code = 1
        try:
            for i in range(40):
                mon.log({"i": i}, "ok", request_id=f"child-{i}")
            mon.log_label("child-3", "fail")
            delivered = mon.flush(30)
            stats = mon.stats()
            mon.close(5)
            code = 0 if delivered and stats["internal_errors"] == 0 else 2
        finally:
            os._exit(code)

    for i in range(30):
        mon.log({"i": i}, "ok", request_id=f"parent-after-{i}")
    assert mon.flush(30)
    assert exit_status(pid) == 0

    expected = {f"parent-{when}-{i}" for when in ("before", "queued", "after") for i in range(30)}
    expected |= {f"child-{i}" for i in range(40)}
    counts = request_ids(collector)
    assert set(counts) == expected
    assert set(counts.values()) == {1}  # nothing sent twice, not even retried
    assert [label["request_id"] for label in collector.labels] == ["child-3"]
    # The parent's counters are its own; the child's started from zero.
    stats = mon.stats()
    assert stats["logged"] == 90 and stats["delivered"] == 90 and stats["internal_errors"] == 0
    # Each process spooled in its own directory: the child in fork-<pid>.
    spool = tmp_path / "spool"
    assert (spool / f"fork-{pid}" / "lock").exists()
    # The parent's spool is still its own: heartbeats and records keep flowing after the fork.
    before = len(collector.to(wire.HEARTBEATS_PATH))
    mon.log({"i": 0}, "ok", request_id="parent-last")
    assert mon.flush(30)
    assert wait_until(lambda: len(collector.to(wire.HEARTBEATS_PATH)) > before)
    assert request_ids(collector)["parent-last"] == 1


def test_a_child_that_never_logs_starts_nothing(
    collector: ScriptedCollector, make_monitor: MakeMonitor, tmp_path: Path
) -> None:
    mon = make_monitor(collector.url)
    mon.log({"i": 1}, "ok", request_id="parent")
    pid = fork()
    if pid == 0:  # pragma: no cover
        code = 1
        try:
            import threading

            mon.close(5)
            # No thread was started and no spool directory was made for this child.
            made = (tmp_path / "spool" / f"fork-{os.getpid()}").exists()
            code = 0 if threading.active_count() == 1 and not made else 2
        finally:
            os._exit(code)
    assert exit_status(pid) == 0
    assert mon.flush(30)
    assert request_ids(collector) == {"parent": 1}


def test_a_later_child_sends_what_an_earlier_one_left_behind(
    dead_url: str, collector: ScriptedCollector, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    # An earlier process forked a child that spooled while the collector was down.
    offline = Monitor(dead_url, "t", "pump", "3", spool_dir=spool, heartbeat_interval=None)
    pid = fork()
    if pid == 0:  # pragma: no cover
        code = 1
        try:
            for i in range(10):
                offline.log({"i": i}, "ok", request_id=f"orphan-{i}")
            offline.close(0.5)
            code = 0 if offline.stats()["spool_records"] == 10 else 2
        finally:
            os._exit(code)
    assert exit_status(pid) == 0
    offline.close(0.5)
    assert (spool / f"fork-{pid}").is_dir()

    # This process's Monitor on the same directory forks a child: it adopts the leftovers.
    mon = Monitor(
        collector.url,
        "t",
        "pump",
        "3",
        spool_dir=spool,
        heartbeat_interval=None,
        flush_interval=0.05,
        spool_flush_interval=0.05,
    )
    try:
        child = fork()
        if child == 0:  # pragma: no cover
            code = 1
            try:
                mon.log({"i": 0}, "ok", request_id="new-child")
                code = 0 if mon.flush(30) and mon.stats()["delivered"] == 11 else 2
                mon.close(5)
            finally:
                os._exit(code)
        assert exit_status(child) == 0
    finally:
        mon.close(1)
    counts = request_ids(collector)
    assert counts == {"new-child": 1, **{f"orphan-{i}": 1 for i in range(10)}}


def test_a_forked_child_exiting_normally_flushes_and_does_not_hang(
    collector: ScriptedCollector, tmp_path: Path
) -> None:
    # A real interpreter exit in the child (atexit, thread shutdown), outside pytest.
    script = textwrap.dedent(
        """
        import os, sys
        from monitor.sdk import Monitor
        mon = Monitor(os.environ["URL"], "t", "pump", "3", spool_dir=os.environ["SPOOL"],
                      flush_interval=30.0, heartbeat_interval=0.05)
        mon.log({"i": 0}, "ok", request_id="parent-0")
        pid = os.fork()
        if pid == 0:
            for i in range(20):
                mon.log({"i": i}, "ok", request_id=f"child-{i}")
            sys.exit(0)  # no close(): the interpreter-exit hook flushes
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "URL": collector.url, "SPOOL": str(tmp_path)},
        timeout=60,  # only a hang reaches it
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "child 0"
    counts = request_ids(collector)
    assert counts == {"parent-0": 1, **{f"child-{i}": 1 for i in range(20)}}


def test_the_sdk_never_imports_the_host_name_codec_lazily() -> None:
    # getaddrinfo imports encodings.idna on first use, holding that module's import lock; a
    # sender caught there at fork() left the child's lock held and its connections hung (one
    # run in three of the test above). Imported with the SDK, it is never imported lazily.
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, monitor.sdk; print('encodings.idna' in sys.modules)"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )

    assert proc.stdout.strip() == "True", proc.stderr
