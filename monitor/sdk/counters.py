"""Thread-safe counters of what happened to every record (or label) the SDK was given."""

from __future__ import annotations

import threading
from typing import Any

from monitor.wire import DROP_REASONS


class Counters:
    """Totals since this SDK process started, in the shape of the heartbeat ``sdk`` object.

    One lock guards all fields; it is only ever held for a few increments, never across I/O.
    """

    __slots__ = ("delivered", "dropped", "enqueued", "internal_errors", "lock", "logged")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logged = 0
        self.enqueued = 0
        self.delivered = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.internal_errors = 0

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` items dropped for ``reason`` (one of ``wire.DROP_REASONS``)."""
        if n <= 0:
            return
        with self.lock:
            self.dropped[reason] += n

    def add_delivered(self, n: int) -> None:
        if n <= 0:
            return
        with self.lock:
            self.delivered += n

    def add_internal_error(self) -> None:
        with self.lock:
            self.internal_errors += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (a consistent copy)."""
        with self.lock:
            return {
                "logged": self.logged,
                "enqueued": self.enqueued,
                "delivered": self.delivered,
                "dropped": dict(self.dropped),
                "internal_errors": self.internal_errors,
            }
