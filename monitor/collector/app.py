"""The collector's FastAPI application: routes, the one error envelope, request metrics."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

import monitor
from monitor import wire
from monitor.collector import docs, openapi
from monitor.collector.auth import require_admin
from monitor.collector.metrics import CLIENT_CLOSED, RequestMetrics
from monitor.collector.protocol import BODY_TIMED_OUT
from monitor.collector.routes import (
    admin,
    alerts,
    health,
    heartbeats,
    labels,
    models,
    records,
    results,
    retrains,
    webhooks,
    windows,
)
from monitor.collector.state import CollectorState
from monitor.config import Settings, get_settings
from monitor.errors import MonitorError, SchemaOutOfDate, envelope
from monitor.storage.engine import make_engine

log = logging.getLogger(__name__)

_ADMIN_PREFIX = f"{wire.API_PREFIX}/admin/"
_HTTP_CODES = {
    400: "bad_request",  # FastAPI could not read a body it parses (e.g. invalid UTF-8)
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    415: "unsupported_media_type",
}


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The collector app; by default from the process settings (also the uvicorn factory)."""
    settings = settings or get_settings()
    if engine is None:
        engine = make_engine(
            settings.resolved_database_url,
            pool_size=settings.db_pool_size,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
            # One bound for a request's wait on SQLite: the busy handler and our write lock.
            sqlite_write_lock_timeout_ms=settings.sqlite_busy_timeout_ms,
            lock_timeout_ms=settings.db_lock_timeout_ms,
            statement_timeout_ms=settings.db_statement_timeout_ms,
        )
    app = FastAPI(
        title="edge-monitor collector",
        version=monitor.__version__,
        description="Ingest API for edge-monitor: records, labels, heartbeats, the model "
        "registry for nodes, admin. Every error answer is one envelope: "
        '`{"error": {"code", "message", "details"}}`.',
        # Swagger UI is served from packaged files (docs.py); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.collector = CollectorState(settings=settings, engine=engine)
    for module in (
        records,
        labels,
        heartbeats,
        models,
        health,
        admin,
        windows,
        results,
        alerts,
        webhooks,
        retrains,
    ):
        app.include_router(module.router)
    _install_error_handlers(app)
    openapi.install(app)
    docs.install(app)
    app.add_middleware(_AdminFirst, settings=settings)
    app.add_middleware(RequestMetrics)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MonitorError)
    async def on_monitor_error(_request: Request, exc: MonitorError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        if isinstance(exc, SchemaOutOfDate):
            headers = {"Retry-After": "30"}
        return JSONResponse(exc.envelope(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [
            {
                "code": "invalid_field",
                "field": ".".join(str(p) for p in err["loc"] if p != "body") or "body",
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        # A bad query or path value is not a bad body: say which part of the request it was.
        parts = {str(err["loc"][0]) for err in exc.errors() if err["loc"]}
        what = "invalid " + (" and ".join(sorted(parts)) if parts - {"body"} else "body")
        return JSONResponse(envelope("validation_failed", what, details), 422)

    @app.exception_handler(HTTPException)
    async def on_http(_request: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return JSONResponse(
            envelope(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(OperationalError)
    async def on_database(_request: Request, exc: OperationalError) -> JSONResponse:
        # The database is down or locked: the caller keeps the data and tries again.
        log.warning("database unavailable: %s", exc.orig)
        body = envelope("database_unavailable", "the database is unavailable; retry later")
        return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(DataError)
    async def on_unstorable(request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL refuses what SQLite stores: NUL in text, a value past a column's bounds.
        # The ingest routes refuse such values before any SQL; a name in a path or a string
        # of an admin body reaches the database as sent. The caller's value, not a fault here.
        nul = "NUL" in str(exc.orig)
        code = "invalid_string" if nul else "invalid_value"
        message = "text must not hold NUL (\\u0000)" if nul else "a value does not fit the database"
        log.info("refused %s %s: %s", request.method, request.url.path, str(exc.orig).strip())
        return JSONResponse(envelope(code, message), status_code=422)

    @app.exception_handler(ClientDisconnect)
    async def on_disconnect(request: Request, _exc: ClientDisconnect) -> Response:
        # Nobody is left to answer: count it under its own status, without a traceback.
        if request.scope.get(BODY_TIMED_OUT):
            return Response(status_code=408)  # the protocol already answered 408
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(Exception)
    async def on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return JSONResponse(envelope("internal_error", "internal error"), status_code=500)


class _AdminFirst:
    """Refuses a request to the admin API without the admin token before its body is read.

    FastAPI reads and parses a route's body (whole, on the event loop, at any size) before the
    route's dependencies run, so the admin router's own check would come after a stranger's
    body had cost its parsing; this check is the same one, made first."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_ADMIN_PREFIX):
            try:
                require_admin(Request(scope), self.settings)
            except MonitorError as exc:
                refusal = JSONResponse(exc.envelope(), status_code=exc.status)
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
