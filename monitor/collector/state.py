"""What every route needs: settings, the engine, metrics and small caches, per process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from starlette.requests import Request

from monitor.collector.metrics import Metrics
from monitor.config import Settings
from monitor.errors import ValidationFailed
from monitor.storage import models

_PRECHECK_SECONDS = 10.0


@dataclass
class CollectorState:
    """Per-process state of the collector app."""

    settings: Settings
    engine: Engine
    metrics: Metrics = field(default_factory=Metrics)
    _versions: dict[tuple[int, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _known_tokens: dict[str, float] = field(default_factory=dict)

    def recently_authenticated(self, token: str) -> bool:
        """Whether this token passed authentication in the last few seconds (a pre-check
        only: routes that write check the token again inside their transaction)."""
        seen = self._known_tokens.get(token)
        return seen is not None and time.monotonic() - seen < _PRECHECK_SECONDS

    def remember_authenticated(self, token: str) -> None:
        with self._lock:
            if len(self._known_tokens) > 100_000:
                self._known_tokens.clear()
            self._known_tokens[token] = time.monotonic()

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
