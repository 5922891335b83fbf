"""Routes of alert rules and alerts: the admin API defines rules and reads alerts; the read API
(read or admin token) reads alerts, which are results people read.

The answers are ``monitor.commands.alerts``'s documents, the very ones `edge-monitor alerts
... --json` prints. A rule's body takes the fields of a rules file's ``[[rule]]`` section
(``fire = "2 of 3"`` or ``fire_m``/``fire_n``, ``cooldown = "30m"`` or ``cooldown_seconds``);
every problem of it is answered at once, each with its field path (``params.metric``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.alerts import rules
from monitor.collector.auth import admin_only, readers_only
from monitor.collector.openapi import (
    ADMIN,
    ADMIN_TOKEN,
    ADMIN_UNREADABLE,
    READ_TOKEN,
    READER,
    UNSTORABLE,
    conflict,
    invalid,
    not_found,
    operation,
    refusals,
)
from monitor.collector.state import state_of
from monitor.commands import alerts
from monitor.errors import ValidationFailed

#: The one router the app includes: the admin routes and the read routes below.
router = APIRouter()
_admin = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])
_read = APIRouter(prefix=wire.API_PREFIX, dependencies=[Depends(readers_only)])

_ADMIN_SECURITY = operation(security=[ADMIN_TOKEN])
_READ_SECURITY = operation(security=[READ_TOKEN, ADMIN_TOKEN])
_NO_RULE = not_found("unknown_rule")
_NO_ALERT = not_found("unknown_alert")
_NO_MODEL = not_found("unknown_model")
_BAD_RULE = invalid(
    "validation_failed",
    when="The body is not a rule, or a field breaks a rule's rules (every problem, each with "
    "its field path such as params.metric), or it names a model, endpoint or hook that does not "
    "exist.",
)
_BAD_QUERY = invalid(
    "validation_failed", when="A query or path value breaks its rule; details name it."
)
_IN_FILE = conflict("defined_in_file")

#: Largest alert id a path may name (the ids are 64-bit).
_MAX_ID = 2**63 - 1

RuleName = Annotated[
    str,
    Path(description="the rule's name (1 to 128 printable characters)", examples=["site drift"]),
]
AlertId = Annotated[int, Path(ge=1, le=_MAX_ID, description="the alert's id", examples=[12])]
State = Annotated[
    Literal["firing", "resolved"] | None,
    Query(description="only firing or only resolved alerts (default: both)"),
]
ModelQuery = Annotated[str | None, Query(description="only this model's (default: every model's)")]
Limit = Annotated[
    int,
    Query(ge=1, le=alerts.MAX_ALERTS, description="at most this many alerts, newest first"),
]


# --- Bodies and answers -----------------------------------------------------------------------


class AlertRuleIn(BaseModel):
    """A rule's fields, as a rules file's ``[[rule]]`` section writes them; absent fields take
    their defaults. Give ``fire`` or ``fire_m``/``fire_n``, ``resolve`` or
    ``resolve_m``/``resolve_n``, ``cooldown`` or ``cooldown_seconds``."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "model": "pump-failure",
                    "kind": "performance",
                    "params": {"metric": "accuracy", "below": 0.85},
                    "fire": "2 of 3",
                    "resolve": "3 of 3",
                    "cooldown": "30m",
                    "severity": "critical",
                    "hooks": [],
                }
            ]
        },
    )

    name: str | None = Field(default=None, description="the rule's name, if given: the path's")
    kind: str = Field(
        description="what the rule judges", json_schema_extra={"enum": list(rules.KINDS)}
    )
    model: str | None = Field(
        default=None,
        description="the model whose results it judges (required for window kinds; node "
        "kinds: every model's nodes when absent)",
    )
    scope: str | None = Field(
        default=None,
        description="where it judges (default: fleet)",
        json_schema_extra={"enum": [*rules.SCOPES, None]},
    )
    scope_key: str | None = Field(
        default=None, description="the one site, group or node of the scope (default: each)"
    )
    group_by: str | None = Field(
        default=None,
        description="fold subjects into one alert per site, group, or rule (default: one per "
        "subject)",
        json_schema_extra={"enum": ["site", "group", "rule", None]},
    )
    fire: str | None = Field(
        default=None,
        description='"M of N": M of the last N judged windows breach before it fires',
        examples=["2 of 3"],
    )
    fire_m: int | None = Field(default=None, description="M of fire (default 1)")
    fire_n: int | None = Field(default=None, description="N of fire (default 1)")
    resolve: str | None = Field(
        default=None,
        description='"M of N": M of the last N windows clear before a subject recovers',
        examples=["3 of 3"],
    )
    resolve_m: int | None = Field(default=None, description="M of resolve (default 1)")
    resolve_n: int | None = Field(default=None, description="N of resolve (default 1)")
    cooldown: str | None = Field(
        default=None,
        description='quiet time after resolving: "90s", "30m", "2h", "1d"',
        examples=["30m"],
    )
    cooldown_seconds: int | None = Field(default=None, description="the cooldown in seconds")
    severity: str | None = Field(
        default=None,
        description="default: warning",
        json_schema_extra={"enum": [*rules.SEVERITIES, None]},
    )
    endpoints: list[str] | None = Field(
        default=None,
        description="webhook endpoints to notify by name (absent or null: every enabled one; "
        "[]: none)",
    )
    hooks: list[str] | None = Field(
        default=None, description="retrain hooks to start when it fires, by name"
    )
    enabled: bool | None = Field(default=None, description="default: true")
    params: dict[str, Any] | None = Field(
        default=None,
        description="the kind's parameters: feature (feature_drift); min_share "
        "(share_drifted); metric, below|above or drop, confidence, estimated (performance, "
        "performance_drop); figure, above, feature (quality); for_seconds (node_offline); above "
        "(sdk_drops); above_ms (latency_p95)",
    )


