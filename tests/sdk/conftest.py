"""Fixtures for the SDK tests: a scripted collector, Monitor factories, and the rule that any
SDK internal error fails the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.sdk import Monitor
from monitor.sdk.errors import set_internal_error_hook

from .fakes import ScriptedCollector


@pytest.fixture(autouse=True)
def internal_errors() -> Iterator[list[BaseException]]:
    """Collects SDK internal errors; the test fails if any is left in the list at the end.

    A test that provokes one on purpose asserts on the list and clears it.
    """
    errors: list[BaseException] = []
    set_internal_error_hook(errors.append)
    yield errors
    set_internal_error_hook(None)
    if errors:
        pytest.fail(f"SDK internal errors: {errors!r}")


@pytest.fixture
def collector() -> Iterator[ScriptedCollector]:
    server = ScriptedCollector()
    yield server
    server.close()


#: Fast settings for tests: short intervals and backoffs, no periodic heartbeats.
FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "spool_flush_interval": 0.05,
    "backoff_base": 0.01,
    "max_backoff": 0.05,
    "heartbeat_interval": None,
    "timeout": 5.0,
}


@pytest.fixture
def make_monitor(tmp_path: Path) -> Iterator[Callable[..., Monitor]]:
    """``make_monitor(url, **overrides)``: a Monitor with FAST settings and a per-test spool."""
    made: list[Monitor] = []

    def make(url: str, **kwargs: Any) -> Monitor:
        options = {**FAST, "spool_dir": tmp_path / "spool", **kwargs}
        mon = Monitor(url, "emn_test", "pump", "3", **options)
        made.append(mon)
        return mon

    yield make
    for mon in made:
        mon.close(timeout=0.5)  # tests that need delivery flush themselves
