"""The read API: analysed windows, their results and node health, for the read or admin token.

The answers are ``monitor.commands.results``'s documents, the very ones `edge-monitor results
--json` prints. A query value the command refuses names its field as the query does
(``query.window``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from monitor import wire
from monitor.collector import schemas
from monitor.collector.auth import readers_only
from monitor.collector.openapi import (
    ADMIN_TOKEN,
    READ_TOKEN,
    READER,
    UNSTORABLE,
    invalid,
    not_found,
    operation,
    refusals,
)
from monitor.collector.state import state_of
from monitor.commands import results
from monitor.errors import ValidationFailed

_T = TypeVar("_T")


router = APIRouter(prefix=wire.API_PREFIX, dependencies=[Depends(readers_only)])

_SECURITY = operation(security=[READ_TOKEN, ADMIN_TOKEN])
_BAD_QUERY = invalid(
    "validation_failed", when="A query value breaks its rule; details name it (query.window)."
)

Model = Annotated[
    str,
    Path(
        description="a model name",
        json_schema_extra={"pattern": schemas.NAME_JSON_PATTERN, "maxLength": wire.MAX_ID_CHARS},
        examples=["pump-failure"],
    ),
]
Since = Annotated[
    str | None,
    Query(
        description="only windows starting at or after this ISO 8601 time (UTC unless it has "
        "an offset)",
        examples=["2026-11-20T00:00:00Z"],
    ),
]


async def _answer(command: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """Run a read command off the event loop, its refused values named as query fields."""
    try:
        return await run_in_threadpool(command, *args, **kwargs)
    except ValidationFailed as exc:
        raise _in_query_terms(exc) from exc


def _since(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return results.parse_time(text, "since")
    except ValidationFailed as exc:
        raise _in_query_terms(exc) from exc


def _in_query_terms(exc: ValidationFailed) -> ValidationFailed:
    details = [
        {**d, "field": f"query.{d['field']}"} if isinstance(d, dict) and d.get("field") else d
        for d in (exc.details if isinstance(exc.details, list) else [])
    ]
    return ValidationFailed(exc.message, details=details or exc.details, code=exc.code)


@router.get(
    "/models/{model}/windows",
    summary="The model's analysed windows, newest first",
    response_model=schemas.WindowList,
    responses=refusals(READER, not_found("unknown_model"), _BAD_QUERY, UNSTORABLE),
    openapi_extra=_SECURITY,
)
async def list_windows(
    request: Request,
    model: Model,
    since: Since = None,
    limit: Annotated[
        int, Query(ge=1, le=results.MAX_WINDOWS, description="at most this many windows")
    ] = results.DEFAULT_WINDOWS,
) -> JSONResponse:
    """Each analysed window with the fleet's drift verdict, how many nodes drifted, its
    records and its revision."""
    document = await _answer(
        results.windows_document,
        state_of(request).engine,
        model,
        limit=limit,
        since=_since(since),
    )
    return JSONResponse(document)


@router.get(
    "/models/{model}/results",
    summary="The verdicts of a window per scope: drift, quality, performance (realised and "
    "estimated) and multivariate drift",
    response_model=schemas.ResultList,
    responses=refusals(READER, not_found("unknown_model", "no_window"), _BAD_QUERY, UNSTORABLE),
    openapi_extra=_SECURITY,
)
async def window_results(
    request: Request,
    model: Model,
    window: Annotated[
        str,
        Query(
            description='"latest", or an ISO 8601 time the window holds (its start or any '
            "time before its end)",
            examples=["latest"],
        ),
    ] = results.LATEST,
    since: Since = None,
    scope: Annotated[
        str | None,
        Query(
            description="one scope: fleet, site:NAME, group:NAME or node:NAME; or every scope "
            "of a kind: site, group or node (default: all)",
            examples=["fleet"],
        ),
    ] = None,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=results.MAX_RESULT_WINDOWS,
            description="with since: at most this many windows, newest first",
        ),
    ] = results.DEFAULT_RESULT_WINDOWS,
) -> JSONResponse:
    """Per scope: the drift verdict and every feature's statistic, method and adjusted
    p-value; data-quality issues; realised performance; performance estimated without labels,
    with its bands and trust verdict (``estimation.trusted`` false: the estimate must not be
    relied on, ``trust_evidence`` and ``trust_reason`` say why); multivariate drift, the
    reconstruction error against the reference's and its thresholds. A kind the window was
    not analysed for (a window older than the kind, or a model that cannot be estimated:
    only the fleet's row, its status saying why) is null. With ``since``, the windows
    starting at or after it (newest first, at most ``limit``). The latest window of a model
    with none analysed yet answers an empty list; a time no analysed window holds answers
    404."""
    document = await _answer(
        results.results_document,
        state_of(request).engine,
        model,
        window=window,
        since=_since(since),
        scope=scope,
        limit=limit,
    )
    return JSONResponse(document)


@router.get(
    "/nodes/health",
    summary="Every node's status now: online, degraded, offline, silent or revoked",
    response_model=schemas.NodeHealthList,
    responses=refusals(READER),
    openapi_extra=_SECURITY,
)
async def node_health(request: Request) -> JSONResponse:
    """Reachability is judged at the request from each node's last heartbeat; degraded and
    its problems are the health job's last verdict."""
    state = state_of(request)
    offline_after = timedelta(seconds=state.settings.health_offline_after_seconds)
    return JSONResponse(await _answer(results.health_document, state.engine, offline_after))
