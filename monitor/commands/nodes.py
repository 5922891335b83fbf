"""Node commands: register a node (its token shown once), list nodes, revoke a node, and
register a node for the models whose assignments and artifacts it may read."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from monitor.commands.checks import MAX_GROUP_CHARS, check_name, check_text, invalid
from monitor.storage import models, nodes
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
    role: str = nodes.NODE,
    model_names: list[str] | tuple[str, ...] = (),
) -> NewNode:
    """Register a node (or, with ``role="labeller"``, a back-office labeller) and the models it
    may fetch; a taken name is a conflict (``node_exists``), an unknown model
    ``unknown_model``."""
    check_name(name, "name", "node name")
    if role not in nodes.ROLES:
        raise invalid("role", f"one of {', '.join(nodes.ROLES)}", f"unknown role {role!r}")
    if role == nodes.LABELLER and model_names:
        raise invalid("models", "none for a labeller", "a labeller fetches no models")
    check_text(group, "group", MAX_GROUP_CHARS)
    check_text(site, "site", MAX_GROUP_CHARS)
    tags = dict(tags or {})
    for key, value in tags.items():
        if not key or not isinstance(value, str):
            raise invalid(
                f"tags.{key}", "key and string value", "a tag needs a key and a string value"
            )
    with begin_write(engine) as conn:
        model_ids = [models.get_model(conn, model).id for model in model_names]
        node, token = nodes.add_node(conn, name, group_name=group, site=site, tags=tags, role=role)
        for model_id in model_ids:
            nodes.grant_model(conn, node.id, model_id)
    return NewNode(node, token)


def grant_model(engine: Engine, name: str, model: str) -> Node:
    """Let a node read a model's assignment and artifacts."""
    with begin_write(engine) as conn:
        node = nodes.get_node(conn, name)
        if node.role != nodes.NODE:
            raise invalid("name", "an edge node", f"{name!r} is a {node.role}, not an edge node")
        nodes.grant_model(conn, node.id, models.get_model(conn, model).id)
    return node


def withdraw_model(engine: Engine, name: str, model: str) -> bool:
    """Take a model away from a node; whether the node had it."""
    with begin_write(engine) as conn:
        node = nodes.get_node(conn, name)
        return nodes.withdraw_model(conn, node.id, models.get_model(conn, model).id)


def node_models(engine: Engine) -> dict[int, list[str]]:
    """The models each node is registered for, by node id."""
    with engine.connect() as conn:
        return nodes.node_model_names(conn)


def list_nodes(engine: Engine) -> list[Node]:
    """Every node, by name."""
    with engine.connect() as conn:
        return nodes.list_nodes(conn)


def revoke_node(engine: Engine, name: str) -> Node:
    """Revoke a node's token at once; an unknown name is ``unknown_node``."""
    with begin_write(engine) as conn:
        return nodes.revoke_node(conn, name)
