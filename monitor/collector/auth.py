"""Who is calling: a node by its own token, an operator by the admin token, or a reader of
results by the read token."""

from __future__ import annotations

import hmac

from sqlalchemy import Connection
from starlette.requests import Request

from monitor.collector.state import state_of
from monitor.config import Settings
from monitor.errors import Forbidden, Unauthorized
from monitor.storage.nodes import LABELLER, NODE, Node, node_for_token


def bearer_token(request: Request) -> str:
    """The token of the ``Authorization: Bearer`` header."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("no Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


def authenticate_node(conn: Connection, token: str, *, roles: tuple[str, ...] = (NODE,)) -> Node:
    """The node that owns ``token``; checked on every request, so a revocation bites at once.
    A token of another role (a labeller's, on a route for edge nodes) is refused with 403."""
    node = node_for_token(conn, token)
    if node is None:
        raise Unauthorized("unknown or revoked node token", code="invalid_token")
    if node.role not in roles:
        what = "labels (POST /v1/labels)" if node.role == LABELLER else "what edge nodes send"
        raise Forbidden(
            f"{node.name!r} holds a {node.role} token, which may only send {what}",
            code="wrong_role",
        )
    return node


def is_admin_token(settings: Settings, token: str) -> bool:
    """Whether ``token`` is the configured admin token (compared in constant time)."""
    expected = settings.admin_token.get_secret_value() if settings.admin_token else ""
    return bool(expected) and hmac.compare_digest(token.encode(), expected.encode())


def require_admin(request: Request, settings: Settings) -> None:
    """Allow the request only with the configured admin token."""
    token = bearer_token(request)
    if not (settings.admin_token and settings.admin_token.get_secret_value()):
        raise Forbidden("the admin API is disabled: set MONITOR_ADMIN_TOKEN", code="admin_disabled")
    if not is_admin_token(settings, token):
        raise Unauthorized("invalid admin token", code="invalid_token")


def require_reader(request: Request, settings: Settings) -> None:
    """Allow the request only with the read token or the admin token (the read API).

    The read token reaches nothing else: admin routes compare with the admin token only, and
    node routes look tokens up among the nodes', where it is not."""
    token = bearer_token(request)
    read = settings.read_token.get_secret_value() if settings.read_token else ""
    admin = settings.admin_token.get_secret_value() if settings.admin_token else ""
    if not (read or admin):
        raise Forbidden(
            "the read API is disabled: set MONITOR_READ_TOKEN (or MONITOR_ADMIN_TOKEN)",
            code="read_disabled",
        )
    # Both compared, each in constant time, so that the answer's time says nothing of which.
    is_reader = bool(read) & hmac.compare_digest(token.encode(), read.encode())
    if not (is_reader | is_admin_token(settings, token)):
        raise Unauthorized("invalid read token", code="invalid_token")


def admin_only(request: Request) -> None:
    """Route dependency: the admin token of the app's settings."""
    require_admin(request, state_of(request).settings)


def readers_only(request: Request) -> None:
    """Route dependency: the read or the admin token of the app's settings."""
    require_reader(request, state_of(request).settings)
