"""POST /v1/heartbeats: a node's SDK counters and runtime telemetry."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import validation
from monitor.collector.auth import authenticate_node, bearer_token
from monitor.collector.body import read_json
from monitor.collector.state import CollectorState, state_of
from monitor.errors import ValidationFailed
from monitor.storage.engine import begin_write
from monitor.storage.heartbeats import record_heartbeat

router = APIRouter()


@router.post(wire.HEARTBEATS_PATH, status_code=204, summary="Report node health")
async def post_heartbeat(request: Request) -> Response:
    """Store a heartbeat: drop counters by reason, queue and spool depth, runtime telemetry."""
    state = state_of(request)
    token = bearer_token(request)
    body = await read_json(
        request,
        max_wire_bytes=state.settings.max_wire_bytes,
        max_decoded_bytes=state.settings.max_decoded_bytes,
    )
    beat = validation.heartbeat_body(body)
    await run_in_threadpool(_store, state, token, beat)
    return Response(status_code=204)


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
