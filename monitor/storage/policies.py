"""Window policies: how a model's records are cut into analysis windows, and where that is kept.

The policy model is plain Python (stdlib only) and lives here, beside the SQL that stores it,
because the commands (CLI and admin API) check and describe policies and the worker cuts
windows with them, and storage is the one layer both may import.

Three kinds of policy, each with a JSON form:

- fixed: ``{"kind": "fixed", "minutes": 15}``, optionally with ``"origin":
  "2026-01-05T00:00:00+01:00"`` (an ISO time with its offset; default the Unix epoch).
  Windows of 1 minute to 31 days tile time from the origin.
- calendar: ``{"kind": "calendar", "unit": "month", "timezone": "Europe/Berlin"}``; units hour,
  day, week (ISO weeks: from Monday), month, quarter, year; an IANA time zone (default UTC).
  Windows follow the zone's wall clock (a Berlin day lasts 23, 24 or 25 hours) and are stored,
  like every window, as UTC ``[start, end)``.
- rows: ``{"kind": "rows", "rows": 5000}``, 1 to ``MAX_ROWS``. The model's records (fleet-wide)
  ordered by time are cut into consecutive windows of N records: a window is cut, and stored in
  ``row_windows``, once N records with times after the previous cut exist and the grace period
  has passed after the N-th one's time. It ends just after that record (records sharing its
  time fall in it too); its bounds never move afterwards, so a record that arrives late with a
  time inside a cut window belongs to that window, as in a time window.

``models.window_policy`` holds a model's schedule: the policies it had, each from the moment
it took over, ``{"segments": [{"since": null, "policy": {...}}, {"since": "<ISO UTC>",
"policy": {...}}]}``; ``{"kind": "default"}`` stands for the settings' default (fixed windows of
``analysis_window_minutes``), and NULL means the default since the beginning. A new policy
takes over at the end of the model's last analysed window (from the beginning when none was
analysed yet): windows already analysed keep their bounds and their results, everything after
is cut by the new policy, whose first window starts there (shorter when that is not one of
its own boundaries). Every window is clipped to its segment, so windows never overlap.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from sqlalchemy import Connection, delete, func, select, update

from monitor.errors import NotFound, ValidationFailed
from monitor.storage.dialect import insert_or_ignore
from monitor.storage.tables import batches, drift_scopes, models, row_windows
from monitor.storage.types import aware, utcnow

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MINUTES = 1
MAX_MINUTES = 31 * 24 * 60
MAX_ROWS = 1_000_000
UNITS = ("hour", "day", "week", "month", "quarter", "year")
#: A schedule keeps this many segments; older ones are dropped with their windows' history
#: (their results stay stored; only re-listing those periods falls back to the oldest kept).
MAX_SEGMENTS = 100


@dataclass(frozen=True, order=True, slots=True)
class Window:
    """``[start, end)``, in UTC."""

    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """A stable name of the window, for leases and logs."""
        return f"{self.start.isoformat()}/{int((self.end - self.start).total_seconds())}s"


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}",
        code="invalid_value",
        details=[{"code": "invalid_value", "field": field, "message": message}],
    )


# --- the three policies ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fixed:
    """Windows of one length, tiling time from an origin. A policy set by a user lasts whole
    minutes; the settings' default may be shorter (the demo's windows last seconds)."""

    size: timedelta
    origin: datetime = EPOCH

    kind = "fixed"

    def window_of(self, moment: datetime) -> Window:
        """The window that holds ``moment``."""
        start = self.origin + ((moment - self.origin) // self.size) * self.size
        return Window(start.astimezone(UTC), (start + self.size).astimezone(UTC))

    def windows(self, start: datetime, end: datetime) -> list[Window]:
        """The windows that overlap ``[start, end)``, oldest first."""
        return _tiles(self, start, end)

    def describe(self) -> str:
        text = f"every {format_size(self.size, spaced=True)}"
        return text if self.origin == EPOCH else f"{text} from {self.origin.isoformat()}"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": "fixed", "minutes": self.size // timedelta(minutes=1)}
        if self.origin != EPOCH:
            doc["origin"] = self.origin.isoformat()
        return doc


@dataclass(frozen=True, slots=True)
class Calendar:
    """Calendar hours, days, ISO weeks, months, quarters or years of a time zone."""

    unit: str
    timezone: str = "UTC"

    kind = "calendar"

    def window_of(self, moment: datetime) -> Window:
        """The window that holds ``moment``."""
        zone = zoneinfo.ZoneInfo(self.timezone)
        local = moment.astimezone(zone)
        if self.unit == "hour":
            # The local hour, kept apart from its twin when the clocks go back (fold).
            start = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
            return Window(start, start + timedelta(hours=1))
        day = local.date()
        if self.unit == "day":
            first, following = day, day + timedelta(days=1)
        elif self.unit == "week":
            first = day - timedelta(days=day.weekday())
            following = first + timedelta(days=7)
        else:
            months = {"month": 1, "quarter": 3, "year": 12}[self.unit]
            month0 = (day.month - 1) // months * months
            first = day.replace(month=month0 + 1, day=1)
            year, month = divmod(month0 + months, 12)
            following = first.replace(year=day.year + year, month=month + 1)
        return Window(_midnight(first, zone), _midnight(following, zone))

    def windows(self, start: datetime, end: datetime) -> list[Window]:
        """The windows that overlap ``[start, end)``, oldest first."""
        return _tiles(self, start, end)

    def describe(self) -> str:
        return f"calendar {self.unit} in {self.timezone}"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "calendar", "unit": self.unit, "timezone": self.timezone}


@dataclass(frozen=True, slots=True)
class Rows:
    """Windows of N records each (fleet-wide), cut as the records arrive."""

    rows: int

    kind = "rows"

    def describe(self) -> str:
        return f"{self.rows} rows"

    def to_json(self) -> dict[str, Any]:
        return {"kind": "rows", "rows": self.rows}


Policy = Fixed | Calendar | Rows
TimePolicy = Fixed | Calendar


def _midnight(day: Any, zone: zoneinfo.ZoneInfo) -> datetime:
    """When ``day`` begins in ``zone``, in UTC: its first midnight (fold 0) or, where the
    clocks skip midnight, the moment they jump (PEP 495 reads a missing time with the offset
    before the jump)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _tiles(policy: TimePolicy, start: datetime, end: datetime) -> list[Window]:
    found = []
    window = policy.window_of(start)
    while window.start < end:
        found.append(window)
        window = policy.window_of(window.end)
    return found


