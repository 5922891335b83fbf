"""What every route needs, per process: settings, engine, metrics, body budget, rate limiter."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine
from starlette.requests import Request

from monitor.collector.budget import BodyBudget
from monitor.collector.metrics import Metrics
from monitor.collector.ratelimit import RateLimiter
from monitor.config import Settings
from monitor.errors import ValidationFailed
from monitor.storage import models
from monitor.storage.engine import begin_write

_PRECHECK_SECONDS = 10.0


@dataclass
class CollectorState:
    """Per-process state of the collector app."""

    settings: Settings
    engine: Engine
    metrics: Metrics = field(default_factory=Metrics)
    _versions: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _known_tokens: dict[str, float] = field(default_factory=dict)
    budget: BodyBudget = field(init=False)
    limiter: RateLimiter = field(init=False)

    def __post_init__(self) -> None:
        self.budget = BodyBudget(self.settings.body_memory_bytes)
        self.limiter = RateLimiter(
            self.settings.rate_limit_per_second, self.settings.rate_limit_burst
        )
        self.metrics.gauge(
            "edge_monitor_body_budget_bytes",
            "Memory the collector may spend on request bodies at once (MONITOR_BODY_MEMORY_BYTES "
            "per process, summed over live processes).",
            lambda: self.budget.limit,
        )
        self.metrics.gauge(
            "edge_monitor_body_bytes_in_use",
            "Memory counted for the request bodies in progress now (summed over live processes).",
            lambda: self.budget.in_use,
        )

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

    def resolve(self, model: str, version: str) -> tuple[int, int]:
        """The ids of a registered model and of its version, which is created on first sight.

        The version is created in its own short transaction and cached only once committed:
        a version id from an uncommitted (or rolled back) transaction would break the other
        requests that reuse it."""
        found = self._versions.get((model, version))
        if found is not None:
            return found
        with begin_write(self.engine) as conn:
            model_id = self.model_id(conn, model)
            ids = (
                model_id,
                models.version_id(
                    conn, model_id, version, max_reported=self.settings.max_reported_versions
                ),
            )
        with self._lock:
            self._versions[(model, version)] = ids
        return ids


def state_of(request: Request) -> CollectorState:
    """The collector state of the app serving ``request``."""
    return request.app.state.collector
