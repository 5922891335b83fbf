"""The admin API: register and revoke nodes, register models. Guarded by the admin token."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.card import CardError, check_card
from monitor.collector.auth import require_admin
from monitor.collector.state import state_of
from monitor.errors import ValidationFailed
from monitor.storage import models, nodes, registry
from monitor.storage.engine import begin_write


def _admin(request: Request) -> None:
    require_admin(request, state_of(request).settings)


router = APIRouter(prefix=f"{wire.API_PREFIX}/admin", dependencies=[Depends(_admin)])

_NAME = Field(min_length=1, max_length=wire.MAX_ID_CHARS, pattern=wire.NAME_PATTERN)


class NodeIn(BaseModel):
    name: str = _NAME
    group: str | None = Field(default=None, max_length=128)
    site: str | None = Field(default=None, max_length=128)
    tags: dict[str, str] = Field(default_factory=dict)


class VersionIn(BaseModel):
    version: str = _NAME
    artifact_base64: str = Field(min_length=1, description="the ONNX file, base64")
    card: dict[str, Any] = Field(description="the model card (JSON)")
    reference_base64: str | None = Field(
        default=None, description="the reference dataset as Parquet, base64"
    )
    metrics: dict[str, Any] | None = None


class CanaryIn(BaseModel):
    version: str = _NAME
    share: float = Field(gt=0, le=1, description="share of nodes, (0, 1]")


class PinIn(BaseModel):
    version: str = _NAME
    group: str = Field(min_length=1, max_length=128)


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


@router.post("/models/{name}/versions", status_code=201, summary="Register a version (a candidate)")
async def register_version(request: Request, name: str, body: VersionIn) -> JSONResponse:
    try:
        check_card(body.card, name)
    except CardError as exc:
        raise ValidationFailed(
            f"invalid model card: {exc}",
            details=[{"field": path, "message": message} for path, message in exc.errors],
        ) from exc
    artifact = _b64(body.artifact_base64, "artifact_base64")
    reference = _b64(body.reference_base64, "reference_base64") if body.reference_base64 else None

    def run() -> dict[str, Any]:
        with begin_write(state_of(request).engine) as conn:
            model = models.get_model(conn, name)
            version = registry.register_version(
                conn,
                model.id,
                body.version,
                artifact=artifact,
                card=body.card,
                reference=reference,
                reference_rows=parquet_rows(reference) if reference else None,
                metrics=body.metrics,
            )
        return version_json(version)

    return JSONResponse(await run_in_threadpool(run), status_code=201)


@router.get("/models/{name}/versions", summary="Versions and the current rollout")
async def list_versions(request: Request, name: str) -> JSONResponse:
    def run() -> dict[str, Any]:
        with state_of(request).engine.connect() as conn:
            model = models.get_model(conn, name)
            return {
                "versions": [version_json(v) for v in registry.versions(conn, model.id)],
                "deployment": deployment_json(registry.deployment(conn, model.id)),
            }

    return JSONResponse(await run_in_threadpool(run))


@router.post("/models/{name}/promote/{version}", summary="Make a version production")
async def promote(request: Request, name: str, version: str) -> JSONResponse:
    return await _rollout(request, name, lambda conn, m: registry.promote(conn, m, version))


@router.post("/models/{name}/canary", summary="Send a candidate to a share of the nodes")
async def canary(request: Request, name: str, body: CanaryIn) -> JSONResponse:
    return await _rollout(
        request, name, lambda conn, m: registry.start_canary(conn, m, body.version, body.share)
    )


@router.delete("/models/{name}/canary", summary="Stop the canary")
async def stop_canary(request: Request, name: str) -> JSONResponse:
    return await _rollout(request, name, registry.stop_canary)


@router.post("/models/{name}/pins", summary="Pin a node group to a version")
async def pin(request: Request, name: str, body: PinIn) -> JSONResponse:
    return await _rollout(
        request, name, lambda conn, m: registry.pin(conn, m, body.group, body.version)
    )


@router.delete("/models/{name}/pins/{group}", summary="Unpin a node group")
async def unpin(request: Request, name: str, group: str) -> JSONResponse:
    return await _rollout(request, name, lambda conn, m: registry.unpin(conn, m, group))


@router.post("/models/{name}/rollback", summary="Put the previous production version back")
async def rollback(request: Request, name: str) -> JSONResponse:
    return await _rollout(request, name, registry.rollback)


async def _rollout(
    request: Request, name: str, change: Callable[[Connection, int], object]
) -> JSONResponse:
    def run() -> dict[str, Any]:
        with begin_write(state_of(request).engine) as conn:
            model = models.get_model(conn, name)
            change(conn, model.id)
            return deployment_json(registry.deployment(conn, model.id))

    return JSONResponse({"deployment": await run_in_threadpool(run)})


def version_json(version: registry.Version) -> dict[str, Any]:
    return _jsonable(asdict(version))


def deployment_json(current: registry.Deployment) -> dict[str, Any]:
    def name(v: registry.Version | None) -> str | None:
        return None if v is None else v.version

    return {
        "production": name(current.production),
        "previous": name(current.previous),
        "canary": name(current.canary),
        "canary_share": current.canary_share,
        "pins": {group: v.version for group, v in current.pins.items()},
    }


def parquet_rows(data: bytes) -> int:
    """Rows of a Parquet file; a file that is not Parquet is the caller's error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(pa.BufferReader(data)).metadata.num_rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationFailed(
            f"the reference is not a Parquet file: {exc}",
            details=[{"field": "reference_base64", "message": "not Parquet"}],
        ) from exc


def _b64(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValidationFailed(
            f"{field} is not valid base64", details=[{"field": field, "message": "not base64"}]
        ) from exc


def _node_json(node: nodes.Node) -> dict[str, Any]:
    return _jsonable(asdict(node))


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in values.items()}
