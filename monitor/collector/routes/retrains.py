"""Admin routes of retraining hooks and runs: define hooks, start a run by hand, read the record
of runs, and take an external pipeline's result.

The answers are ``monitor.commands.retrain``'s documents, the very ones `edge-monitor retrain
... --json` prints. A hook's body takes the keys of a rules file's ``[[hook]]`` section. The
collector never runs a hook nor the promotion gate: a queued run waits for the worker, and a
result reported here leaves the run ``produced`` for the worker's retrain job to hand to the gate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.alerts.rulesfile import HOOK_KINDS, MAX_COOLDOWN, MAX_HOOK_TIMEOUT
from monitor.collector.auth import admin_only
from monitor.collector.openapi import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_UNREADABLE,
    UNSTORABLE,
    conflict,
    invalid,
    not_found,
    operation,
    refusals,
)
from monitor.collector.state import state_of
from monitor.commands import retrain
from monitor.storage.retrains import STATUSES

router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])

_NO_HOOK = not_found("unknown_hook")
_NO_MODEL = not_found("unknown_model")
_NO_RUN = not_found("unknown_run")
_NO_HOOK_OR_MODEL = not_found("unknown_hook", "unknown_model")
_BAD_HOOK = invalid(
    "validation_failed",
    "refused_target",
    when="The body is not a hook, or a field breaks a hook's rules (every problem, each with its "
    "field path), or a webhook's URL is on a loopback, private or link-local address not allowed "
    "by MONITOR_WEBHOOK_ALLOWED_NETWORKS (refused_target).",
)
_BAD_RESULT = invalid(
    "validation_failed",
    "unknown_version",
    when="The body is not a result (produced names its version, failed none), or the version "
    "is not registered for the run's model (unknown_version).",
)
_BAD_QUERY = invalid(
    "validation_failed", "invalid_query", when="A query or path value breaks its rule."
)
_FROM_FILE = conflict("defined_by_file")
_BUSY = conflict("retrain_in_flight", "cooling_down", "hook_disabled")
_NOT_RUNNING = conflict("run_not_running")

RunStatus = Literal[
    "queued",
    "running",
    "failed",
    "timed_out",
    "produced",
    "gated",
    "canary",
    "promoted",
    "rolled_back",
]
#: Largest run id a path may name (the ids are 64-bit).
_MAX_ID = 2**63 - 1

HookName = Annotated[
    str, Path(description="the hook's name (1 to 128 printable characters)", examples=["nightly"])
]
RunId = Annotated[int, Path(ge=1, le=_MAX_ID, description="the run's id", examples=[3])]
ModelQuery = Annotated[str | None, Query(description="only this model's (default: every model's)")]


# --- Bodies and answers -----------------------------------------------------------------------


class HookIn(BaseModel):
    """A hook's fields, as a rules file's ``[[hook]]`` section writes them (the name is the
    path's). Give the kind's keys only: ``argv`` (and ``env``) for a command, ``entry_point`` for
    python, ``url`` (and ``secret``) for a webhook, none for reference. ``timeout`` or
    ``timeout_seconds``, ``cooldown`` or ``cooldown_seconds``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "pump-failure",
                    "kind": "command",
                    "argv": ["python", "/opt/pipeline/retrain.py"],
                    "timeout": "1h",
                    "cooldown": "6h",
                }
            ]
        },
    )

    model: str = Field(description="the model it retrains")
    kind: str = Field(description="what it runs", json_schema_extra={"enum": list(HOOK_KINDS)})
    argv: list[str] | None = Field(
        default=None, description="command: the program and its arguments (run without a shell)"
    )
    env: dict[str, str] | None = Field(
        default=None, description="command: variables to set beside the worker's environment"
    )
    entry_point: str | None = Field(
        default=None, description='python: "package.module:function", called with the context'
    )
    url: str | None = Field(
        default=None, description="webhook: where to POST the signed request (http or https)"
    )
    secret: str | None = Field(
        default=None,
        description="webhook: its signing secret, whsec_ + base64 of 24 to 64 bytes; left out: "
        "generated for a new hook (and answered this once), kept for an existing one",
    )
    timeout: str | None = Field(
        default=None, description='how long a run may take, as "90s", "30m", "2h" (default 1h)'
    )
    timeout_seconds: float | None = Field(
        default=None,
        description="the same in seconds",
        json_schema_extra={"minimum": 1, "maximum": MAX_HOOK_TIMEOUT},
    )
    cooldown: str | None = Field(
        default=None, description='least time between two runs of the hook, as "6h" (default)'
    )
    cooldown_seconds: int | None = Field(
        default=None,
        description="the same in seconds",
        json_schema_extra={"minimum": 0, "maximum": MAX_COOLDOWN},
    )
    enabled: bool | None = Field(default=None, description="false: alerts queue no runs of it")


class HookOut(BaseModel):
    """A retrain hook (a webhook's secret only in the answer that generated it)."""

    name: str
    model: str
    kind: str
    config: dict[str, Any] = Field(
        description="the kind's keys (argv, env, entry_point, url); secret_set says whether a "
        "webhook has its secret"
    )
    timeout_seconds: float
    cooldown_seconds: int
    enabled: bool
    source: str = Field(description='where it was defined: "file", "cli" or "api"')
    created_at: datetime | None
    updated_at: datetime | None
    secret: str | None = Field(
        default=None, description="present only when it was just generated: keep it"
    )


class HooksOut(BaseModel):
    """Retrain hooks, by name."""

    hooks: list[HookOut]


class RemovedOut(BaseModel):
    """What was removed."""

    name: str
    removed: bool


