"""Analysis windows by each model's window policy; closed only after a grace period.

A model's policies (fixed, calendar, rows), their JSON form in ``models.window_policy`` and how
a change of policy takes over are described in ``monitor.storage.policies``, where the CLI and
the admin API read them too. Here the worker applies them: it lists a model's windows of a
period (its time policies' windows clipped to their segments, its row windows as cut), and cuts
row windows as records arrive. A model without a policy has fixed windows of the settings'
length, aligned to the epoch, as before policies existed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection

from monitor.errors import ValidationFailed
from monitor.storage import policies
from monitor.storage.policies import Rows, Schedule, Span, Window, from_us, to_us
from monitor.storage.windows import first_record_time

__all__ = [
    "Window",
    "closed_windows",
    "cut_row_windows",
    "model_windows",
    "next_row_cuts",
    "schedule_of",
    "window_of",
]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Row windows cut per model and call: a backlog (history imported at once) is cut over
#: several of the worker's rounds instead of one long transaction.
MAX_CUTS = 500
#: Batches whose record times are read at once while cutting row windows.
_GROUP = 64


def window_of(moment: datetime, size: timedelta) -> Window:
    """The fixed window of ``size`` that holds ``moment``; windows of one size tile time from
    the epoch (the default policy)."""
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


def schedule_of(doc: Any) -> Schedule:
    """A model's schedule from its stored JSON; a form that does not read (edited by hand)
    counts as the default, with a warning, rather than stopping every model's analysis."""
    try:
        return Schedule.from_json(doc)
    except ValidationFailed as exc:
        log.warning("unreadable window policy %r (%s): using the default", doc, exc.message)
        return Schedule()


def model_windows(
    conn: Connection,
    model_id: int,
    spans: Sequence[Span],
    start: datetime,
    end: datetime,
    *,
    now: datetime | None = None,
    grace: timedelta = timedelta(0),
    cut: Sequence[Window] | None = None,
) -> list[Window]:
    """The model's windows that overlap ``[start, end)``, oldest first, by its schedule's
    ``spans``. Time windows are listed whether closed or not. Row windows are those cut (read
    from ``row_windows`` unless given as ``cut``) and, given ``now``, those the worker would cut
    at ``now`` from the records stored (the same records give the same cuts), read-only."""
    found: list[Window] = []
    for span in spans:
        if not span.overlaps(start, end):
            continue
        if isinstance(span.policy, Rows):
            if cut is None:
                cut = [w for w, _ in policies.list_row_windows(conn, model_id, start, end)]
            found.extend(
                w for w in cut if span.overlaps(w.start, w.end) and w.start < end and w.end > start
            )
            if now is not None:
                found.extend(
                    w
                    for w, _ in next_row_cuts(conn, model_id, span, now, grace, limit=None)
                    if w.start < end and w.end > start
                )
            continue
        low = start if span.since is None else max(start, span.since)
        high = end if span.until is None else min(end, span.until)
        if low < high:
            found.extend(span.clip(w) for w in span.policy.windows(low, high))
    return sorted(found)


def cut_row_windows(
    conn: Connection,
    model_id: int,
    schedule: Schedule,
    default: timedelta,
    now: datetime,
    grace: timedelta,
) -> int:
    """Cut and store the row windows of the model's rows segments that are due (at most
    ``MAX_CUTS`` per segment); returns how many it cut."""
    count = 0
    for span in schedule.spans(default):
        if isinstance(span.policy, Rows):
            cut = next_row_cuts(conn, model_id, span, now, grace, limit=MAX_CUTS)
            policies.add_row_windows(conn, model_id, cut)
            count += len(cut)
    return count


def next_row_cuts(
    conn: Connection,
    model_id: int,
    span: Span,
    now: datetime,
    grace: timedelta,
    *,
    limit: int | None,
) -> list[tuple[Window, int]]:
    """The row windows of a rows segment that are due and not cut yet, with their record
    counts, oldest first. The next cut starts where the last one ended (the segment's start,
    or the model's first record); it ends just after the N-th record from there, once that
    record's time is ``grace`` old. A segment that has ended gets a last, shorter window up to
    its end, once that is ``grace`` old (also when it holds no record: the segment is then
    complete and never read again)."""
    assert isinstance(span.policy, Rows)
    rows = span.policy.rows
    stored = policies.list_row_windows(conn, model_id, span.since, span.until)
    start = stored[-1][0].end if stored else span.since
    if start is None:
        start = first_record_time(conn, model_id)
        if start is None:
            return []
    if span.until is not None and start >= span.until:
        return []
    ended = span.until is not None and span.until + grace <= now
    ready = to_us(now - grace)
    until_us = None if span.until is None else to_us(span.until)
    spans = policies.batch_spans(conn, model_id, start, span.until)
    edge = to_us(start)
    pending = np.empty(0, np.int64)
    loaded = 0
    cuts: list[tuple[Window, int]] = []
    while limit is None or len(cuts) < limit:
        # Read record times in the order of the batches' first records until the N-th time
        # from the edge is known: every unread batch starts after it.
        while loaded < len(spans.ids):
            if len(pending) >= rows and spans.first_us[loaded] > pending[rows - 1]:
                break
            times = policies.record_times(conn, spans.ids[loaded : loaded + _GROUP].tolist())
            loaded += _GROUP
            keep = times >= edge
            if until_us is not None:
                keep &= times < until_us
            pending = np.sort(np.concatenate([pending, times[keep]]))
        if len(pending) < rows:
            if ended:
                window = Window(from_us(edge), span.until)  # type: ignore[arg-type]
                cuts.append((window, len(pending)))
            break
        nth = int(pending[rows - 1])
        if nth > ready:
            break
        n = int(np.searchsorted(pending, nth + 1))
        cuts.append((Window(from_us(edge), from_us(nth + 1)), n))
        pending = pending[n:]
        edge = nth + 1
    return cuts
