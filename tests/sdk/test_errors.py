"""Internal errors: caught, counted, logged and passed to the hook; never raised."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from monitor.sdk import Monitor, set_internal_error_hook
from monitor.sdk.errors import report_internal_error
from monitor.sdk.spool import DiskStream

from .fakes import ScriptedCollector, wait_until

MakeMonitor = Callable[..., Monitor]


def test_hook_receives_errors_and_a_failing_hook_is_contained(
    internal_errors: list[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    exc = RuntimeError("boom")
    report_internal_error(exc, "here")
    assert internal_errors == [exc]
    internal_errors.clear()

    def bad_hook(e: BaseException) -> None:
        raise ValueError("hook is broken")

    set_internal_error_hook(bad_hook)
    report_internal_error(exc, "here")  # does not raise
    assert any("internal error in here" in r.getMessage() for r in caplog.records)


def test_error_inside_log_is_counted_not_raised(
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    internal_errors: list[BaseException],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mon = make_monitor(collector.url)

    def broken(*args: object) -> None:
        raise RuntimeError("enqueue is broken")

    monkeypatch.setattr(mon, "_enqueue", broken)
    assert mon.log({"a": 1}, "ok", request_id="r1") == "r1"
    assert mon.stats()["internal_errors"] == 1
    assert [str(e) for e in internal_errors] == ["enqueue is broken"]
    internal_errors.clear()


def test_error_in_the_sender_is_counted_and_the_sender_carries_on(
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    internal_errors: list[BaseException],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_peek = DiskStream.peek
    calls = {"n": 0}

    def flaky_peek(self: DiskStream, *args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("peek is broken once")
        return real_peek(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DiskStream, "peek", flaky_peek)
    mon = make_monitor(collector.url)
    mon.log({"a": 1}, "ok")
    assert wait_until(lambda: len(collector.records) == 1)
    assert mon.stats()["internal_errors"] == 1
    assert [str(e) for e in internal_errors] == ["peek is broken once"]
    internal_errors.clear()


def test_an_error_in_the_labels_sender_is_reported_with_the_others(
    collector: ScriptedCollector,
    make_monitor: MakeMonitor,
    internal_errors: list[BaseException],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_peek = DiskStream.peek
    calls = {"n": 0}

    def flaky_peek(self: DiskStream, *args: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("peek is broken once")
        return real_peek(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(DiskStream, "peek", flaky_peek)
    mon = make_monitor(collector.url)
    mon.log_label("r1", "fail")  # only the labels sender reads the spool
    assert wait_until(lambda: len(collector.labels) == 1)
    assert mon.stats()["internal_errors"] == 1  # where the heartbeat reports it
    assert [str(e) for e in internal_errors] == ["peek is broken once"]
    internal_errors.clear()
