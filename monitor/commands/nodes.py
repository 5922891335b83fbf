"""Node commands: register a node (its token shown once), list nodes, revoke a node."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from monitor.commands.checks import MAX_GROUP_CHARS, check_name, check_text, invalid
from monitor.storage import nodes
from monitor.storage.engine import begin_write
from monitor.storage.nodes import Node


@dataclass(frozen=True, slots=True)
class NewNode:
    """A node just registered, with the token that is never stored or shown again."""

    node: Node
    token: str


def add_node(
    engine: Engine,
    name: str,
    *,
    group: str | None = None,
    site: str | None = None,
    tags: dict[str, str] | None = None,
) -> NewNode:
    """Register a node; a taken name is a conflict (``node_exists``)."""
    check_name(name, "name", "node name")
    check_text(group, "group", MAX_GROUP_CHARS)
    check_text(site, "site", MAX_GROUP_CHARS)
    tags = dict(tags or {})
    for key, value in tags.items():
        if not key or not isinstance(value, str):
            raise invalid(
                f"tags.{key}", "key and string value", "a tag needs a key and a string value"
            )
    with begin_write(engine) as conn:
        node, token = nodes.add_node(conn, name, group_name=group, site=site, tags=tags)
    return NewNode(node, token)


def list_nodes(engine: Engine) -> list[Node]:
    """Every node, by name."""
    with engine.connect() as conn:
        return nodes.list_nodes(conn)


def revoke_node(engine: Engine, name: str) -> Node:
    """Revoke a node's token at once; an unknown name is ``unknown_node``."""
    with begin_write(engine) as conn:
        return nodes.revoke_node(conn, name)
