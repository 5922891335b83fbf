"""Alert state as stored: what each rule observed per window, the windows it judged, the alerts
it raised and each alert's transitions (the events that are notified).

Observations are kept per (rule, subject, window): judging a window again replaces its rows,
never adds to them. Alerts of one (rule, group) are numbered by episode and at most one is
firing; on PostgreSQL an evaluation holds its rule's row locked (``lock_rule``) so that two
workers judging two windows of one model at once take turns (SQLite has one writer already).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, select, tuple_, update

from monitor.errors import NotFound
from monitor.storage.dialect import upsert
from monitor.storage.tables import (
    alert_evaluations,
    alert_observations,
    alert_rules,
    alerts,
    models,
    nodes,
)
from monitor.storage.tables import (
    alert_events as events_table,
)
from monitor.storage.types import aware

FIRING = "firing"
RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Observation:
    """What a rule saw of one subject in one window."""

    subject: str
    window_start: datetime
    state: str
    value: float | None = None
    bound: float | None = None
    details: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Alert:
    """One rule's trouble in one group, firing until resolved."""

    id: int
    rule_id: int
    rule: str
    kind: str
    model_id: int | None
    model: str | None
    group_key: str
    episode: int
    state: str
    severity: str
    summary: str
    #: The subjects in trouble now (empty once resolved).
    subjects: tuple[str, ...]
    details: dict[str, Any]
    first_window_start: datetime | None
    last_window_start: datetime | None
    fired_at: datetime
    updated_at: datetime
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One transition of an alert, as notified."""

    id: int
    alert_id: int
    seq: int
    kind: str
    message_id: str
    window_start: datetime | None
    payload: dict[str, Any]
    at: datetime


def message_id(alert_id: int, seq: int) -> str:
    """The Standard Webhooks ``webhook-id`` of an alert's ``seq``-th transition: stable (the
    same transition always has the same id, across retries and endpoints) and unique."""
    digest = hashlib.sha256(f"edge-monitor alert {alert_id} event {seq}".encode()).digest()
    return "msg_" + base64.b32encode(digest).decode().rstrip("=").lower()[:32]


# --- Evaluations and observations ---------------------------------------------------------------


def lock_rules(conn: Connection, rule_ids: Sequence[int]) -> None:
    """Hold these rules' rows until the transaction ends, so that evaluations of one rule take
    turns (PostgreSQL; SQLite ignores the clause and has one writer at a time). Locked in id
    order, so that two evaluations of overlapping rules cannot deadlock."""
    if rule_ids:
        conn.execute(
            select(alert_rules.c.id)
            .where(alert_rules.c.id.in_(sorted(rule_ids)))
            .order_by(alert_rules.c.id)
            .with_for_update()
        ).all()


def record_evaluations(
    conn: Connection,
    rule_ids: Sequence[int],
    model_id: int | None,
    window_start: datetime,
    window_end: datetime,
    *,
    now: datetime,
) -> None:
    """Remember that these rules judged this window (again: its time is updated)."""
    if not rule_ids:
        return
    conn.execute(
        upsert(
            conn, alert_evaluations, ["rule_id", "window_start"], ["window_end", "evaluated_at"]
        ),
        [
            {
                "rule_id": rule_id,
                "model_id": model_id,
                "window_start": window_start,
                "window_end": window_end,
                "evaluated_at": now,
            }
            for rule_id in rule_ids
        ],
    )


def judged_windows(conn: Connection, counts: Mapping[int, int]) -> dict[int, list[datetime]]:
    """Per rule, the starts of its last ``counts[rule]`` judged windows, oldest first.

    Two statements for all the rules: the latest windows any of them judged, as deep as the
    deepest count, then every rule's windows since the earliest of those. (A rule that
    skipped some of those windows, being disabled, gets fewer: its history starts again.)"""
    out: dict[int, list[datetime]] = {rule_id: [] for rule_id in counts}
    if not counts:
        return out
    e = alert_evaluations.c
    ids = list(counts)
    latest = conn.execute(
        select(e.window_start)
        .where(e.rule_id.in_(ids))
        .group_by(e.window_start)
        .order_by(e.window_start.desc())
        .limit(max(counts.values()))
    ).all()
    if not latest:
        return out
    floor = min(_moment(conn, row[0]) for row in latest)
    query = select(e.rule_id, e.window_start).where(e.rule_id.in_(ids), e.window_start >= floor)
    for rule_id, start in conn.execute(query):
        out[rule_id].append(_moment(conn, start))
    return {rule_id: sorted(starts)[-counts[rule_id] :] for rule_id, starts in out.items()}


def save_observations(
    conn: Connection,
    window_start: datetime,
    window_end: datetime,
    rows: Mapping[int, Iterable[Observation]],
    *,
    now: datetime,
) -> None:
    """Replace these rules' observations of this window with ``rows`` (by rule id)."""
    if not rows:
        return
    conn.execute(
        delete(alert_observations).where(
            alert_observations.c.rule_id.in_(list(rows)),
            alert_observations.c.window_start == window_start,
        )
    )
    _insert(conn, window_start, window_end, rows, now)


