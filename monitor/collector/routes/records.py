"""POST /v1/records: a batch of records from a node, stored exactly once per record id."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import openapi, validation
from monitor.collector.admission import admit_node
from monitor.collector.auth import authenticate_node
from monitor.collector.budget import ReadBody, read_within_budget
from monitor.collector.openapi import NODE_BODY, NODE_TOKEN, WRONG_ROLE, invalid, refusals
from monitor.collector.schemas import RecordsAnswer, RecordsBody
from monitor.collector.state import CollectorState, state_of
from monitor.errors import ValidationFailed
from monitor.storage.engine import begin_write
from monitor.storage.nodes import touch_node
from monitor.storage.records import insert_batch, prepare_batch

router = APIRouter()


@router.post(
    wire.RECORDS_PATH,
    summary="Ship a batch of records",
    response_description="Counts of accepted, duplicate and rejected records",
    response_model=RecordsAnswer,
    responses=refusals(
        NODE_BODY,
        WRONG_ROLE,
        invalid(
            "validation_failed",
            "invalid_string",
            "all_records_rejected",
            "unknown_model",
            "unregistered_version",
            when="The batch's envelope breaks a rule, every record of it does "
            "(`all_records_rejected`, details list each), its model is not registered, or its "
            "version is new past the cap of unregistered versions.",
        ),
    ),
    openapi_extra=openapi.operation(security=[NODE_TOKEN], body=RecordsBody, gzip=True),
)
async def post_records(request: Request) -> JSONResponse:
    """Store a node's batch. Each record is stored at most once per node (by its ``id``);
    the answer comes after the transaction commits. Bad records are rejected one by one
    with their field paths while the good ones are stored."""
    started = time.perf_counter()
    state = state_of(request)
    token = await admit_node(request)
    async with read_within_budget(request, state.budget, state.settings) as body:
        answer = await run_in_threadpool(_ingest, state, token, body)
    state.metrics.batch_latency(time.perf_counter() - started)
    return JSONResponse(answer)


def _ingest(state: CollectorState, token: str, body: ReadBody) -> dict[str, Any]:
    # Decoding, validation and the columnar payload are built before the write transaction,
    # so that the database lock (one writer at a time on SQLite) is held only to write.
    batch = validation.records_batch(body.decode())
    for rejection in batch.rejected:
        state.metrics.records("rejected", 1, rejection.code)
    rejected = [r.as_dict() for r in batch.rejected]
    if not batch.records:
        raise ValidationFailed(
            "every record of the batch is invalid", code="all_records_rejected", details=rejected
        )
    model_id, version_id = state.resolve(batch.model, batch.model_version)
    prepared = prepare_batch(batch.records)
    with begin_write(state.engine) as conn:
        node = authenticate_node(conn, token)
        result = insert_batch(
            conn,
            node_id=node.id,
            model_id=model_id,
            model_version_id=version_id,
            batch_uid=batch.batch_id,
            batch=prepared,
            compression=state.settings.payload_compression,
        )
        touch_node(conn, node.id, clock_skew=batch.clock_skew)
    state.metrics.records("accepted", result.accepted)
    state.metrics.records("duplicate", result.duplicate)
    return {"accepted": result.accepted, "duplicate": result.duplicate, "rejected": rejected}
