"""POST /v1/heartbeats: a node's SDK counters and runtime telemetry."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import openapi, validation
from monitor.collector.admission import admit_node
from monitor.collector.auth import authenticate_node
from monitor.collector.budget import ReadBody, read_within_budget
from monitor.collector.openapi import NODE_BODY, NODE_TOKEN, WRONG_ROLE, invalid, refusals
from monitor.collector.schemas import HeartbeatBody
from monitor.collector.state import CollectorState, state_of
from monitor.errors import ValidationFailed
from monitor.storage.engine import begin_write
from monitor.storage.heartbeats import record_heartbeat

router = APIRouter()


@router.post(
    wire.HEARTBEATS_PATH,
    status_code=204,
    summary="Report node health",
    response_description="Stored",
    responses=refusals(
        NODE_BODY,
        WRONG_ROLE,
        invalid(
            "validation_failed",
            "invalid_string",
            when="The heartbeat breaks a rule (its time, names, counters or telemetry); "
            "telemetry larger than its bounds is 413.",
        ),
    ),
    openapi_extra=openapi.operation(security=[NODE_TOKEN], body=HeartbeatBody, gzip=True),
)
async def post_heartbeat(request: Request) -> Response:
    """Store a heartbeat: drop counters by reason, queue and spool depth, runtime telemetry."""
    state = state_of(request)
    token = await admit_node(request)
    async with read_within_budget(request, state.budget, state.settings) as body:
        await run_in_threadpool(_accept, state, token, body)
    return Response(status_code=204)


def _accept(state: CollectorState, token: str, body: ReadBody) -> None:
    _store(state, token, validation.heartbeat_body(body.decode()))


def _store(state: CollectorState, token: str, beat: validation.HeartbeatBody) -> None:
    version_id = None
    # A heartbeat about an unregistered model still tells that the node lives.
    if beat.model and beat.model_version:
        with contextlib.suppress(ValidationFailed):
            version_id = state.resolve(beat.model, beat.model_version)[1]
    with begin_write(state.engine) as conn:
        node = authenticate_node(conn, token)
        record_heartbeat(
            conn,
            node_id=node.id,
            ts=datetime.fromtimestamp(beat.ts, UTC),
            model_version_id=version_id,
            sdk=beat.sdk,
            runtime=beat.runtime,
        )