class AlertRuleOut(BaseModel):
    """A stored rule: the fields a PUT takes (numbers for M of N and the cooldown), and where
    it was defined."""

    name: str
    kind: str
    model: str | None
    scope: str
    scope_key: str | None
    group_by: str | None
    fire_m: int
    fire_n: int
    resolve_m: int
    resolve_n: int
    cooldown_seconds: int
    severity: str
    endpoints: list[str] | None = Field(description="null: every enabled endpoint")
    hooks: list[str]
    enabled: bool
    params: dict[str, Any]
    source: Literal["file", "cli", "api"] = Field(
        description="where it was defined: a rules file (`alerts apply`), the CLI or the API"
    )


class AlertRuleList(BaseModel):
    rules: list[AlertRuleOut]


class AlertOut(BaseModel):
    """One alert: a rule's trouble in one group, firing until resolved."""

    id: int
    rule: str
    kind: str
    model: str | None
    group: str = Field(description="what the alert is about: a subject, a site, a group or all")
    episode: int = Field(description="how many times this rule's group has fired, this one")
    state: Literal["firing", "resolved"]
    severity: str
    summary: str = Field(description="the alert in one sentence")
    subjects: list[str] = Field(description="the subjects in trouble now (empty once resolved)")
    details: dict[str, Any]
    first_window_start: str | None
    last_window_start: str | None
    fired_at: str
    updated_at: str
    resolved_at: str | None


class AlertList(BaseModel):
    alerts: list[AlertOut]


class DeliveryOut(BaseModel):
    """One endpoint a transition was queued for, and how its delivery went."""

    endpoint: str
    status: str = Field(description="pending, delivering, delivered, failed or dropped")
    attempts: int
    delivered_at: str | None
    last_error: str | None


class AlertEventOut(BaseModel):
    """One transition of an alert, as notified."""

    seq: int
    kind: str = Field(description="fired, updated or resolved")
    at: str
    window_start: str | None
    message_id: str = Field(description="the Standard Webhooks webhook-id of its messages")
    payload: dict[str, Any] = Field(description="the webhook payload sent")
    deliveries: list[DeliveryOut]


class AlertWithEvents(AlertOut):
    events: list[AlertEventOut]


# --- Admin: rules -----------------------------------------------------------------------------


@_admin.get(
    "/alert-rules",
    summary="Every alert rule (or one model's)",
    response_model=AlertRuleList,
    responses=refusals(ADMIN, _NO_MODEL, UNSTORABLE),
    openapi_extra=_ADMIN_SECURITY,
)
async def list_rules(request: Request, model: ModelQuery = None) -> JSONResponse:
    document = await run_in_threadpool(alerts.rules_document, state_of(request).engine, model=model)
    return JSONResponse(document)


