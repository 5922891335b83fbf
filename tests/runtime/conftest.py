"""Fixtures for the runtime tests: the shipped demo model, readings, a fake collector, and the
rule that any SDK internal error fails the test."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from monitor.demo_model import DemoFiles, paths
from monitor.fleet.machines import MachineFleetGenerator
from monitor.runtime import EdgeRuntime, ModelCard
from monitor.sdk.errors import set_internal_error_hook

from .registry import RegistryServer


@pytest.fixture(autouse=True)
def internal_errors() -> Iterator[list[BaseException]]:
    errors: list[BaseException] = []
    set_internal_error_hook(errors.append)
    yield errors
    set_internal_error_hook(None)
    if errors:
        pytest.fail(f"SDK internal errors: {errors!r}")


@pytest.fixture(scope="session")
def demo() -> DemoFiles:
    return paths()


@pytest.fixture(scope="session")
def card(demo: DemoFiles) -> ModelCard:
    return ModelCard.load(demo.card)


@pytest.fixture(scope="session")
def rows() -> list[dict[str, Any]]:
    """2,000 clean readings of the training distribution (not the training data)."""
    return MachineFleetGenerator(123).readings(2_000).rows()


@pytest.fixture
def runtime(demo: DemoFiles) -> Iterator[EdgeRuntime]:
    rt = EdgeRuntime(demo.model)
    yield rt
    rt.close()


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    server = RegistryServer()
    yield server
    server.close()


class RecordingMonitor:
    """Stands in for an SDK Monitor: remembers every log() call."""

    def __init__(self, model: str, model_version: str) -> None:
        self.model = model
        self.model_version = model_version
        self.logged: list[dict[str, Any]] = []
        self.labels: list[tuple[str, Any]] = []
        self.closed = threading.Event()
        self._n = 0
        self._lock = threading.Lock()

    def log(self, features: Any, prediction: Any, **kwargs: Any) -> str:
        with self._lock:
            self._n += 1
            request_id = kwargs.get("request_id") or f"{self.model_version}-{self._n}"
            self.logged.append({"features": features, "prediction": prediction, **kwargs})
        if self.closed.is_set():
            raise AssertionError("log() on a closed Monitor")
        return request_id

    def log_label(self, request_id: str, label: Any) -> None:
        self.labels.append((request_id, label))

    def close(self, timeout: float = 10.0) -> None:
        self.closed.set()


@pytest.fixture
def recording_factory() -> tuple[Callable[..., RecordingMonitor], list[RecordingMonitor]]:
    """A MonitorFactory making RecordingMonitors, and the list of those made."""
    made: list[RecordingMonitor] = []

    def factory(model_version: str, telemetry: Callable[[], dict[str, Any]]) -> RecordingMonitor:
        mon = RecordingMonitor("pump-failure", model_version)
        mon.telemetry = telemetry  # type: ignore[attr-defined]
        made.append(mon)
        return mon

    return factory, made
