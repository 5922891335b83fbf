"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from monitor.collector.openapi import ANY_ROUTE, DATABASE_DOWN, Refusal, refusals
from monitor.collector.schemas import Alive, Ready
from monitor.collector.state import CollectorState, state_of
from monitor.storage import migrations

router = APIRouter()

_NOT_READY = Refusal(
    503,
    ("schema_out_of_date",),
    "The database is not at the migration head this code expects: run `edge-monitor db upgrade`.",
    retry_after=True,
)


@router.get(
    "/healthz",
    summary="Liveness: the process answers",
    response_model=Alive,
    responses=refusals(ANY_ROUTE),
)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: the database is reachable and at the schema head",
    response_model=Ready,
    responses=refusals(ANY_ROUTE, DATABASE_DOWN, _NOT_READY),
)
async def readyz(request: Request) -> JSONResponse:
    revision = await run_in_threadpool(_check, state_of(request))
    return JSONResponse({"status": "ready", "revision": revision})


@router.get(
    "/metrics",
    summary="Prometheus metrics of the collector (every worker process)",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **refusals(ANY_ROUTE),
    },
)
async def metrics(request: Request) -> Response:
    collected = state_of(request).metrics
    # Several processes: the scrape reads every worker's files, off the event loop.
    text = await run_in_threadpool(collected.render)
    return Response(text, media_type=collected.content_type)


def _check(state: CollectorState) -> str:
    migrations.ensure_at_head(state.engine)
    return migrations.head()
