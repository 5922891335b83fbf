"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from monitor.collector.state import CollectorState, state_of
from monitor.storage import migrations

router = APIRouter()


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the database is reachable and at the schema head")
async def readyz(request: Request) -> JSONResponse:
    revision = await run_in_threadpool(_check, state_of(request))
    return JSONResponse({"status": "ready", "revision": revision})


@router.get("/metrics", summary="Prometheus metrics of this collector process")
async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(
        state_of(request).metrics.render(), media_type="text/plain; version=0.0.4"
    )


def _check(state: CollectorState) -> str:
    migrations.ensure_at_head(state.engine)
    return migrations.head()
