"""Retrain hooks and the record of every retrain run: queueing, claiming, recording.

A run is queued by an alert (``request_run`` in the alert's transaction) or by a person; it is
refused, not raised, while its hook is disabled or cooling down, or while another run of the
same model is in flight (queued, running, produced or canary). A worker claims a queued run
(``claim_run``), runs its hook outside any transaction and records the outcome (``set_run``).
Run statuses: queued -> running -> failed | timed_out | produced; produced -> gated | canary;
canary -> promoted | rolled_back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage.tables import models, retrain_hooks, retrain_runs

KINDS = ("webhook", "command", "python", "reference")
STATUSES = (
    "queued",
    "running",
    "failed",
    "timed_out",
    "produced",
    "gated",
    "canary",
    "promoted",
    "rolled_back",
)
#: A run in one of these holds its model: no other run of that model is queued meanwhile.
IN_FLIGHT = ("queued", "running", "produced", "canary")
#: The hook has finished once its run leaves these.
_UNFINISHED = ("queued", "running")
TRIGGERS = ("alert", "manual")
#: How long past its hook's timeout a claimed run may stay silent before its worker is presumed
#: dead (the worker records the outcome within moments of the timeout).
LOST_MARGIN = timedelta(minutes=2)
#: Runs for which no hook timeout is known (the hook was deleted) are presumed lost after this.
_DEFAULT_TIMEOUT = 3600.0


@dataclass(frozen=True, slots=True)
class Hook:
    """A retrain hook: what to run for a model, how long it may take and how often."""

    id: int
    name: str
    model: str
    model_id: int
    kind: str
    config: dict[str, Any]
    timeout_seconds: float
    cooldown_seconds: int
    enabled: bool
    source: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One retrain run: its trigger, status, output and the version it produced."""

    id: int
    model_id: int
    model: str
    hook_id: int | None
    #: The hook's name when the run was queued (kept after the hook is deleted).
    hook: str | None
    alert_id: int | None
    trigger: str
    status: str
    version: str | None
    output: str
    details: dict[str, Any]
    claimed_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @property
    def in_flight(self) -> bool:
        """Whether this run still holds its model."""
        return self.status in IN_FLIGHT


def _problem(field: str, message: str) -> dict[str, str]:
    return {"code": "invalid_field", "field": field, "message": message}


def upsert_hook(
    conn: Connection,
    *,
    name: str,
    model_id: int,
    kind: str,
    config: dict[str, Any],
    timeout_seconds: float,
    cooldown_seconds: int,
    enabled: bool = True,
    source: str = "api",
    now: datetime,
) -> Hook:
    """Store a hook under its name (replacing one of that name); the stored hook.

    Raises ValidationFailed for an unknown kind or a timeout/cooldown out of range, NotFound
    for a model that is not registered. The kind's own keys are checked by the callers (the
    rules file's ``check_hook``)."""
    problems = []
    if not name or len(name) > 128:
        problems.append(_problem("hook.name", "must be 1 to 128 characters"))
    if kind not in KINDS:
        problems.append(_problem("hook.kind", f"must be one of {', '.join(KINDS)}"))
    if not timeout_seconds > 0:
        problems.append(_problem("hook.timeout_seconds", "must be positive"))
    if cooldown_seconds < 0:
        problems.append(_problem("hook.cooldown_seconds", "must not be negative"))
    if problems:
        raise ValidationFailed(
            f"invalid retrain hook {name!r}: " + "; ".join(p["field"] for p in problems),
            details=problems,
        )
    if conn.execute(select(models.c.id).where(models.c.id == model_id)).scalar() is None:
        raise NotFound(
            f"no model with id {model_id}",
            code="unknown_model",
            details=[{"code": "not_found", "field": "hook.model", "message": "no such model"}],
        )
    values: dict[str, Any] = {
        "model_id": model_id,
        "kind": kind,
        "config": dict(config),
        "timeout_seconds": float(timeout_seconds),
        "cooldown_seconds": int(cooldown_seconds),
        "enabled": enabled,
        "source": source,
        "updated_at": now,
    }
    existing = conn.execute(select(retrain_hooks.c.id).where(retrain_hooks.c.name == name)).scalar()
    if existing is None:
        conn.execute(insert(retrain_hooks).values(name=name, created_at=now, **values))
    else:
        conn.execute(update(retrain_hooks).where(retrain_hooks.c.id == existing).values(values))
    hook = hook_by_name(conn, name)
    assert hook is not None
    return hook


