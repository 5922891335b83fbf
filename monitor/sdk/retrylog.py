"""Rate-limited logging of a stream's failing sends: a WARNING when they start failing, one a
minute while they go on failing, and an INFO line when they succeed again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: Seconds between two WARNING lines about the same kind of failure of one stream.
RETRY_LOG_INTERVAL = 60.0


class RetryLog:
    """What one stream (records, labels, heartbeats) tells the node's log about its retries.

    A streak of failures starts with a WARNING naming the failure; while it lasts, each kind
    of failure (unreachable, refused token, server error...) is logged again at most once
    per ``interval`` seconds, with how many attempts failed since the last line, so a node
    whose collector is down for a day logs a line a minute, not one per retry. A different
    kind of failure is logged at once (a token revoked during an outage is news). The first
    success after a streak logs one INFO line with the streak's length and duration.
    """

    def __init__(
        self,
        stream: str,
        *,
        interval: float = RETRY_LOG_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None  # start of the current streak
        self._failures = 0  # attempts failed in the current streak
        self._last: dict[str, tuple[float, int]] = {}  # kind -> (logged at, failures then)

    @property
    def failing(self) -> bool:
        """True while a streak of failures is going on."""
        return self._since is not None

    def failed(self, kind: str, what: str, action: str) -> None:
        """One failed attempt: ``kind`` groups failures for rate limiting, ``what`` says what
        happened (e.g. ``"answered 500 (internal_error)"``), ``action`` what the SDK does."""
        with self._lock:
            now = self._clock()
            self._failures += 1
            if self._since is None:
                self._since = now
            last = self._last.get(kind)
            if last is not None and now - last[0] < self.interval:
                return
            self._last[kind] = (now, self._failures)
            failures, since = self._failures, self._since
            previous = last[1] if last is not None else None
        if previous is None:
            logger.warning("edge-monitor: sending %s failed: %s; %s", self.stream, what, action)
        else:
            logger.warning(
                "edge-monitor: sending %s still failing: %d failed attempt(s) in %.0f s, "
                "%d since the last report (last: %s); %s",
                self.stream,
                failures,
                now - since,
                failures - previous,
                what,
                action,
            )

    def recovered(self) -> None:
        """A successful attempt: ends the streak (with an INFO line if there was one)."""
        if self._since is None:  # the common case: no lock, nothing to say
            return
        with self._lock:
            if self._since is None:
                return
            failures, duration = self._failures, self._clock() - self._since
            self._since = None
            self._failures = 0
            self._last.clear()
        logger.info(
            "edge-monitor: sending %s works again after %d failed attempt(s) over %.0f s",
            self.stream,
            failures,
            duration,
        )
