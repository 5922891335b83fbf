"""Admin routes of webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
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
from monitor.commands import webhooks

router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(admin_only)])

_NO_ENDPOINT = not_found("unknown_endpoint")
_INVALID = invalid(
    "validation_failed",
    "invalid_field",
    "refused_target",
    when="The body is not of the shape below, a value breaks a rule (a secret that is not "
    "whsec_ and base64 of 24 to 64 bytes), or the URL's host is on a loopback, private or "
    "link-local address not allowed by MONITOR_WEBHOOK_ALLOWED_NETWORKS (refused_target); "
    "details name the field.",
)
_REFUSED = invalid(
    "refused_target",
    when="The endpoint's URL is on an address that is not allowed (any more); details name it.",
)
_BAD_QUERY = invalid("invalid_value", when="A query value is out of bounds.")
_FROM_FILE = conflict("defined_by_file")

Status = Literal["pending", "delivering", "delivered", "failed", "dropped"]


class WebhookIn(BaseModel):
    """An endpoint to create, or the new state of one; what is left out is kept."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/edge-monitor", "description": "on-call"}
            ]
        },
    )

    url: str = Field(
        description="where to POST messages: http:// or https://, on an allowed address",
        json_schema_extra={"maxLength": 2000},
    )
    secret: str | None = Field(
        default=None,
        description="its signing secret, whsec_ + base64 of 24 to 64 random bytes; left out: "
        "generated for a new endpoint (and answered this once), kept for an existing one",
    )
    description: str | None = Field(default=None, description="what it is for")
    enabled: bool | None = Field(
        default=None,
        description="false disables it (its undelivered messages are dropped); true enables it "
        "again (after a 410 or days of failures)",
    )


class WebhookOut(BaseModel):
    """A webhook endpoint (its secret only in the answer that generated it)."""

    name: str
    url: str
    description: str
    enabled: bool
    disabled_reason: str | None = Field(description="why it is disabled (a 410, days failing)")
    failing_since: datetime | None = Field(description="since when every delivery has failed")
    source: str = Field(description='where it was defined: "file", "cli" or "api"')
    created_at: datetime
    updated_at: datetime
    secret: str | None = Field(
        default=None, description="present only when it was just generated: keep it"
    )


class WebhooksOut(BaseModel):
    """Every webhook endpoint, by name."""

    endpoints: list[WebhookOut]


class RemovedOut(BaseModel):
    """What was removed."""

    name: str
    removed: bool


class TestedOut(BaseModel):
    """How a signed webhook.test message sent now went."""

    endpoint: str
    message_id: str = Field(description="its webhook-id")
    delivered: bool = Field(description="the receiver answered 2xx")
    result: Literal["delivered", "retry", "gone", "failed"]
    status_code: int | None = Field(description="the receiver's status; null: no answer")
    error: str | None
    duration_ms: float


class AttemptOut(BaseModel):
    """One try at delivering a message."""

    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after_seconds: float | None


class DeliveryOut(BaseModel):
    """One message of the delivery log with its attempts."""

    endpoint: str
    message_id: str = Field(description="its webhook-id, the same on every attempt")
    event_type: str
    status: Status
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None = Field(description="when pending: the next attempt")
    delivered_at: datetime | None
    last_error: str | None
    tries: list[AttemptOut]


class DeliveriesOut(BaseModel):
    """The delivery log of an endpoint, newest first."""

    deliveries: list[DeliveryOut]


def _declared(*own: Any, takes_input: bool = True) -> dict[str, Any]:
    given = (UNSTORABLE,) if takes_input else ()
    return {
        "responses": refusals(ADMIN, *own, *given),
        "openapi_extra": operation(security=[ADMIN_TOKEN]),
    }


@router.get(
    "/webhooks",
    summary="Every webhook endpoint",
    response_model=WebhooksOut,
    **_declared(takes_input=False),
)
async def list_webhooks(request: Request) -> JSONResponse:
    found = await run_in_threadpool(webhooks.list_endpoints, state_of(request).engine)
    return JSONResponse({"endpoints": [webhooks.endpoint_json(e) for e in found]})


@router.put(
    "/webhooks/{name}",
    summary="Create a webhook endpoint, or change one (the secret is answered only when generated)",
    response_model=WebhookOut,
    **_declared(ADMIN_UNREADABLE, _INVALID, _FROM_FILE),
)
async def put_webhook(request: Request, name: str, body: WebhookIn) -> JSONResponse:
    state = state_of(request)
    added = await run_in_threadpool(
        webhooks.add_endpoint,
        state.engine,
        name,
        body.url,
        secret=body.secret,
        description=body.description,
        enabled=body.enabled,
        allowed_networks=state.settings.webhook_allowed_networks,
        source="api",
    )
    return JSONResponse(webhooks.endpoint_json(added.endpoint, secret=added.generated_secret))


@router.delete(
    "/webhooks/{name}",
    summary="Remove a webhook endpoint with its outbox and delivery log",
    response_model=RemovedOut,
    **_declared(_NO_ENDPOINT),
)
async def delete_webhook(request: Request, name: str) -> JSONResponse:
    await run_in_threadpool(webhooks.remove_endpoint, state_of(request).engine, name)
    return JSONResponse({"name": name, "removed": True})


@router.post(
    "/webhooks/{name}/test",
    summary="Send a signed webhook.test message to the endpoint now and answer how it went",
    response_model=TestedOut,
    **_declared(_NO_ENDPOINT, _REFUSED),
)
async def test_webhook(request: Request, name: str) -> JSONResponse:
    state = state_of(request)
    tested = await run_in_threadpool(
        webhooks.send_test,
        state.engine,
        name,
        allowed_networks=state.settings.webhook_allowed_networks,
        timeout=state.settings.webhook_timeout_seconds,
    )
    return JSONResponse(webhooks.tested_json(tested))


@router.get(
    "/webhooks/{name}/deliveries",
    summary="The endpoint's delivery log, newest first: each message with its attempts",
    response_model=DeliveriesOut,
    **_declared(_NO_ENDPOINT, _BAD_QUERY),
)
async def webhook_deliveries(
    request: Request,
    name: str,
    status: Annotated[Status | None, Query(description="only messages in this state")] = None,
    limit: Annotated[
        int, Query(ge=1, le=webhooks.MAX_DELIVERIES, description="at most this many messages")
    ] = webhooks.DEFAULT_DELIVERIES,
) -> JSONResponse:
    found = await run_in_threadpool(
        webhooks.deliveries, state_of(request).engine, endpoint=name, status=status, limit=limit
    )
    return JSONResponse({"deliveries": [webhooks.delivery_json(d) for d in found]})
