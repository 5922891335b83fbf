"""What every route needs: settings, the engine, metrics and small caches, per process."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from starlette.requests import Request

from monitor.collector.metrics import Metrics
from monitor.config import Settings
from monitor.errors import ValidationFailed
from monitor.storage import models


@dataclass
class CollectorState:
    """Per-process state of the collector app."""

    settings: Settings
    engine: Engine
    metrics: Metrics = field(default_factory=Metrics)
    _versions: dict[tuple[int, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def model_id(self, conn: Connection, name: str, path: str = "model") -> int:
        """The id of a registered model; an unknown name is the caller's error."""
        model = models.find_model(conn, name)
        if model is None:
            raise ValidationFailed(
                f"unknown model {name!r}: register it first (edge-monitor models add)",
                code="unknown_model",
                details=[{"code": "unknown_model", "field": path, "message": "not registered"}],
            )
        return model.id

    def version_id(self, conn: Connection, model_id: int, version: str) -> int:
        """The id of a model version, created on first sight and then cached."""
        key = (model_id, version)
        found = self._versions.get(key)
        if found is None:
            found = models.version_id(conn, model_id, version)
            with self._lock:
                self._versions[key] = found
        return found


def state_of(request: Request) -> CollectorState:
    """The collector state of the app serving ``request``."""
    return request.app.state.collector