class RunOut(BaseModel):
    """A retrain run: what started it, how it went, what it produced, the promotion after."""

    id: int
    model: str
    hook: str | None = Field(description="the hook's name (kept after it was removed)")
    trigger: Literal["alert", "manual"]
    alert_id: int | None = Field(description="the alert that started it")
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    version: str | None = Field(description="the version it produced")
    in_flight: bool = Field(description="it holds its model: no other run of it starts")
    claimed_by: str | None = Field(description="the worker that ran it")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    details: dict[str, Any] = Field(
        description="the hook's figures (exit_code, seconds), the gate's and the canary's"
    )
    output: str | None = Field(
        default=None, description="the tail of its output (in a single run's answer)"
    )


class RunsOut(BaseModel):
    """Retrain runs, newest first (without their output)."""

    runs: list[RunOut]


class ResultIn(BaseModel):
    """An external pipeline's result for a running run."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"status": "produced", "version": "5"}]},
    )

    status: Literal["produced", "failed"] = Field(
        description="produced: it registered ``version`` for the run's model; failed: it did not"
    )
    version: str | None = Field(
        default=None,
        description="with produced: the version it registered",
        json_schema_extra={"maxLength": 128},
    )
    output: str | None = Field(
        default=None,
        description="what to keep of its log (the tail is kept)",
        json_schema_extra={"maxLength": 100_000},
    )


def _declared(*own: Any, takes_input: bool = True) -> dict[str, Any]:
    given = (UNSTORABLE,) if takes_input else ()
    return {
        "responses": refusals(ADMIN, *own, *given),
        "openapi_extra": operation(security=[ADMIN_TOKEN]),
    }


# --- Hooks ------------------------------------------------------------------------------------


@router.get(
    "/retrain/hooks",
    summary="Retrain hooks, by name (secrets left out)",
    response_model=HooksOut,
    **_declared(_NO_MODEL),
)
async def list_hooks(request: Request, model: ModelQuery = None) -> JSONResponse:
    found = await run_in_threadpool(retrain.list_hooks, state_of(request).engine, model=model)
    return JSONResponse({"hooks": [retrain.hook_document(h) for h in found]})


@router.put(
    "/retrain/hooks/{name}",
    summary="Create or replace a retrain hook (a webhook's secret is answered only when generated)",
    response_model=HookOut,
    **_declared(ADMIN_UNREADABLE, _NO_MODEL, _BAD_HOOK, _FROM_FILE),
)
async def put_hook(request: Request, name: HookName, body: HookIn) -> JSONResponse:
    state = state_of(request)
    section = {"name": name, **body.model_dump(exclude_none=True)}
    added = await run_in_threadpool(
        retrain.add_hook,
        state.engine,
        section,
        allowed_networks=state.settings.webhook_allowed_networks,
        source="api",
    )
    document = retrain.hook_document(added.hook)
    if added.generated_secret is not None:
        document["secret"] = added.generated_secret
    return JSONResponse(document)


@router.delete(
    "/retrain/hooks/{name}",
    summary="Remove a retrain hook (its runs stay recorded)",
    response_model=RemovedOut,
    **_declared(_NO_HOOK, _FROM_FILE),
)
async def delete_hook(request: Request, name: HookName) -> JSONResponse:
    await run_in_threadpool(retrain.remove_hook, state_of(request).engine, name)
    return JSONResponse({"name": name, "removed": True})


@router.post(
    "/retrain/hooks/{name}/runs",
    summary="Queue a run of the hook now (a manual trigger); the worker runs it",
    status_code=202,
    response_model=RunOut,
    **_declared(_NO_HOOK, _BUSY),
)
async def trigger_hook(request: Request, name: HookName) -> JSONResponse:
    run = await run_in_threadpool(retrain.trigger, state_of(request).engine, name)
    return JSONResponse(retrain.run_document(run), status_code=202)


# --- Runs -------------------------------------------------------------------------------------


@router.get(
    "/retrain/runs",
    summary="Retrain runs, newest first",
    response_model=RunsOut,
    **_declared(_NO_MODEL, _BAD_QUERY),
)
async def list_runs(
    request: Request,
    model: ModelQuery = None,
    status: Annotated[
        RunStatus | None,
        Query(description="only runs in this status"),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=retrain.MAX_RUNS, description="at most this many runs")
    ] = retrain.DEFAULT_RUNS,
) -> JSONResponse:
    found = await run_in_threadpool(
        retrain.list_runs, state_of(request).engine, model=model, limit=limit, status=status
    )
    return JSONResponse({"runs": [retrain.run_document(r, output=False) for r in found]})


@router.get(
    "/retrain/runs/{run_id}",
    summary="One retrain run with its output's tail",
    response_model=RunOut,
    **_declared(_NO_RUN, _BAD_QUERY, takes_input=False),
)
async def get_run(request: Request, run_id: RunId) -> JSONResponse:
    run = await run_in_threadpool(retrain.get_run, state_of(request).engine, run_id)
    return JSONResponse(retrain.run_document(run))


@router.post(
    "/retrain/runs/{run_id}/result",
    summary="An external pipeline reports a running run's result (the version it registered)",
    response_model=RunOut,
    **_declared(ADMIN_UNREADABLE, _NO_RUN, _BAD_RESULT, _BAD_QUERY, _NOT_RUNNING),
)
async def report_result(request: Request, run_id: RunId, body: ResultIn) -> JSONResponse:
    run = await run_in_threadpool(
        retrain.report_result,
        state_of(request).engine,
        run_id,
        body.model_dump(exclude_none=True),
    )
    return JSONResponse(retrain.run_document(run))