def forget_observations(conn: Connection, before: Mapping[int, datetime]) -> None:
    """Drop each rule's observations of windows before ``before[rule]`` (the earliest window
    its M-of-N still looks at): the history a rule needs stays a few windows deep, however
    long it runs, and so does every read and replacement of it."""
    by_floor: dict[datetime, list[int]] = {}
    for rule_id, floor in before.items():
        by_floor.setdefault(floor, []).append(rule_id)
    for floor, rule_ids in by_floor.items():
        conn.execute(
            delete(alert_observations).where(
                alert_observations.c.rule_id.in_(rule_ids),
                alert_observations.c.window_start < floor,
            )
        )


def _insert(
    conn: Connection,
    window_start: datetime,
    window_end: datetime,
    rows: Mapping[int, Iterable[Observation]],
    now: datetime,
) -> None:
    """Insert observations of one window (by rule id)."""
    values = [
        (
            rule_id,
            o.subject,
            o.state,
            o.value,
            o.bound,
            json.dumps(dict(o.details or {}), separators=(",", ":")),
        )
        for rule_id, observed in rows.items()
        for o in observed
    ]
    if values:
        _insert_observations(conn, window_start, window_end, now, values)


def _insert_observations(
    conn: Connection,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    values: list[tuple[Any, ...]],
) -> None:
    """One executemany through the driver: a judged window writes hundreds of rows (a node
    rule in a drifting fleet), and SQLAlchemy's per-row parameter processing was most of it.
    The window and the time are bound once, as the column type binds them."""
    dialect = conn.dialect
    table = alert_observations
    fixed = []
    for name, value in (("window_start", window_start), ("window_end", window_end)):
        processor = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
        fixed.append(processor(value) if processor is not None else value)
    processor = table.c.observed_at.type.dialect_impl(dialect).bind_processor(dialect)
    observed_at = processor(now) if processor is not None else now
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    details = f"{mark}::json" if dialect.name == "postgresql" else mark
    quote = dialect.identifier_preparer.quote
    names = [
        "rule_id",
        "subject",
        "state",
        "value",
        "bound",
        "details",
        "window_start",
        "window_end",
        "observed_at",
    ]
    marks = [mark] * 5 + [details] + [mark] * 3
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join(marks)})"
    )
    tail = (*fixed, observed_at)
    if dialect.name == "postgresql":
        # One statement: each column as one array.
        columns = [list(column) for column in zip(*values, strict=True)]
        types = ["int[]", "varchar[]", "varchar[]", "float8[]", "float8[]", "text[]"]
        picked = ", ".join(f"u.{quote(n)}" for n in names[:5])
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(n) for n in names)}) "
            f"SELECT {picked}, u.details::json, %s, %s, %s FROM unnest("
            + ", ".join(f"%s::{t}" for t in types)
            + f") AS u({', '.join(quote(n) for n in names[:6])})"
        )
        conn.exec_driver_sql(sql, (*tail, *columns))
        return
    conn.exec_driver_sql(sql, [(*row, *tail) for row in values])


