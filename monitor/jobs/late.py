"""Late records: windows whose records arrived after they were analysed, to be analysed again.

An edge node offline for days delivers its spool at once, long after its windows were
analysed. A window ``[start, end)`` needs another analysis when a batch holding a record in it
was received after the moment its stored results describe (``computed_at``: when the worker
started reading the window). Found cheaply, from the batches' ``received_at``, ``min_ts`` and
``max_ts`` alone; only batches received since the previous look are read.

The re-analysis is of the whole window (drift, quality, performance; the fleet, its sites,
groups and nodes all move) and stores the next revision, with ``n_late`` the rows the window
gained since the previous one. Each (window, revision, newest arrival) is one lease, so two
workers never do it twice. Windows that end more than the horizon ago are left as they are.

A window never analysed (it was already past the worker's look-back when its first records
arrived) gets its first analysis when a running worker sees them arrive: only arrivals since
the worker's previous look count for those, so that a worker's first start, or history just
imported (``edge-monitor analyse`` is for that), does not analyse a whole horizon of windows
the look-back leaves out.

A batch being stored while the window is read may carry a ``received_at`` a moment before
that read began yet not be in it: arrivals up to ``IN_FLIGHT`` before ``computed_at`` count as
candidates too, and a candidate whose window turns out to hold no more rows than its results
stores nothing.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.jobs.windows import Window
from monitor.storage.arrivals import Arrival
from monitor.storage.results import Analysed

#: How long before a window's read a batch may have been stamped and still not be in it.
IN_FLIGHT = timedelta(seconds=30)


@dataclass(frozen=True)
class LateWindow:
    """A window of one model to analyse again (or for the first time: ``previous`` None)."""

    model_id: int
    window: Window
    previous: Analysed | None
    #: When the newest batch with records in the window was received.
    newest: datetime

    @property
    def revision(self) -> int:
        """The revision this analysis stores."""
        return 1 if self.previous is None else self.previous.revision + 1

    @property
    def key(self) -> str:
        """Its lease key: one per (model, window, revision, newest arrival)."""
        return f"late:{self.model_id}:{self.window.key}:r{self.revision}:{self.newest.isoformat()}"


def late_windows(
    model_id: int,
    arrivals: Sequence[Arrival],
    windows: Sequence[Window],
    analysed: Mapping[datetime, Analysed],
    fresh: Collection[int] = (),
) -> list[LateWindow]:
    """The ``windows`` (closed, in the horizon, oldest first) that ``arrivals`` of the model
    reach after their analysis (``analysed`` by window start), and those never analysed that
    ``fresh`` arrivals (by batch id: those the worker had not seen in its previous look)
    reach."""
    starts = [w.start for w in windows]
    ends = [w.end for w in windows]
    newest: dict[int, datetime] = {}
    newest_fresh: dict[int, datetime] = {}
    for arrival in arrivals:
        # The windows [start, end) that hold a time in [min_ts, max_ts].
        first = bisect_right(ends, arrival.min_ts)
        last = bisect_right(starts, arrival.max_ts)
        for index in range(first, last):
            for found, counts in ((newest, True), (newest_fresh, arrival.batch_id in fresh)):
                if counts and (index not in found or arrival.received_at > found[index]):
                    found[index] = arrival.received_at
    late = []
    for index in sorted(newest):
        window = windows[index]
        previous = analysed.get(window.start)
        if previous is None:
            if index in newest_fresh:
                late.append(LateWindow(model_id, window, None, newest_fresh[index]))
        elif newest[index] > previous.computed_at - IN_FLIGHT:
            late.append(LateWindow(model_id, window, previous, newest[index]))
    return late


def windows_reached(arrivals: Sequence[Arrival]) -> tuple[datetime, datetime] | None:
    """``[first, last]`` record times of the arrivals (None without any)."""
    if not arrivals:
        return None
    return min(a.min_ts for a in arrivals), max(a.max_ts for a in arrivals)


__all__ = ["IN_FLIGHT", "LateWindow", "late_windows", "windows_reached"]
