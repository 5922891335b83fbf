"""Thread-safe counters of what happened to every record (or label) the SDK was given."""

from __future__ import annotations

import threading
from typing import Any

from monitor.wire import DROP_REASONS

#: Drops of items the caller asked to deliver: every reason but ``sampled_out`` (the sampling
#: the caller chose). Any of them makes the next ``flush()`` return False, so that a loss is
#: never silent: ``queue_full`` and ``invalid`` (decided inside ``log()``) as much as those
#: after queueing.
LOST_REASONS = tuple(reason for reason in DROP_REASONS if reason != "sampled_out")


class Counters:
    """Totals since this SDK process started, in the shape of the heartbeat ``sdk`` object.

    One lock guards all fields; it is only ever held for a few increments, never across I/O.
    ``retries`` counts attempts to send a batch that failed and will be made again (for any
    reason: unreachable, busy, server error, refused token); ``auth_failures`` counts the
    answers 401/403 among them.
    """

    __slots__ = (
        "auth_failures",
        "delivered",
        "dropped",
        "enqueued",
        "internal_errors",
        "lock",
        "logged",
        "retries",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.logged = 0
        self.enqueued = 0
        self.delivered = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.internal_errors = 0
        self.retries = 0
        self.auth_failures = 0

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

    def add_retry(self, *, auth: bool = False) -> None:
        """Count one failed attempt that will be made again (``auth``: answered 401/403)."""
        with self.lock:
            self.retries += 1
            if auth:
                self.auth_failures += 1

    def lost(self) -> int:
        """How many items were lost since start: dropped for any of ``LOST_REASONS``."""
        with self.lock:
            return sum(self.dropped[reason] for reason in LOST_REASONS)

    def snapshot(self) -> dict[str, Any]:
        """The counters as plain data (a consistent copy)."""
        with self.lock:
            return {
                "logged": self.logged,
                "enqueued": self.enqueued,
                "delivered": self.delivered,
                "dropped": dict(self.dropped),
                "retries": self.retries,
                "auth_failures": self.auth_failures,
                "internal_errors": self.internal_errors,
            }
