"""Tumbling analysis windows: aligned to the epoch, closed only after a grace period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True, slots=True)
class Window:
    """``[start, end)``, in UTC."""

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """A stable name of the window, for leases and logs."""
        return f"{self.start.isoformat()}/{int((self.end - self.start).total_seconds())}s"


def window_of(moment: datetime, size: timedelta) -> Window:
    """The window that holds ``moment``; windows of one size tile time from the epoch."""
    index = (moment - _EPOCH) // size
    start = _EPOCH + index * size
    return Window(start, start + size)


def closed_windows(
    earliest: datetime, now: datetime, size: timedelta, grace: timedelta
) -> list[Window]:
    """Every window from the one holding ``earliest`` up to the last one that ended at least
    ``grace`` ago (late records from spools and slow networks land within the grace)."""
    windows = []
    window = window_of(earliest, size)
    while window.end + grace <= now:
        windows.append(window)
        window = Window(window.end, window.end + size)
    return windows