def observations(
    conn: Connection, windows: Mapping[int, Sequence[datetime]]
) -> dict[int, list[Observation]]:
    """Per rule, its observations in its windows ``windows[rule]`` (without details)."""
    out: dict[int, list[Observation]] = {rule_id: [] for rule_id in windows}
    pairs = [(rule_id, start) for rule_id, starts in windows.items() for start in starts]
    if not pairs:
        return out
    # Without their details: the history needs states (a transition's details come from
    # the window being judged), and decoding JSON per row is most of reading them.
    o = alert_observations.c
    query = select(o.rule_id, o.subject, o.window_start, o.state, o.value, o.bound).where(
        tuple_(o.rule_id, o.window_start).in_(pairs)
    )
    for row in conn.execute(query):
        out[row.rule_id].append(
            Observation(row.subject, row.window_start, row.state, row.value, row.bound)
        )
    return out


def node_places(conn: Connection) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Every node's site and group, by node name (what grouping alerts by site needs)."""
    sites: dict[str, str | None] = {}
    groups: dict[str, str | None] = {}
    for name, site, group in conn.execute(select(nodes.c.name, nodes.c.site, nodes.c.group_name)):
        sites[name] = site
        groups[name] = group
    return sites, groups


def _moment(conn: Connection, value: Any) -> datetime:
    moment = aware(conn, value)  # a UNION's column may come back as SQLite's text
    assert moment is not None
    return moment


# --- Alerts and their events --------------------------------------------------------------------


def open_alerts(conn: Connection, rule_ids: Sequence[int]) -> dict[int, list[Alert]]:
    """Per rule, its firing alerts (their ``details`` left empty)."""
    out: dict[int, list[Alert]] = {rule_id: [] for rule_id in rule_ids}
    if not rule_ids:
        return out
    # Without their details (get_alert has them): judging a window needs only the subjects.
    query = _alerts_query(details=False).where(
        alerts.c.rule_id.in_(list(rule_ids)), alerts.c.state == FIRING
    )
    for row in conn.execute(query.order_by(alerts.c.id)):
        alert = _alert(row)
        out[alert.rule_id].append(alert)
    return out


def last_resolved(conn: Connection, rule_ids: Sequence[int]) -> dict[int, dict[str, datetime]]:
    """Per rule, when each group's latest alert resolved."""
    out: dict[int, dict[str, datetime]] = {rule_id: {} for rule_id in rule_ids}
    if not rule_ids:
        return out
    query = (
        select(alerts.c.rule_id, alerts.c.group_key, func.max(alerts.c.resolved_at))
        .where(alerts.c.rule_id.in_(list(rule_ids)), alerts.c.state == RESOLVED)
        .group_by(alerts.c.rule_id, alerts.c.group_key)
    )
    for rule_id, key, at in conn.execute(query):
        moment = aware(conn, at)  # SQLite hands an aggregate back as its text
        if moment is not None:
            out[rule_id][key] = moment
    return out


def open_alert(
    conn: Connection,
    *,
    rule_id: int,
    model_id: int | None,
    group_key: str,
    severity: str,
    summary: str,
    subjects: Sequence[str],
    details: Mapping[str, Any],
    window_start: datetime | None,
    now: datetime,
) -> int:
    """A new firing alert of (rule, group), numbered after the group's previous ones; its id.
    A second worker opening the same episode collides on (rule, group, episode)."""
    episode = (
        conn.execute(
            select(func.max(alerts.c.episode)).where(
                alerts.c.rule_id == rule_id, alerts.c.group_key == group_key
            )
        ).scalar()
        or 0
    ) + 1
    return int(
        conn.execute(
            insert(alerts)
            .values(
                rule_id=rule_id,
                model_id=model_id,
                group_key=group_key,
                episode=episode,
                state=FIRING,
                severity=severity,
                summary=summary[:2000],
                subjects=list(subjects),
                details=dict(details),
                first_window_start=window_start,
                last_window_start=window_start,
                fired_at=now,
                updated_at=now,
            )
            .returning(alerts.c.id)
        ).scalar_one()
    )


