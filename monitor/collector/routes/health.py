"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
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


@router.get("/metrics", summary="Prometheus metrics of the collector (every worker process)")
async def metrics(request: Request) -> Response:
    collected = state_of(request).metrics
    # Several processes: the scrape reads every worker's files, off the event loop.
    text = await run_in_threadpool(collected.render)
    return Response(text, media_type=collected.content_type)


def _check(state: CollectorState) -> str:
    migrations.ensure_at_head(state.engine)
    return migrations.head()