# --- parsing: JSON forms and what users type -------------------------------------------------

_EVERY = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")


def parse_every(text: str, field: str = "every") -> int:
    """Minutes of a length such as ``15m``, ``2h``, ``7d`` or ``1d12h``."""
    match = _EVERY.fullmatch(text.strip().lower()) if isinstance(text, str) else None
    if match is None or not any(match.groups()):
        raise _invalid(field, f"not a length like 15m, 2h, 7d or 1d12h: {text!r}")
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return check_minutes(days * 1440 + hours * 60 + minutes, field, shown=text)


def check_minutes(minutes: Any, field: str, shown: Any = None) -> int:
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise _invalid(field, f"not a whole number of minutes: {minutes!r}")
    if not MIN_MINUTES <= minutes <= MAX_MINUTES:
        raise _invalid(
            field, f"windows last 1 minute to 31 days, got {shown if shown else minutes!r}"
        )
    return minutes


def format_size(size: timedelta, *, spaced: bool = False) -> str:
    """``1d12h`` (spaced: ``1 d 12 h``, ``15 min``) of a window's length."""
    seconds = int(size.total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (mins, "min" if spaced else "m"), (secs, "s")]
    shown = [f"{n} {unit}" if spaced else f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown) if spaced else "".join(shown)


def parse_origin(text: Any, field: str = "origin") -> datetime:
    """An ISO time with its UTC offset."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise _invalid(field, f"not an ISO time such as 2026-01-05T00:00:00+01:00: {text!r}")
    if moment.tzinfo is None:
        raise _invalid(field, f"give the time's UTC offset (e.g. +01:00 or Z): {text!r}")
    return moment


def check_timezone(name: Any, field: str = "timezone") -> str:
    """An IANA time zone name that this machine knows."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise _invalid(field, f"not a time zone name: {name!r}")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise _invalid(field, f"unknown time zone {name!r} (an IANA name: Europe/Berlin)") from None
    return name


def check_unit(unit: Any, field: str = "calendar") -> str:
    if unit not in UNITS:
        raise _invalid(field, f"a calendar unit is one of {', '.join(UNITS)}; got {unit!r}")
    return str(unit)