def update_alert(
    conn: Connection,
    alert_id: int,
    *,
    subjects: Sequence[str],
    summary: str,
    details: Mapping[str, Any],
    window_start: datetime | None,
    now: datetime,
    resolve: bool = False,
) -> None:
    """Set an alert's subjects and summary; ``resolve``: it is resolved now."""
    values: dict[str, Any] = {
        "subjects": list(subjects),
        "summary": summary[:2000],
        "details": dict(details),
        "updated_at": now,
    }
    if window_start is not None:
        values["last_window_start"] = window_start
    if resolve:
        values |= {"state": RESOLVED, "resolved_at": now}
    conn.execute(update(alerts).where(alerts.c.id == alert_id).values(**values))


def add_event(
    conn: Connection,
    alert_id: int,
    *,
    kind: str,
    window_start: datetime | None,
    payload: Mapping[str, Any],
    seq: int,
    now: datetime,
) -> AlertEvent:
    """Record an alert's ``seq``-th transition (with its stable message id)."""
    msg = message_id(alert_id, seq)
    event_id = conn.execute(
        insert(events_table)
        .values(
            alert_id=alert_id,
            seq=seq,
            kind=kind,
            message_id=msg,
            window_start=window_start,
            payload=dict(payload),
            at=now,
        )
        .returning(events_table.c.id)
    ).scalar_one()
    return AlertEvent(int(event_id), alert_id, seq, kind, msg, window_start, dict(payload), now)


def next_seq(conn: Connection, alert_id: int) -> int:
    """The number the alert's next transition gets."""
    last = conn.execute(
        select(func.max(events_table.c.seq)).where(events_table.c.alert_id == alert_id)
    ).scalar()
    return int(last or 0) + 1


def list_alerts(
    conn: Connection, *, state: str | None = None, model_id: int | None = None, limit: int = 100
) -> list[Alert]:
    """Alerts, newest first; optionally only firing or resolved ones, or one model's."""
    query = _alerts_query()
    if state is not None:
        query = query.where(alerts.c.state == state)
    if model_id is not None:
        query = query.where(alerts.c.model_id == model_id)
    query = query.order_by(alerts.c.fired_at.desc(), alerts.c.id.desc()).limit(limit)
    return [_alert(row) for row in conn.execute(query)]


def get_alert(conn: Connection, alert_id: int) -> Alert:
    """One alert; NotFound when there is none."""
    row = conn.execute(_alerts_query().where(alerts.c.id == alert_id)).first()
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return _alert(row)


def alert_events(conn: Connection, alert_id: int) -> list[AlertEvent]:
    """An alert's transitions in order."""
    query = (
        select(events_table).where(events_table.c.alert_id == alert_id).order_by(events_table.c.seq)
    )
    return [
        AlertEvent(
            row.id,
            row.alert_id,
            row.seq,
            row.kind,
            row.message_id,
            row.window_start,
            dict(row.payload or {}),
            row.at,
        )
        for row in conn.execute(query)
    ]


def _alerts_query(*, details: bool = True) -> Any:
    columns = [c for c in alerts.columns if details or c.name != "details"]
    return select(
        *columns,
        alert_rules.c.name.label("rule_name"),
        alert_rules.c.kind.label("rule_kind"),
        models.c.name.label("model_name"),
    ).select_from(
        alerts.join(alert_rules, alert_rules.c.id == alerts.c.rule_id).outerjoin(
            models, and_(models.c.id == alerts.c.model_id)
        )
    )


def _alert(row: Any) -> Alert:
    m = row._mapping
    return Alert(
        id=int(m["id"]),
        rule_id=m["rule_id"],
        rule=m["rule_name"],
        kind=m["rule_kind"],
        model_id=m["model_id"],
        model=m["model_name"],
        group_key=m["group_key"],
        episode=m["episode"],
        state=m["state"],
        severity=m["severity"],
        summary=m["summary"],
        subjects=tuple(m["subjects"] or ()),
        details=dict(m.get("details") or {}),
        first_window_start=m["first_window_start"],
        last_window_start=m["last_window_start"],
        fired_at=m["fired_at"],
        updated_at=m["updated_at"],
        resolved_at=m["resolved_at"],
    )
