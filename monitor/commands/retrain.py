"""Retrain hook and run commands: add, list and remove hooks, queue a run, list and show runs,
and take an external pipeline's result.

The CLI (`edge-monitor retrain ...`) and the admin API (`/v1/admin/retrain/...`) both come here,
so they accept and refuse the same values with the same messages. A hook's section is checked by
the rules file's ``check_hook`` (one rule for a file, the CLI and the API). Running the hooks is
the retrain job's (``monitor.jobs.retrain``); a secret is never shown after it was generated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from monitor.alerts import rulesfile, signing, targets
from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage import registry, retrains
from monitor.storage.engine import begin_write
from monitor.storage.models import get_model
from monitor.storage.retrains import Hook, Run
from monitor.storage.types import utcnow

DEFAULT_RUNS = 20
MAX_RUNS = 1000
#: The statuses an external pipeline may report.
REPORTED = ("produced", "failed")
#: Characters of a reported output that are kept (the column holds 20,000).
OUTPUT_LIMIT = 16_000
FILE = "file"


@dataclass(frozen=True)
class AddedHook:
    """A hook as stored, with its webhook secret when it was generated (shown this once)."""

    hook: Hook
    created: bool
    generated_secret: str | None


def unknown_hook(name: str) -> NotFound:
    """The error for a hook that does not exist."""
    return NotFound(
        f'no retrain hook named {name!r} (add it with "edge-monitor retrain add-hook")',
        code="unknown_hook",
    )


def _invalid(
    problems: Sequence[tuple[str, str]], *, code: str = "invalid_field", what: str = "hook"
) -> ValidationFailed:
    return ValidationFailed(
        f"invalid {what}: " + "; ".join(f"{where}: {message}" for where, message in problems),
        code=None if code == "invalid_field" else code,
        details=[{"code": code, "field": f, "message": m} for f, m in problems],
    )


def check_section(
    section: Mapping[str, Any], *, allowed_networks: Sequence[str] = ()
) -> rulesfile.HookSpec:
    """The hook ``section`` defines, checked without the database: every problem of it (422,
    field paths without the ``hook.`` prefix), and a webhook URL on a refused address
    (``refused_target``)."""
    problems = [(where.removeprefix("hook."), m) for where, m in rulesfile.check_hook(section)]
    if problems:
        raise _invalid(problems)
    spec = rulesfile.hook_from(section)
    if spec.kind == "webhook" and (why := targets.refusal(spec.config["url"], allowed_networks)):
        raise _invalid([("url", why)], code="refused_target")
    return spec


def add_hook(
    engine: Engine,
    section: Mapping[str, Any],
    *,
    allowed_networks: Sequence[str] = (),
    source: str = "cli",
    now: datetime | None = None,
) -> AddedHook:
    """Create or replace the hook ``section`` defines: the keys of a rules file's ``[[hook]]``
    (name, model, kind, the kind's keys, timeout or timeout_seconds, cooldown or
    cooldown_seconds, enabled). A webhook's secret not given is generated for a new hook and
    kept for an existing one. Refuses (422, field paths) a bad section and a webhook URL on a
    refused address (``refused_target``); a hook defined by the rules file is changed there
    (409 ``defined_by_file``); an unknown model is 404."""
    spec = check_section(section, allowed_networks=allowed_networks)
    config = dict(spec.config)
    now = now or utcnow()
    with begin_write(engine) as conn:
        model = get_model(conn, spec.model)
        before = retrains.hook_by_name(conn, spec.name)
        if before is not None and before.source == FILE and source != FILE:
            raise Conflict(
                f"retrain hook {spec.name!r} is defined by the rules file; change it there",
                code="defined_by_file",
            )
        generated = None
        if spec.kind == "webhook" and "secret" not in config:
            kept = before.config.get("secret") if before and before.kind == "webhook" else None
            config["secret"] = kept or (generated := signing.new_secret())
        hook = retrains.upsert_hook(
            conn,
            name=spec.name,
            model_id=model.id,
            kind=spec.kind,
            config=config,
            timeout_seconds=spec.timeout_seconds,
            cooldown_seconds=spec.cooldown_seconds,
            enabled=spec.enabled,
            source=source,
            now=now,
        )
    return AddedHook(hook=hook, created=before is None, generated_secret=generated)


def remove_hook(engine: Engine, name: str) -> Hook:
    """Remove a hook (its runs stay); a hook of the rules file is removed from the file."""
    with begin_write(engine) as conn:
        hook = retrains.hook_by_name(conn, name)
        if hook is None:
            raise unknown_hook(name)
        if hook.source == FILE:
            raise Conflict(
                f"retrain hook {name!r} is defined by the rules file; remove it there",
                code="defined_by_file",
            )
        retrains.delete_hook(conn, name)
    return hook


def get_hook(engine: Engine, name: str) -> Hook:
    """The hook called ``name``."""
    with engine.connect() as conn:
        hook = retrains.hook_by_name(conn, name)
    if hook is None:
        raise unknown_hook(name)
    return hook


def list_hooks(engine: Engine, *, model: str | None = None) -> list[Hook]:
    """Hooks by name, of one model when given."""
    with engine.connect() as conn:
        model_id = None if model is None else get_model(conn, model).id
        return retrains.list_hooks(conn, model_id=model_id)


def hook_document(hook: Hook) -> dict[str, Any]:
    """A hook as JSON, its webhook secret left out (``secret_set`` says there is one)."""
    config = {k: v for k, v in hook.config.items() if k != "secret"}
    if hook.kind == "webhook":
        config["secret_set"] = bool(hook.config.get("secret"))
    return {
        "name": hook.name,
        "model": hook.model,
        "kind": hook.kind,
        "config": config,
        "timeout_seconds": hook.timeout_seconds,
        "cooldown_seconds": hook.cooldown_seconds,
        "enabled": hook.enabled,
        "source": hook.source,
        "created_at": _iso(hook.created_at),
        "updated_at": _iso(hook.updated_at),
    }


def trigger(engine: Engine, name: str, *, now: datetime | None = None) -> Run:
    """Queue a manual run of hook ``name``; Conflict ``retrain_in_flight`` (a run of its model
    is queued, running, produced or in canary), ``cooling_down`` or ``hook_disabled``."""
    with begin_write(engine) as conn:
        hook = retrains.hook_by_name(conn, name)
        if hook is None:
            raise unknown_hook(name)
        return retrains.queue_run(conn, hook, trigger="manual", now=now or utcnow())


def check_limit(limit: int) -> int:
    """A run list's length, 1 to ``MAX_RUNS``."""
    if not 1 <= limit <= MAX_RUNS:
        raise ValidationFailed(
            f"limit must be 1 to {MAX_RUNS}",
            code="invalid_query",
            details=[{"code": "invalid_query", "field": "limit", "message": "out of range"}],
        )
    return limit


