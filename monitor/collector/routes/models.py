"""Node-facing registry routes: which version to run, and its artifact."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector.admission import admit_node
from monitor.collector.auth import authenticate_node
from monitor.collector.openapi import (
    ANY_ROUTE,
    DATABASE_DOWN,
    NO_NODE_TOKEN,
    NODE_TOKEN,
    NOT_GRANTED,
    RATE_LIMITED,
    UNSTORABLE,
    WRONG_ROLE,
    not_found,
    operation,
    refusals,
)
from monitor.collector.schemas import NAME_JSON_PATTERN, Assignment
from monitor.collector.state import CollectorState, state_of
from monitor.errors import Forbidden, NotFound
from monitor.storage import models, nodes, registry
from monitor.storage.nodes import Node

router = APIRouter()

#: A node's polls: the checks of admit_node, then the registry's.
_POLL = (
    *ANY_ROUTE,
    NO_NODE_TOKEN,
    WRONG_ROLE,
    NOT_GRANTED,
    RATE_LIMITED,
    DATABASE_DOWN,
    UNSTORABLE,
)
_ETAG = {
    "description": "The assignment's version: send it as If-None-Match next time",
    "schema": {"type": "string"},
}

# Path parameters are described, not validated here: a name that breaks the rule names
# nothing, which the registry answers 404 as it always did.
Model = Annotated[
    str,
    Path(
        description="a model name",
        json_schema_extra={"pattern": NAME_JSON_PATTERN, "maxLength": wire.MAX_ID_CHARS},
        examples=["pump-failure"],
    ),
]
Version = Annotated[
    str,
    Path(
        description="a version of the model",
        json_schema_extra={"minLength": 1, "maxLength": wire.MAX_ID_CHARS},
        examples=["3"],
    ),
]


@router.get(
    wire.ASSIGNMENT_PATH,
    summary="The model version this node should run",
    response_model=Assignment,
    responses={
        200: {"headers": {"ETag": _ETAG, "Cache-Control": {"schema": {"type": "string"}}}},
        304: {"description": "Unchanged since If-None-Match", "headers": {"ETag": _ETAG}},
        **refusals(_POLL, not_found("unknown_model", "no_assignment")),
    },
    openapi_extra=operation(security=[NODE_TOKEN]),
)
async def get_assignment(request: Request, model: Model) -> Response:
    """Production, the canary (for a deterministic share of nodes) or the group's pin.
    Answers 304 to ``If-None-Match`` with the current ETag."""
    state = state_of(request)
    token = await admit_node(request)  # polls take from the node's rate like its batches
    body, etag = await run_in_threadpool(_assignment, state, token, model)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(body, headers={"ETag": etag, "Cache-Control": "no-cache"})


@router.get(
    wire.ARTIFACT_PATH,
    summary="A version's ONNX artifact",
    response_class=Response,
    responses={
        200: {
            "description": "The ONNX bytes",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "headers": {
                "ETag": {"description": "the quoted SHA-256", "schema": {"type": "string"}},
                "X-Content-SHA256": {
                    "description": "the hex SHA-256 of the bytes",
                    "schema": {"type": "string"},
                },
            },
        },
        **refusals(_POLL, not_found("unknown_model", "unknown_version", "no_artifact")),
    },
    openapi_extra=operation(security=[NODE_TOKEN]),
)
async def get_artifact(request: Request, model: Model, version: Version) -> Response:
    """The ONNX bytes; check them against the assignment's sha256 before use."""
    state = state_of(request)
    token = await admit_node(request)
    blob, sha256 = await run_in_threadpool(_artifact, state, token, model, version)
    return Response(
        blob,
        media_type="application/octet-stream",
        headers={"ETag": f'"{sha256}"', "X-Content-SHA256": sha256},
    )


def _assignment(state: CollectorState, token: str, model: str) -> tuple[dict[str, Any], str]:
    with state.engine.connect() as conn:
        node = authenticate_node(conn, token)
        found = models.get_model(conn, model)
        _check_access(conn, node, found.id, model)
        assignment = registry.assignment_for(conn, found.id, model, node)
    if assignment is None:
        raise NotFound(f"model {model!r} has no deployed version", code="no_assignment")
    version = assignment.version
    body = {
        "model": model,
        "version": version.version,
        "sha256": version.sha256,
        "size": version.size,
        "reason": assignment.reason,
        "artifact_url": wire.artifact_path(model, version.version),
        "card": version.card,
    }
    return body, assignment.etag


def _artifact(state: CollectorState, token: str, model: str, version: str) -> tuple[bytes, str]:
    with state.engine.connect() as conn:
        node = authenticate_node(conn, token)
        model_id = models.get_model(conn, model).id
        _check_access(conn, node, model_id, model)
        found = registry.get_version(conn, model_id, version)
        return registry.artifact(conn, found.id), found.sha256 or ""


def _check_access(conn: Connection, node: Node, model_id: int, model: str) -> None:
    """A node reads only the models it is registered for (or its group's pins): artifacts are
    the owners' intellectual property, and an assignment tells what runs where."""
    if not nodes.may_use_model(conn, node, model_id):
        raise Forbidden(
            f"node {node.name!r} is not registered for model {model!r}: "
            f"run `edge-monitor nodes grant {node.name} {model}`",
            code="model_not_granted",
        )
