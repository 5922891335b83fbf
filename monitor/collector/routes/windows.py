"""Admin routes of a model's window policy: read it and set it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import schemas
from monitor.collector.auth import admin_only
from monitor.collector.openapi import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_UNREADABLE,
    UNSTORABLE,
    invalid,
    not_found,
    operation,
    refusals,
)
from monitor.collector.state import state_of
from monitor.commands import windows
from monitor.storage.policies import MAX_ROWS, UNITS

router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])

_NO_MODEL = not_found("unknown_model")
# validation_failed: the body is not the shape below; invalid_value: a value breaks a rule
# the schema cannot say (a length's bounds, a known time zone, one policy at a time).
_INVALID = invalid(
    "validation_failed",
    "invalid_value",
    when="The body is not one policy, or a value is out of bounds; details name the field.",
)


class WindowIn(BaseModel):
    """Exactly one of ``every``, ``calendar``, ``rows`` or ``default``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"calendar": "month", "timezone": "Europe/Berlin"}]},
    )

    every: str | None = Field(
        default=None,
        description="fixed windows of 1 minute to 31 days: 15m, 2h, 7d, 1d12h",
        json_schema_extra={"pattern": r"^(\d+d)?(\d+h)?(\d+m)?$"},
    )
    origin: str | None = Field(
        default=None,
        description="with every: an ISO time with its offset the windows align to "
        "(default: the Unix epoch)",
    )
    calendar: str | None = Field(
        default=None,
        description="calendar windows (weeks start on Monday)",
        json_schema_extra={"enum": [*UNITS, None]},
    )
    timezone: str | None = Field(
        default=None, description="with calendar: an IANA time zone (default: UTC)"
    )
    rows: int | None = Field(
        default=None,
        description="windows of N records each, fleet-wide, by record time",
        json_schema_extra={"minimum": 1, "maximum": MAX_ROWS},
    )
    default: bool | None = Field(
        default=None, description="true: back to the settings' default (no policy of its own)"
    )


def _declared(*own: Any, takes_input: bool = True) -> dict[str, Any]:
    given = (UNSTORABLE,) if takes_input else ()
    return {
        "responses": refusals(ADMIN, *own, *given),
        "openapi_extra": operation(security=[ADMIN_TOKEN]),
    }


@router.get(
    "/models/{model}/window",
    summary="A model's window policy",
    response_model=schemas.WindowPolicyOut,
    **_declared(_NO_MODEL),
)
async def get_window(request: Request, model: str) -> JSONResponse:
    view = await run_in_threadpool(
        windows.window_policy, state_of(request).engine, model, _default(request)
    )
    return JSONResponse(view.to_json())


@router.put(
    "/models/{model}/window",
    summary="Set a model's window policy; it takes over after the last analysed window",
    response_model=schemas.WindowPolicyOut,
    **_declared(ADMIN_UNREADABLE, _NO_MODEL, _INVALID),
)
async def set_window(request: Request, model: str, body: WindowIn) -> JSONResponse:
    policy = windows.policy_from_request(
        every=body.every,
        calendar=body.calendar,
        timezone=body.timezone,
        rows=body.rows,
        origin=body.origin,
        default=bool(body.default),
    )
    view = await run_in_threadpool(
        windows.set_window_policy, state_of(request).engine, model, policy, _default(request)
    )
    return JSONResponse(view.to_json())


def _default(request: Request) -> timedelta:
    return timedelta(minutes=state_of(request).settings.analysis_window_minutes)
