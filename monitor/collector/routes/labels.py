"""POST /v1/labels: ground truth for earlier predictions, from a node or an operator."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import openapi, validation
from monitor.collector.auth import authenticate_node, bearer_token, is_admin_token
from monitor.collector.budget import ReadBody, read_within_budget
from monitor.collector.openapi import ADMIN_TOKEN, NODE_BODY, NODE_TOKEN, invalid, refusals
from monitor.collector.schemas import LabelsAnswer, LabelsBody
from monitor.collector.state import CollectorState, state_of
from monitor.storage.engine import begin_write
from monitor.storage.labels import upsert_labels
from monitor.storage.nodes import LABELLER, NODE

router = APIRouter()


@router.post(
    wire.LABELS_PATH,
    summary="Attach labels (ground truth) to earlier predictions",
    response_description="How many labels were stored",
    response_model=LabelsAnswer,
    responses=refusals(
        NODE_BODY,
        invalid(
            "validation_failed",
            "invalid_string",
            "unknown_model",
            when="A label breaks a rule (details list every bad field; nothing is stored), or "
            "the model is not registered.",
        ),
    ),
    # A node's or a labeller's token, or the admin token (a bulk upload; no node rate).
    openapi_extra=openapi.operation(security=[NODE_TOKEN, ADMIN_TOKEN], body=LabelsBody, gzip=True),
)
async def post_labels(request: Request) -> JSONResponse:
    """Labels join their records by model and request id, whenever either arrives. A node's
    token labels that node's own records only; a labeller's token (``nodes add --labeller``) or
    the admin token labels any node's records of those request ids. A later label for the same
    request (from the same sender kind) replaces the earlier one, so retries are harmless."""
    state = state_of(request)
    token = bearer_token(request)
    admin = is_admin_token(state.settings, token)
    node_id = None if admin else (await run_in_threadpool(_node_id, state, token))
    if not admin:
        # A bulk upload with the admin token is an operator's, not a node's: no node rate.
        state.limiter.check(token)
    async with read_within_budget(request, state.budget, state.settings) as body:
        accepted = await run_in_threadpool(_accept, state, node_id, body)
    return JSONResponse({"accepted": accepted})


def _accept(state: CollectorState, node_id: int | None, body: ReadBody) -> int:
    model, items = validation.labels_body(body.decode())
    return _store(state, node_id, model, items)


def _node_id(state: CollectorState, token: str) -> int | None:
    """The node whose records the caller may label, or None for any node's (a labeller)."""
    with state.engine.connect() as conn:
        node = authenticate_node(conn, token, roles=(NODE, LABELLER))
    return None if node.role == LABELLER else node.id


def _store(state: CollectorState, node_id: int | None, model: str, items: list[dict]) -> int:
    with begin_write(state.engine) as conn:
        model_id = state.model_id(conn, model)
        return upsert_labels(conn, model_id=model_id, node_id=node_id, rows=items)
