"""The admin API: register and revoke nodes, register models. Guarded by the admin token."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector.auth import require_admin
from monitor.collector.state import state_of
from monitor.storage import models, nodes
from monitor.storage.engine import begin_write


def _admin(request: Request) -> None:
    require_admin(request, state_of(request).settings)


router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(_admin)])

_NAME = Field(min_length=1, max_length=wire.MAX_ID_CHARS, pattern=r"^[A-Za-z0-9][\w.\-:@]*$")


class NodeIn(BaseModel):
    name: str = _NAME
    group: str | None = Field(default=None, max_length=128)
    site: str | None = Field(default=None, max_length=128)
    tags: dict[str, str] = Field(default_factory=dict)


class ModelIn(BaseModel):
    name: str = _NAME
    description: str = Field(default="", max_length=1000)


@router.post("/nodes", status_code=201, summary="Register a node; its token is shown only here")
async def add_node(request: Request, body: NodeIn) -> JSONResponse:
    def run() -> dict[str, Any]:
        with begin_write(state_of(request).engine) as conn:
            node, token = nodes.add_node(
                conn, body.name, group_name=body.group, site=body.site, tags=body.tags
            )
        return {**_node_json(node), "token": token}

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("/nodes", summary="List nodes")
async def list_nodes(request: Request) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with state_of(request).engine.connect() as conn:
            return [_node_json(n) for n in nodes.list_nodes(conn)]

    return JSONResponse({"nodes": await run_in_threadpool(run)})


@router.post("/nodes/{name}/revoke", summary="Revoke a node's token, effective at once")
async def revoke_node(request: Request, name: str) -> JSONResponse:
    def run() -> dict[str, Any]:
        with begin_write(state_of(request).engine) as conn:
            return _node_json(nodes.revoke_node(conn, name))

    return JSONResponse(await run_in_threadpool(run))


@router.post("/models", status_code=201, summary="Register a model")
async def add_model(request: Request, body: ModelIn) -> JSONResponse:
    def run() -> dict[str, Any]:
        with begin_write(state_of(request).engine) as conn:
            model = models.add_model(conn, body.name, description=body.description)
        return _jsonable(asdict(model))

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("/models", summary="List models")
async def list_models(request: Request) -> JSONResponse:
    def run() -> list[dict[str, Any]]:
        with state_of(request).engine.connect() as conn:
            return [_jsonable(asdict(m)) for m in models.list_models(conn)]

    return JSONResponse({"models": await run_in_threadpool(run)})


def _node_json(node: nodes.Node) -> dict[str, Any]:
    return _jsonable(asdict(node))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}