def list_runs(
    engine: Engine,
    *,
    model: str | None = None,
    limit: int = DEFAULT_RUNS,
    status: str | None = None,
) -> list[Run]:
    """Runs newest first, of one model and in one status when given."""
    check_limit(limit)
    if status is not None and status not in retrains.STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(retrains.STATUSES)}",
            code="invalid_query",
            details=[{"code": "invalid_query", "field": "status", "message": "unknown status"}],
        )
    with engine.connect() as conn:
        model_id = None if model is None else get_model(conn, model).id
        return retrains.list_runs(conn, model_id=model_id, limit=limit, status=status)


def get_run(engine: Engine, run_id: int) -> Run:
    """One run."""
    with engine.connect() as conn:
        return retrains.get_run(conn, run_id)


def run_document(run: Run, *, output: bool = True) -> dict[str, Any]:
    """A run as JSON: what started it, how it went, what it produced and the promotion's
    details; ``output`` false leaves its output out (lists)."""
    document: dict[str, Any] = {
        "id": run.id,
        "model": run.model,
        "hook": run.hook,
        "trigger": run.trigger,
        "alert_id": run.alert_id,
        "status": run.status,
        "version": run.version,
        "in_flight": run.in_flight,
        "claimed_by": run.claimed_by,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "updated_at": _iso(run.updated_at),
        "details": run.details,
    }
    if output:
        document["output"] = run.output
    return document


def report_result(
    engine: Engine, run_id: int, body: Mapping[str, Any], *, now: datetime | None = None
) -> Run:
    """An external pipeline's result for a running run: ``{"status": "produced", "version":
    "5"}`` (a version registered for the run's model) or ``{"status": "failed", "output":
    "..."}``; ``output`` is optional with both. 409 ``run_not_running`` when the run is not
    running (it ended, or was never started)."""
    status, version, reported = _checked_result(body)
    now = now or utcnow()
    with begin_write(engine) as conn:
        run = retrains.lock_run(conn, run_id)
        if run.status != "running":
            raise Conflict(
                f"retrain run {run_id} is {run.status}, not running: its result cannot change",
                code="run_not_running",
            )
        if version is not None and registry.find_version(conn, run.model_id, version) is None:
            raise _invalid(
                [("version", f"version {version!r} of model {run.model!r} is not registered")],
                code="unknown_version",
                what="result",
            )
        lines = [run.output] if run.output else []
        lines.append(f"pipeline reported {status}" + (f" version {version}" if version else ""))
        if reported:
            lines.append(reported)
        text = "\n".join(lines)
        retrains.set_run(
            conn,
            run_id,
            status=status,
            now=now,
            version=version,
            output=text[-OUTPUT_LIMIT:],
            details={"awaiting_result": False, "reported_at": now.isoformat()},
        )
        return retrains.get_run(conn, run_id)


def _checked_result(body: Mapping[str, Any]) -> tuple[str, str | None, str]:
    problems = [
        (key, "is not a key here (known: status, version, output)")
        for key in body
        if key not in ("status", "version", "output")
    ]
    status = body.get("status")
    version = body.get("version")
    output = body.get("output", "")
    if status not in REPORTED:
        problems.append(("status", 'must be "produced" or "failed"'))
    if status == "produced" and (not isinstance(version, str) or not version.strip()):
        problems.append(("version", "a produced result names its version (a string)"))
    if status == "failed" and version is not None:
        problems.append(("version", "a failed result names no version"))
    if not isinstance(output, str):
        problems.append(("output", "must be a string"))
    if problems:
        raise _invalid(problems, what="result")
    return str(status), (str(version) if status == "produced" else None), str(output)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


__all__ = [
    "DEFAULT_RUNS",
    "MAX_RUNS",
    "AddedHook",
    "add_hook",
    "check_limit",
    "check_section",
    "get_hook",
    "get_run",
    "hook_document",
    "list_hooks",
    "list_runs",
    "remove_hook",
    "report_result",
    "run_document",
    "trigger",
    "unknown_hook",
]
