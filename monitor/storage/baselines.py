"""Baselines: a model's per-node or per-site baseline setting (``models.baseline``), and where
a scope's baseline period lies: its first days or first rows of a model version.

The setting's JSON form is ``{"scope": "node" | "site", "days": N}`` or
``{"scope": "node" | "site", "rows": N}``; NULL judges every scope against the version's
reference data. A scope's baseline period starts at the first record time of the first batch
of that version from the scope's nodes, and ends ``days`` later, or just after its
``rows``-th record (records ordered by time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select, update

from monitor.errors import ValidationFailed
from monitor.schema import NODE, SITE, TS
from monitor.storage.tables import batches, models
from monitor.storage.types import aware
from monitor.storage.windows import load_window

#: The scope kinds that can have baselines of their own.
BASELINE_SCOPES = (NODE, SITE)
#: Bounds of a setting: a baseline of more than a year, or of more than ten million rows,
#: is a typo, not a baseline.
MAX_DAYS = 366
MAX_ROWS = 10_000_000
#: A period's end is exclusive: just after its last record.
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class BaselineSetting:
    """How a model's nodes (or sites) get their own baselines: the first ``days`` days or the
    first ``rows`` rows of each version on each scope (exactly one of the two is set)."""

    scope: str
    days: int | None = None
    rows: int | None = None

    def __post_init__(self) -> None:
        if self.scope not in BASELINE_SCOPES:
            raise _invalid("baseline.scope", f"scope must be one of {', '.join(BASELINE_SCOPES)}")
        if (self.days is None) == (self.rows is None):
            raise _invalid("baseline.days", "give exactly one of days and rows")
        if self.days is not None and not _count(self.days, MAX_DAYS):
            raise _invalid("baseline.days", f"days must be a whole number from 1 to {MAX_DAYS}")
        if self.rows is not None and not _count(self.rows, MAX_ROWS):
            raise _invalid("baseline.rows", f"rows must be a whole number from 1 to {MAX_ROWS:,}")

    def to_json(self) -> dict[str, Any]:
        if self.days is not None:
            return {"scope": self.scope, "days": self.days}
        return {"scope": self.scope, "rows": self.rows}

    @classmethod
    def from_json(cls, value: Any) -> BaselineSetting:
        """A stored or submitted setting; a malformed one is ``ValidationFailed``."""
        if not isinstance(value, dict):
            raise _invalid("baseline", "the baseline setting must be an object")
        unknown = sorted(set(value) - {"scope", "days", "rows"})
        if unknown:
            raise _invalid(f"baseline.{unknown[0]}", f"unknown baseline field {unknown[0]!r}")
        return cls(value.get("scope", ""), value.get("days"), value.get("rows"))

    def describe(self) -> str:
        """The setting in words: ``per node, first 7 days``."""
        if self.days is not None:
            return f"per {self.scope}, first {self.days} day{'s' if self.days != 1 else ''}"
        rows = self.rows or 0
        return f"per {self.scope}, first {rows:,} row{'s' if rows != 1 else ''}"


def _count(value: Any, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= maximum


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        message,
        details=[{"code": "invalid_field", "field": field, "message": message}],
    )


def set_baseline(conn: Connection, model_id: int, setting: BaselineSetting | None) -> None:
    """Store a model's baseline setting (None: every scope against the version's reference)."""
    value = None if setting is None else setting.to_json()
    conn.execute(update(models).where(models.c.id == model_id).values(baseline=value))


def get_baseline(conn: Connection, model_id: int) -> BaselineSetting | None:
    """A model's baseline setting, or None when its scopes share the version's reference."""
    value = conn.execute(select(models.c.baseline).where(models.c.id == model_id)).scalar()
    return parse_baseline(value)


def parse_baseline(value: Any) -> BaselineSetting | None:
    """The setting of a ``models.baseline`` value (``Model.baseline``)."""
    return None if value is None else BaselineSetting.from_json(value)


@dataclass(frozen=True, slots=True)
class FirstSeen:
    """When a node first sent records of a model version, and how many it has sent since."""

    node_id: int
    model_version_id: int
    first_ts: datetime
    n_records: int


def first_seen(conn: Connection, model_id: int, node_ids: Sequence[int]) -> list[FirstSeen]:
    """Per (node, version) of the model among ``node_ids``: its first record time (the
    earliest ``min_ts`` of its batches) and its record count. One grouped query."""
    if not node_ids:
        return []
    query = (
        select(
            batches.c.node_id,
            batches.c.model_version_id,
            func.min(batches.c.min_ts),
            func.sum(batches.c.n_records),
        )
        .where(batches.c.model_id == model_id, batches.c.node_id.in_(list(node_ids)))
        .group_by(batches.c.node_id, batches.c.model_version_id)
    )
    found = []
    for node_id, version_id, first, count in conn.execute(query):
        first_ts = aware(conn, first)
        assert first_ts is not None  # min_ts is NOT NULL and the group has a batch
        found.append(FirstSeen(int(node_id), int(version_id), first_ts, int(count or 0)))
    return found


@dataclass(frozen=True, slots=True)
class BaselinePeriod:
    """``[start, end)`` of a scope's baseline; ``end`` is None while a rows baseline has fewer
    records than it needs. ``n_records`` counts the scope's records of the version so far."""

    start: datetime
    end: datetime | None
    n_records: int

    def complete_before(self, moment: datetime) -> bool:
        """Whether the whole period lies before ``moment``."""
        return self.end is not None and self.end <= moment