def check_rows(rows: Any, field: str = "rows") -> int:
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS:
        raise _invalid(field, f"rows per window are 1 to {MAX_ROWS:,}, got {rows!r}")
    return rows


def policy_from_json(doc: Any, field: str = "policy") -> Policy | None:
    """The policy of a JSON form; None for ``{"kind": "default"}``."""
    if not isinstance(doc, dict):
        raise _invalid(field, "a policy is a JSON object")
    kind = doc.get("kind")
    if kind == "default":
        return None
    if kind == "fixed":
        origin = parse_origin(doc["origin"], f"{field}.origin") if "origin" in doc else EPOCH
        minutes = check_minutes(doc.get("minutes"), f"{field}.minutes")
        return Fixed(timedelta(minutes=minutes), origin)
    if kind == "calendar":
        return Calendar(
            check_unit(doc.get("unit"), f"{field}.unit"),
            check_timezone(doc.get("timezone", "UTC"), f"{field}.timezone"),
        )
    if kind == "rows":
        return Rows(check_rows(doc.get("rows"), f"{field}.rows"))
    raise _invalid(f"{field}.kind", f"a policy kind is fixed, calendar, rows or default: {kind!r}")


# --- a model's schedule ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """A policy from the moment it took over (None: the beginning) to the next segment's;
    ``policy`` None is the settings' default."""

    since: datetime | None
    policy: Policy | None