def delete_hook(conn: Connection, name: str) -> bool:
    """Remove a hook; its runs stay, recorded under its name. False when there was none."""
    return conn.execute(delete(retrain_hooks).where(retrain_hooks.c.name == name)).rowcount == 1


def _hooks_query() -> Any:
    return select(retrain_hooks, models.c.name.label("model")).join(
        models, models.c.id == retrain_hooks.c.model_id
    )


def _hook(row: Any) -> Hook:
    return Hook(
        id=row["id"],
        name=row["name"],
        model=row["model"],
        model_id=row["model_id"],
        kind=row["kind"],
        config=dict(row["config"] or {}),
        timeout_seconds=float(row["timeout_seconds"]),
        cooldown_seconds=int(row["cooldown_seconds"]),
        enabled=bool(row["enabled"]),
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def hook_by_name(conn: Connection, name: str) -> Hook | None:
    """The hook called ``name``, or None."""
    row = conn.execute(_hooks_query().where(retrain_hooks.c.name == name)).mappings().first()
    return None if row is None else _hook(row)


def get_hook(conn: Connection, name: str) -> Hook:
    """The hook called ``name``; NotFound when there is none."""
    hook = hook_by_name(conn, name)
    if hook is None:
        raise NotFound(f"no retrain hook named {name!r}", code="unknown_hook")
    return hook


def list_hooks(
    conn: Connection, *, model_id: int | None = None, source: str | None = None
) -> list[Hook]:
    """Hooks by name, of one model and/or one source when given."""
    query = _hooks_query().order_by(retrain_hooks.c.name)
    if model_id is not None:
        query = query.where(retrain_hooks.c.model_id == model_id)
    if source is not None:
        query = query.where(retrain_hooks.c.source == source)
    return [_hook(row) for row in conn.execute(query).mappings()]


def refusal(conn: Connection, hook: Hook, *, now: datetime) -> tuple[str, str] | None:
    """Why a run of ``hook`` cannot be queued now, as (code, message), or None when it can:
    ``hook_disabled``, ``retrain_in_flight`` (another run of the model holds it) or
    ``cooling_down`` (the hook's last run was queued less than its cooldown ago)."""
    if not hook.enabled:
        return "hook_disabled", f"retrain hook {hook.name!r} is disabled"
    busy = conn.execute(
        select(retrain_runs.c.id, retrain_runs.c.status)
        .where(retrain_runs.c.model_id == hook.model_id, retrain_runs.c.status.in_(IN_FLIGHT))
        .order_by(retrain_runs.c.id)
        .limit(1)
    ).first()
    if busy is not None:
        return (
            "retrain_in_flight",
            f"retrain run {busy.id} of model {hook.model!r} is {busy.status}",
        )
    if hook.cooldown_seconds > 0:
        last = conn.execute(
            select(retrain_runs.c.created_at)
            .where(retrain_runs.c.hook_id == hook.id)
            .order_by(retrain_runs.c.created_at.desc())
            .limit(1)
        ).scalar()
        if last is not None and now < last + timedelta(seconds=hook.cooldown_seconds):
            until = last + timedelta(seconds=hook.cooldown_seconds)
            return (
                "cooling_down",
                f"retrain hook {hook.name!r} is cooling down until {until.isoformat()}",
            )
    return None


def _lock_model(conn: Connection, model_id: int) -> None:
    # Serialises the in-flight check per model across transactions. FOR NO KEY UPDATE, not FOR
    # UPDATE: it does not conflict with the key-share locks of rows being inserted for the model
    # (batches, records), so ingestion never waits on an alert's transaction. SQLite has one
    # writer at a time already, and ignores the clause.
    conn.execute(select(models.c.id).where(models.c.id == model_id).with_for_update(key_share=True))


def request_run(
    conn: Connection,
    *,
    hook_name: str,
    model_id: int,
    alert_id: int | None,
    trigger: str,
    now: datetime,
) -> int | None:
    """Queue a run of the hook; its id, or None when the hook is unknown, of another model,
    disabled or cooling down, or another run of the model is in flight. Never raises for those:
    an alert's transaction calls it."""
    _lock_model(conn, model_id)
    hook = hook_by_name(conn, hook_name)
    if hook is None or hook.model_id != model_id or refusal(conn, hook, now=now) is not None:
        return None
    return _queue(conn, hook, alert_id=alert_id, trigger=trigger, now=now)


def queue_run(conn: Connection, hook: Hook, *, trigger: str = "manual", now: datetime) -> Run:
    """Queue a run of ``hook`` for a person; raises Conflict (``retrain_in_flight``,
    ``cooling_down``, ``hook_disabled``) when ``request_run`` would refuse it."""
    _lock_model(conn, hook.model_id)
    refused = refusal(conn, hook, now=now)
    if refused is not None:
        code, message = refused
        raise Conflict(message, code=code)
    return get_run(conn, _queue(conn, hook, alert_id=None, trigger=trigger, now=now))


def _queue(
    conn: Connection, hook: Hook, *, alert_id: int | None, trigger: str, now: datetime
) -> int:
    details = {
        "hook": {"name": hook.name, "kind": hook.kind, "timeout_seconds": hook.timeout_seconds}
    }
    run_id = conn.execute(
        insert(retrain_runs)
        .values(
            model_id=hook.model_id,
            hook_id=hook.id,
            alert_id=alert_id,
            trigger=trigger,
            status="queued",
            output="",
            details=details,
            created_at=now,
            updated_at=now,
        )
        .returning(retrain_runs.c.id)
    ).scalar_one()
    return int(run_id)


def _runs_query() -> Any:
    return (
        select(
            retrain_runs,
            models.c.name.label("model"),
            retrain_hooks.c.name.label("hook_name"),
        )
        .join(models, models.c.id == retrain_runs.c.model_id)
        .outerjoin(retrain_hooks, retrain_hooks.c.id == retrain_runs.c.hook_id)
    )


def _run(row: Any) -> Run:
    details = dict(row["details"] or {})
    recorded = details.get("hook")
    hook = row["hook_name"] or (recorded.get("name") if isinstance(recorded, dict) else None)
    return Run(
        id=int(row["id"]),
        model_id=row["model_id"],
        model=row["model"],
        hook_id=row["hook_id"],
        hook=hook,
        alert_id=row["alert_id"],
        trigger=row["trigger"],
        status=row["status"],
        version=row["version"],
        output=row["output"] or "",
        details=details,
        claimed_by=row["claimed_by"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        updated_at=row["updated_at"],
    )


def find_run(conn: Connection, run_id: int) -> Run | None:
    """The run, or None."""
    row = conn.execute(_runs_query().where(retrain_runs.c.id == run_id)).mappings().first()
    return None if row is None else _run(row)


def lock_run(conn: Connection, run_id: int) -> Run:
    """The run, locked until the end of the transaction (to change it from what it is now)."""
    if (
        conn.execute(
            select(retrain_runs.c.id).where(retrain_runs.c.id == run_id).with_for_update()
        ).first()
        is None
    ):
        raise NotFound(f"no retrain run {run_id}", code="unknown_run")
    return get_run(conn, run_id)


def get_run(conn: Connection, run_id: int) -> Run:
    """The run; NotFound when there is none."""
    run = find_run(conn, run_id)
    if run is None:
        raise NotFound(f"no retrain run {run_id}", code="unknown_run")
    return run


def list_runs(
    conn: Connection,
    *,
    model_id: int | None = None,
    limit: int = 50,
    status: str | None = None,
) -> list[Run]:
    """Runs newest first, of one model and/or in one status when given."""
    query = _runs_query().order_by(retrain_runs.c.id.desc()).limit(limit)
    if model_id is not None:
        query = query.where(retrain_runs.c.model_id == model_id)
    if status is not None:
        query = query.where(retrain_runs.c.status == status)
    return [_run(row) for row in conn.execute(query).mappings()]


def set_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    now: datetime,
    version: str | None = None,
    output: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Record a run's new status (and version, output when given); ``details`` are merged into
    the stored ones. ``started_at`` is set when it starts running, ``finished_at`` when its hook
    has finished (the first status past running)."""
    if status not in STATUSES:
        raise ValueError(f"unknown retrain run status {status!r}")
    row = conn.execute(
        select(retrain_runs.c.details, retrain_runs.c.started_at, retrain_runs.c.finished_at)
        .where(retrain_runs.c.id == run_id)
        .with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"no retrain run {run_id}", code="unknown_run")
    values: dict[str, Any] = {"status": status, "updated_at": now}
    if version is not None:
        values["version"] = version
    if output is not None:
        values["output"] = output
    if details:
        values["details"] = {**dict(row.details or {}), **details}
    if status == "running" and row.started_at is None:
        values["started_at"] = now
    if status not in _UNFINISHED and row.finished_at is None:
        values["finished_at"] = now
    conn.execute(update(retrain_runs).where(retrain_runs.c.id == run_id).values(values))


def claim_run(
    conn: Connection, *, owner: str, now: datetime, run_id: int | None = None
) -> Run | None:
    """Take the oldest queued run (or run ``run_id`` when it is queued) for this worker: status
    running, claimed by ``owner``; None when there is none. On PostgreSQL concurrent workers
    skip each other's rows (SKIP LOCKED); SQLite has one writer at a time."""
    query = (
        select(retrain_runs.c.id)
        .where(retrain_runs.c.status == "queued")
        .order_by(retrain_runs.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if run_id is not None:
        query = query.where(retrain_runs.c.id == run_id)
    run_id = conn.execute(query).scalar()
    if run_id is None:
        return None
    conn.execute(
        update(retrain_runs)
        .where(retrain_runs.c.id == run_id, retrain_runs.c.status == "queued")
        .values(status="running", claimed_by=owner, started_at=now, updated_at=now)
    )
    return get_run(conn, int(run_id))


def _timeout(run: Run) -> float:
    recorded = run.details.get("hook")
    if isinstance(recorded, dict) and isinstance(recorded.get("timeout_seconds"), int | float):
        return float(recorded["timeout_seconds"])
    return _DEFAULT_TIMEOUT


def reap(conn: Connection, *, now: datetime) -> list[Run]:
    """End the running runs that no one will finish: one waiting for an external pipeline's
    report (``details["awaiting_result"]``) past its timeout becomes timed_out; one whose
    worker went silent for longer than its timeout and ``LOST_MARGIN`` becomes failed ("worker
    lost"), so that its model is not held forever. The runs ended, as they now are."""
    ended = []
    running = conn.execute(
        _runs_query()
        .where(retrain_runs.c.status == "running")
        .order_by(retrain_runs.c.id)
        .with_for_update(of=retrain_runs, skip_locked=True)
    ).mappings()
    for run in [_run(row) for row in running]:
        timeout = timedelta(seconds=_timeout(run))
        if run.details.get("awaiting_result"):
            if now >= (run.started_at or run.updated_at) + timeout:
                set_run(
                    conn,
                    run.id,
                    status="timed_out",
                    now=now,
                    output=_append(run.output, "no result reported before the timeout"),
                )
                ended.append(run.id)
        elif now >= run.updated_at + timeout + LOST_MARGIN:
            set_run(
                conn,
                run.id,
                status="failed",
                now=now,
                output=_append(run.output, f"worker lost ({run.claimed_by or 'unknown'})"),
                details={"worker_lost": True},
            )
            ended.append(run.id)
    return [get_run(conn, run_id) for run_id in ended]


def _append(output: str, line: str) -> str:
    return f"{output}\n{line}" if output else line


def claim_consideration(
    conn: Connection, *, owner: str, now: datetime, retry_after: timedelta
) -> Run | None:
    """Take a produced run whose version the promotion gate has not yet considered, marking it
    ``details["considered"] = {"by", "at"}``; or None. A run marked longer than ``retry_after``
    ago and still produced (its worker died mid-consideration) is taken again."""
    produced = conn.execute(
        _runs_query()
        .where(retrain_runs.c.status == "produced")
        .order_by(retrain_runs.c.id)
        .with_for_update(of=retrain_runs, skip_locked=True)
    ).mappings()
    for run in [_run(row) for row in produced]:
        mark = run.details.get("considered")
        if isinstance(mark, dict):
            at = mark.get("at")
            try:
                stale = at is None or now >= datetime.fromisoformat(str(at)) + retry_after
            except ValueError:
                stale = True
            if not stale:
                continue
        set_run(
            conn,
            run.id,
            status="produced",
            now=now,
            details={"considered": {"by": owner, "at": now.isoformat()}},
        )
        return get_run(conn, run.id)
    return None


__all__ = [
    "IN_FLIGHT",
    "KINDS",
    "LOST_MARGIN",
    "STATUSES",
    "TRIGGERS",
    "Hook",
    "Run",
    "claim_consideration",
    "claim_run",
    "delete_hook",
    "find_run",
    "get_hook",
    "get_run",
    "hook_by_name",
    "list_hooks",
    "list_runs",
    "lock_run",
    "queue_run",
    "reap",
    "refusal",
    "request_run",
    "set_run",
    "upsert_hook",
]
