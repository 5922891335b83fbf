"""Per-node request rate: a token bucket per node token, answered 429 with Retry-After."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from monitor.errors import MonitorError

#: Buckets kept before the full (idle) ones are forgotten; a forgotten bucket starts full.
_MAX_BUCKETS = 100_000


class RateLimited(MonitorError):
    """The caller sends faster than its rate; it should wait ``retry_after`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class RateLimiter:
    """``rate`` requests per second per key on average, ``burst`` at once; rate 0 allows all."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, as of)
        self._lock = threading.Lock()

    def wait(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when the request may go, else the seconds until
        it could (nothing is taken then, so a refused caller does not dig itself deeper)."""
        if self.rate <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, since = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - since) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return (1.0 - tokens) / self.rate
            if key not in self._buckets and len(self._buckets) >= _MAX_BUCKETS:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0

    def check(self, key: str) -> None:
        """Raise ``RateLimited`` when ``key`` is over its rate."""
        seconds = self.wait(key)
        if seconds > 0:
            raise RateLimited(
                f"more than {self.rate:g} requests per second (burst {self.burst:g}) "
                "from this node; slow down",
                retry_after=max(1, math.ceil(seconds)),
            )

    def _forget_full(self, now: float) -> None:
        full = [
            key
            for key, (tokens, since) in self._buckets.items()
            if tokens + (now - since) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:
            # Every bucket is busy: forgetting them all only errs on the caller's side.
            self._buckets.clear()
