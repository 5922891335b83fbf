"""What a node's request passes before its body is read: a known token, then its rate."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from monitor.collector.auth import authenticate_node, bearer_token
from monitor.collector.state import CollectorState, state_of
from monitor.storage.nodes import NODE


async def admit_node(request: Request, *, roles: tuple[str, ...] = (NODE,)) -> str:
    """The node token of a request that may go on to send its body.

    A stranger is refused (401) before a byte of its body is read, so a large body costs it
    nothing to send and the collector nothing to refuse. The check that counts (a revoked token
    is refused on its next request) runs again inside each route's write transaction. A known
    node over its rate is answered 429 with Retry-After."""
    state = state_of(request)
    token = bearer_token(request)
    if not state.recently_authenticated(token):
        await run_in_threadpool(precheck_token, state, token, roles)
    state.limiter.check(token)
    return token


def precheck_token(state: CollectorState, token: str, roles: tuple[str, ...] = (NODE,)) -> None:
    """Refuse an unknown or revoked token, or one of another role (a short read-only
    transaction)."""
    with state.engine.connect() as conn:
        authenticate_node(conn, token, roles=roles)
    state.remember_authenticated(token)
