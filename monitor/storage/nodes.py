"""Nodes: registration with a one-time token, lookup by token, revocation, listing, and the
models each node is registered for."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, select, update
from sqlalchemy.exc import IntegrityError

from monitor import wire
from monitor.errors import Conflict, NotFound
from monitor.storage.dialect import insert_or_ignore
from monitor.storage.models import check_name
from monitor.storage.tables import deployment_pins, models, node_models, nodes
from monitor.storage.types import utcnow

#: An edge node: sends records and heartbeats, labels its own records, fetches its models.
NODE = "node"
#: A back-office system: labels any node's records, and does nothing else.
LABELLER = "labeller"
ROLES = (NODE, LABELLER)


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
    role: str = NODE
    #: The last implausible record time it sent: device time minus received time, and when.
    clock_skew_seconds: float | None = None
    clock_skew_at: datetime | None = None


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
    role: str = NODE,
) -> tuple[Node, str]:
    """Register a node; returns it with its token, which is never stored or shown again."""
    check_name(name)
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
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
                    role=role,
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


def grant_model(conn: Connection, node_id: int, model_id: int) -> None:
    """Register a node for a model (again: no change)."""
    conn.execute(
        insert_or_ignore(conn, node_models, ["node_id", "model_id"]).values(
            node_id=node_id, model_id=model_id, created_at=utcnow()
        )
    )


def withdraw_model(conn: Connection, node_id: int, model_id: int) -> bool:
    """Take a model away from a node; whether it had been registered for it."""
    result = conn.execute(
        delete(node_models).where(
            node_models.c.node_id == node_id, node_models.c.model_id == model_id
        )
    )
    return bool(result.rowcount)


def node_model_names(conn: Connection) -> dict[int, list[str]]:
    """The names of the models each node is registered for, by node id, sorted."""
    query = (
        select(node_models.c.node_id, models.c.name)
        .join(models, models.c.id == node_models.c.model_id)
        .order_by(models.c.name)
    )
    found: dict[int, list[str]] = {}
    for node_id, name in conn.execute(query):
        found.setdefault(node_id, []).append(name)
    return found


def may_use_model(conn: Connection, node: Node, model_id: int) -> bool:
    """Whether ``node`` may read ``model_id``'s assignment and artifacts: it is registered for
    the model, or the model pins a version for the node's group."""
    registered = exists().where(
        node_models.c.node_id == node.id, node_models.c.model_id == model_id
    )
    pinned = exists().where(
        deployment_pins.c.model_id == model_id, deployment_pins.c.group_name == node.group_name
    )
    return bool(conn.execute(select(registered | pinned)).scalar())


def touch_node(
    conn: Connection, node_id: int, *, heartbeat: bool = False, clock_skew: float | None = None
) -> None:
    """Remember that a node was heard from now; ``clock_skew`` (its device time minus the
    time received, in seconds) when it sent a time its clock cannot have been right about."""
    now = utcnow()
    values: dict[str, Any] = {"last_seen_at": now}
    if heartbeat:
        values["last_heartbeat_at"] = now
    if clock_skew is not None:
        values["clock_skew_seconds"] = clock_skew
        values["clock_skew_at"] = now
    conn.execute(update(nodes).where(nodes.c.id == node_id).values(**values))


def _node(row: Any) -> Node:
    return Node(**{k: v for k, v in row.items() if k != "token_hash"})