@_admin.put(
    "/alert-rules/{name}",
    summary="Add or replace an alert rule",
    response_model=AlertRuleOut,
    responses={
        201: {"model": AlertRuleOut, "description": "The rule was added."},
        **refusals(ADMIN, ADMIN_UNREADABLE, _IN_FILE, _BAD_RULE, UNSTORABLE),
    },
    openapi_extra=_ADMIN_SECURITY,
)
async def put_rule(request: Request, name: RuleName, body: AlertRuleIn) -> JSONResponse:
    """Answers 201 for a new rule, 200 for a replaced one. A rule a rules file defined is
    changed in the file (409 ``defined_in_file``)."""
    fields = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if fields.get("name", name) != name:
        message = f"the body names {fields['name']!r}, the path {name!r}"
        raise ValidationFailed(
            message, details=[{"code": "invalid_field", "field": "name", "message": message}]
        )
    fields["name"] = name
    rule = alerts.build_rule(fields, source="api")
    stored, created = await run_in_threadpool(alerts.add_rule, state_of(request).engine, rule)
    return JSONResponse(alerts.rule_document(stored), status_code=201 if created else 200)


@_admin.delete(
    "/alert-rules/{name}",
    summary="Remove an alert rule and its alerts",
    response_model=AlertRuleOut,
    responses=refusals(ADMIN, _NO_RULE, UNSTORABLE),
    openapi_extra=_ADMIN_SECURITY,
)
async def delete_rule(request: Request, name: RuleName) -> JSONResponse:
    """Answers the rule as it was. A rule of a rules file returns at the file's next apply
    unless it is removed there too."""
    removed = await run_in_threadpool(alerts.remove_rule, state_of(request).engine, name)
    return JSONResponse(alerts.rule_document(removed))


# --- Alerts (admin and read API alike) --------------------------------------------------------


async def _alerts(request: Request, state: str | None, model: str | None, limit: int) -> Any:
    return await run_in_threadpool(
        alerts.alerts_document, state_of(request).engine, state=state, model=model, limit=limit
    )


async def _alert(request: Request, alert_id: int) -> Any:
    return await run_in_threadpool(alerts.alert_show_document, state_of(request).engine, alert_id)


_LIST = {
    "summary": "Alerts, newest first: firing, resolved or both",
    "response_model": AlertList,
}
_ONE = {
    "summary": "One alert with its transitions, their webhook-ids and deliveries",
    "response_model": AlertWithEvents,
}


@_admin.get(
    "/alerts",
    responses=refusals(ADMIN, _NO_MODEL, _BAD_QUERY, UNSTORABLE),
    openapi_extra=_ADMIN_SECURITY,
    **_LIST,  # type: ignore[arg-type]
)
async def admin_alerts(
    request: Request,
    state: State = None,
    model: ModelQuery = None,
    limit: Limit = alerts.DEFAULT_ALERTS,
) -> JSONResponse:
    return JSONResponse(await _alerts(request, state, model, limit))


@_admin.get(
    "/alerts/{alert_id}",
    responses=refusals(ADMIN, _NO_ALERT, _BAD_QUERY),
    openapi_extra=_ADMIN_SECURITY,
    **_ONE,  # type: ignore[arg-type]
)
async def admin_alert(request: Request, alert_id: AlertId) -> JSONResponse:
    return JSONResponse(await _alert(request, alert_id))


@_read.get(
    "/alerts",
    responses=refusals(READER, _NO_MODEL, _BAD_QUERY, UNSTORABLE),
    openapi_extra=_READ_SECURITY,
    **_LIST,  # type: ignore[arg-type]
)
async def read_alerts(
    request: Request,
    state: State = None,
    model: ModelQuery = None,
    limit: Limit = alerts.DEFAULT_ALERTS,
) -> JSONResponse:
    """The same document as ``GET /v1/admin/alerts``, for the read token."""
    return JSONResponse(await _alerts(request, state, model, limit))


@_read.get(
    "/alerts/{alert_id}",
    responses=refusals(READER, _NO_ALERT, _BAD_QUERY),
    openapi_extra=_READ_SECURITY,
    **_ONE,  # type: ignore[arg-type]
)
async def read_alert(request: Request, alert_id: AlertId) -> JSONResponse:
    """The same document as ``GET /v1/admin/alerts/{alert_id}``, for the read token."""
    return JSONResponse(await _alert(request, alert_id))


# Included last: a router copies the routes it includes when it includes them.
router.include_router(_admin)
router.include_router(_read)
