"""Nodes: registration with a one-time token, lookup by token, revocation, listing."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from monitor import wire
from monitor.errors import Conflict, NotFound
from monitor.storage.models import check_name
from monitor.storage.tables import nodes
from monitor.storage.types import utcnow


@dataclass(frozen=True, slots=True)
class Node:
    """A registered edge node, without its secret."""

    id: int
    name: str
    group_name: str | None
    site: str | None
    tags: dict[str, Any]
    token_hint: str
    created_at: datetime
    revoked_at: datetime | None
    last_seen_at: datetime | None
    last_heartbeat_at: datetime | None


def new_token() -> str:
    """A node token: a recognisable prefix and 256 random bits."""
    return wire.NODE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_node(
    conn: Connection,
    name: str,
    *,
    group_name: str | None = None,
    site: str | None = None,
    tags: dict[str, Any] | None = None,
) -> tuple[Node, str]:
    """Register a node; returns it with its token, which is never stored or shown again."""
    check_name(name)
    token = new_token()
    try:
        with conn.begin_nested():
            conn.execute(
                nodes.insert().values(
                    name=name,
                    group_name=group_name,
                    site=site,
                    tags=tags or {},
                    token_hash=hash_token(token),
                    token_hint=token[: len(wire.NODE_TOKEN_PREFIX) + 4],
                    created_at=utcnow(),
                )
            )
    except IntegrityError as exc:
        raise Conflict(f"a node named {name!r} already exists", code="node_exists") from exc
    return get_node(conn, name), token


def get_node(conn: Connection, name: str) -> Node:
    """The node called ``name``."""
    row = conn.execute(select(nodes).where(nodes.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"no node named {name!r}", code="unknown_node")
    return _node(row)


def node_for_token(conn: Connection, token: str) -> Node | None:
    """The live (not revoked) node holding ``token``, or None."""
    row = (
        conn.execute(
            select(nodes).where(
                nodes.c.token_hash == hash_token(token), nodes.c.revoked_at.is_(None)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _node(row)


def revoke_node(conn: Connection, name: str) -> Node:
    """Revoke a node's token; its next request is refused."""
    get_node(conn, name)
    conn.execute(
        update(nodes)
        .where(nodes.c.name == name, nodes.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return get_node(conn, name)


def list_nodes(conn: Connection) -> list[Node]:
    """Every node, by name."""
    return [_node(row) for row in conn.execute(select(nodes).order_by(nodes.c.name)).mappings()]


def touch_node(conn: Connection, node_id: int, *, heartbeat: bool = False) -> None:
    """Remember that a node was heard from now."""
    now = utcnow()
    values: dict[str, Any] = {"last_seen_at": now}
    if heartbeat:
        values["last_heartbeat_at"] = now
    conn.execute(update(nodes).where(nodes.c.id == node_id).values(**values))


def _node(row: Any) -> Node:
    return Node(**{k: v for k, v in row.items() if k != "token_hash"})