@dataclass(frozen=True, slots=True)
class Span:
    """A segment resolved: its policy (the default made concrete) and its bounds."""

    since: datetime | None
    until: datetime | None
    policy: Policy
    default: bool

    def clip(self, window: Window) -> Window:
        start = window.start if self.since is None else max(window.start, self.since)
        end = window.end if self.until is None else min(window.end, self.until)
        return Window(start, end)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (self.since is None or self.since < end) and (
            self.until is None or start < self.until
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """A model's policies over time, oldest first; the last one is the current policy."""

    segments: tuple[Segment, ...] = (Segment(None, None),)

    @property
    def current(self) -> Policy | None:
        return self.segments[-1].policy

    @property
    def since(self) -> datetime | None:
        return self.segments[-1].since

    def spans(self, default: timedelta) -> list[Span]:
        """Every segment with its bounds and the default (windows of ``default``) made
        concrete."""
        fixed = Fixed(default)
        ends = [s.since for s in self.segments[1:]] + [None]
        return [
            Span(s.since, until, s.policy or fixed, s.policy is None)
            for s, until in zip(self.segments, ends, strict=True)
        ]

    def changed(self, policy: Policy | None, at: datetime | None) -> Schedule:
        """This schedule with ``policy`` taking over at ``at`` (None: from the beginning);
        segments that would start at or after it are superseded."""
        kept = [s for s in self.segments if at is not None and (s.since is None or s.since < at)]
        if kept and kept[-1].policy == policy:
            return Schedule(tuple(kept))
        segments = (*kept, Segment(at, policy))[-MAX_SEGMENTS:]
        if segments[0].since is not None:
            segments = (Segment(None, segments[0].policy), *segments[1:])
        return Schedule(tuple(segments))

    def to_json(self) -> dict[str, Any] | None:
        if self.segments == (Segment(None, None),):
            return None
        return {
            "segments": [
                {
                    "since": None if s.since is None else s.since.isoformat(),
                    "policy": {"kind": "default"} if s.policy is None else s.policy.to_json(),
                }
                for s in self.segments
            ]
        }

    @classmethod
    def from_json(cls, doc: Any) -> Schedule:
        if doc is None:
            return cls()
        if not isinstance(doc, dict) or not isinstance(doc.get("segments"), list):
            raise _invalid("window_policy", "a schedule is {'segments': [...]}")
        segments = []
        for index, item in enumerate(doc["segments"]):
            where = f"window_policy.segments[{index}]"
            since = item.get("since") if isinstance(item, dict) else None
            moment = None if since is None else parse_origin(since, f"{where}.since")
            segments.append(Segment(moment, policy_from_json(item.get("policy"), where)))
        return cls(tuple(segments)) if segments else cls()


# --- SQL: schedules, the last analysed window, row windows, record times ---------------------


def read_schedule(conn: Connection, model_id: int) -> Schedule:
    """The model's schedule as stored."""
    doc = conn.execute(select(models.c.window_policy).where(models.c.id == model_id)).scalar()
    return Schedule.from_json(doc)


def schedules(conn: Connection) -> dict[int, Schedule]:
    """Every model's schedule, by model id."""
    found = conn.execute(select(models.c.id, models.c.window_policy))
    return {row.id: Schedule.from_json(row.window_policy) for row in found}


def write_schedule(conn: Connection, model_id: int, schedule: Schedule) -> None:
    """Store the model's schedule, and forget row windows cut from where its last segment
    starts: they were never analysed (that segment starts after the last analysed window), and
    the new policy cuts that time afresh."""
    changed = conn.execute(
        update(models).where(models.c.id == model_id).values(window_policy=schedule.to_json())
    )
    if changed.rowcount == 0:
        raise NotFound(f"no model with id {model_id}", code="unknown_model")
    cut = delete(row_windows).where(row_windows.c.model_id == model_id)
    if schedule.since is not None:
        cut = cut.where(row_windows.c.window_start >= schedule.since)
    conn.execute(cut)


def last_analysed_end(conn: Connection, model_id: int) -> datetime | None:
    """Where the model's last analysed window ends (every analysis stores a drift row)."""
    query = select(func.max(drift_scopes.c.window_end)).where(drift_scopes.c.model_id == model_id)
    return aware(conn, conn.execute(query).scalar())


def list_row_windows(
    conn: Connection, model_id: int, start: datetime | None = None, end: datetime | None = None
) -> list[tuple[Window, int]]:
    """The model's cut row windows that overlap ``[start, end)``, with their record counts at
    the cut, oldest first."""
    query = select(row_windows.c.window_start, row_windows.c.window_end, row_windows.c.n_rows)
    query = query.where(row_windows.c.model_id == model_id)
    if start is not None:
        query = query.where(row_windows.c.window_end > start)
    if end is not None:
        query = query.where(row_windows.c.window_start < end)
    found = conn.execute(query.order_by(row_windows.c.window_start))
    return [(Window(a, b), int(n)) for a, b, n in found]


def add_row_windows(conn: Connection, model_id: int, cut: Sequence[tuple[Window, int]]) -> None:
    """Store cut row windows; one already stored at the same start (another worker's cut of
    the same records) is kept."""
    if not cut:
        return
    now = utcnow()
    conn.execute(
        insert_or_ignore(conn, row_windows, ["model_id", "window_start"]),
        [
            {
                "model_id": model_id,
                "window_start": window.start,
                "window_end": window.end,
                "n_rows": n,
                "created_at": now,
            }
            for window, n in cut
        ],
    )


@dataclass(frozen=True, eq=False)
class BatchSpans:
    """The batches that may hold records of a period, by their first record's time: ids, first
    record times (microseconds since the epoch) and record counts."""

    ids: np.ndarray
    first_us: np.ndarray
    n_records: np.ndarray


def batch_spans(
    conn: Connection, model_id: int, start: datetime, until: datetime | None
) -> BatchSpans:
    """The model's batches with records at or after ``start`` (and before ``until``), ordered
    by their first record's time; only their metadata, never their payloads."""
    query = select(batches.c.id, batches.c.min_ts, batches.c.n_records).where(
        batches.c.model_id == model_id, batches.c.max_ts >= start
    )
    if until is not None:
        query = query.where(batches.c.min_ts < until)
    rows = conn.execute(query).all()
    ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
    first = np.fromiter((to_us(r[1]) for r in rows), np.int64, len(rows))
    counts = np.fromiter((r[2] for r in rows), np.int64, len(rows))
    order = np.lexsort((ids, first))
    return BatchSpans(ids[order], first[order], counts[order])


def record_times(conn: Connection, batch_ids: Sequence[int]) -> np.ndarray:
    """The record times of these batches (microseconds since the epoch), read from their
    payloads' time column alone."""
    query = select(batches.c.payload).where(batches.c.id.in_([int(i) for i in batch_ids]))
    found = [_ts_column(blob) for (blob,) in conn.execute(query)]
    return np.concatenate(found) if found else np.empty(0, np.int64)


def _ts_column(blob: bytes) -> np.ndarray:
    reader = pa.ipc.open_stream(blob)
    index = reader.schema.get_field_index("ts")
    # Read again with the one column: the other columns' buffers are never decompressed.
    options = pa.ipc.IpcReadOptions(included_fields=[index], use_threads=False)
    table = pa.ipc.open_stream(blob, options=options).read_all()
    column = table.column(0).combine_chunks()
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=int(us))