def baseline_period(
    conn: Connection,
    model_id: int,
    version_id: int,
    node_ids: Sequence[int],
    setting: BaselineSetting,
    *,
    seen: Sequence[FirstSeen] | None = None,
) -> BaselinePeriod | None:
    """The baseline period of the scope made of ``node_ids`` for one version, or None when
    none of these nodes has sent records of it. ``seen``: ``first_seen`` of (at least) these
    nodes, already read (one query for a whole window's scopes)."""
    members = set(node_ids)
    if seen is None:
        seen = first_seen(conn, model_id, node_ids)
    mine = [s for s in seen if s.model_version_id == version_id and s.node_id in members]
    if not mine:
        return None
    start = min(s.first_ts for s in mine)
    count = sum(s.n_records for s in mine)
    if setting.days is not None:
        return BaselinePeriod(start, start + timedelta(days=setting.days), count)
    assert setting.rows is not None
    if count < setting.rows:  # not there yet: no need to look for the n-th record
        return BaselinePeriod(start, None, count)
    last = nth_record_time(conn, model_id, version_id, node_ids, setting.rows)
    return BaselinePeriod(start, None if last is None else last + _TICK, count)


def nth_record_time(
    conn: Connection, model_id: int, version_id: int, node_ids: Sequence[int], n: int
) -> datetime | None:
    """The time of the ``n``-th record (by time, from 1) of a version from these nodes, or
    None while they have sent fewer.

    Batches in order of their first record are counted until they hold ``n`` records: every
    record of them is at most the latest ``max_ts`` among them, so the ``n`` earliest records
    all lie before that bound, and only the records up to it are loaded."""
    query = (
        select(batches.c.min_ts, batches.c.max_ts, batches.c.n_records)
        .where(
            batches.c.model_id == model_id,
            batches.c.model_version_id == version_id,
            batches.c.node_id.in_(list(node_ids)),
        )
        .order_by(batches.c.min_ts, batches.c.id)
    )
    counted = 0
    start: datetime | None = None
    bound: datetime | None = None
    for min_ts, max_ts, n_records in conn.execute(query):
        start = min_ts if start is None else start
        bound = max_ts if bound is None else max(bound, max_ts)
        counted += n_records
        if counted >= n:
            break
    if counted < n or start is None or bound is None:
        return None
    frame = baseline_rows(conn, model_id, version_id, node_ids, start, bound + _TICK)
    times = frame[TS].sort_values(kind="stable")
    return None if len(times) < n else times.iloc[n - 1].to_pydatetime()


def baseline_rows(
    conn: Connection,
    model_id: int,
    version_id: int,
    node_ids: Sequence[int],
    start: datetime,
    end: datetime,
) -> Any:
    """The records of one version from these nodes with ``start <= ts < end``, as a window
    frame (``monitor.storage.windows.load_window``), in time order."""
    frame = load_window(conn, model_id, start, end, node_ids=list(node_ids))
    if len(frame):
        frame = frame[frame["model_version_id"].to_numpy() == version_id]
        frame = frame.sort_values(TS, kind="stable").reset_index(drop=True)
    return frame
