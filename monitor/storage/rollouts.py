"""Where a model's rollout stands on its nodes: the version each node should run (its pin, the
canary or production, by the registry's rule) beside the version it says it runs (its health
row) and the version of the last records it sent, for every node of the model at once.

``registry.assignment_for`` answers for one node and reads the deployment each time; a fleet of
a thousand nodes is read here in four statements, and the assignment is worked out with the same
rule (a test holds the two to each other).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, or_, select

from monitor.storage import registry
from monitor.storage.nodes import NODE
from monitor.storage.tables import (
    batches,
    deployment_pins,
    model_versions,
    models,
    node_health,
    node_models,
    nodes,
)


@dataclass(frozen=True, slots=True)
class NodeVersion:
    """One node of a model: the version it should run and what it reports."""

    node: str
    site: str | None
    group_name: str | None
    #: The version it should run (None: nothing deployed), and why: pinned, canary, production.
    assigned: str | None
    reason: str | None
    #: The version its last health check found it running (None: never reported).
    reported: str | None
    reported_at: datetime | None
    #: The version of the last batch of this model's records it sent, and when it arrived.
    records_version: str | None
    records_at: datetime | None

    @property
    def mismatch(self) -> bool:
        """It reports a version other than the one it should run (a node that reports none,
        or should run none, is not a mismatch: there is nothing to compare)."""
        return (
            self.assigned is not None
            and self.reported is not None
            and self.reported != self.assigned
        )


def node_versions(conn: Connection, model_id: int) -> list[NodeVersion]:
    """Every live node of the model by name, with its assigned and reported versions. A node of
    the model: registered for it, in a group that pins one of its versions, or sending its
    records; revoked nodes and labellers are left out."""
    name = conn.execute(select(models.c.name).where(models.c.id == model_id)).scalar()
    if name is None:
        return []
    deployment = registry.deployment(conn, model_id)
    registered = select(node_models.c.node_id).where(node_models.c.model_id == model_id)
    pinned = select(deployment_pins.c.group_name).where(deployment_pins.c.model_id == model_id)
    sending = select(batches.c.node_id).where(batches.c.model_id == model_id).distinct()
    query = (
        select(
            nodes.c.id,
            nodes.c.name,
            nodes.c.site,
            nodes.c.group_name,
            node_health.c.model_version,
            node_health.c.checked_at,
        )
        .outerjoin(node_health, node_health.c.node_id == nodes.c.id)
        .where(
            nodes.c.role == NODE,
            nodes.c.revoked_at.is_(None),
            or_(
                nodes.c.id.in_(registered),
                nodes.c.group_name.in_(pinned),
                nodes.c.id.in_(sending),
            ),
        )
        .order_by(nodes.c.name)
    )
    rows = conn.execute(query).all()
    last = _last_batches(conn, model_id)
    out = []
    for row in rows:
        assigned, reason = _assigned(deployment, name, row.name, row.group_name)
        records_version, records_at = last.get(row.id, (None, None))
        out.append(
            NodeVersion(
                node=row.name,
                site=row.site,
                group_name=row.group_name,
                assigned=assigned,
                reason=reason,
                reported=row.model_version,
                reported_at=row.checked_at,
                records_version=records_version,
                records_at=records_at,
            )
        )
    return out


def _assigned(
    deployment: registry.Deployment, model: str, node: str, group: str | None
) -> tuple[str | None, str | None]:
    """``registry.assignment_for``'s rule: the group's pin, the canary, production."""
    if group is not None and group in deployment.pins:
        return deployment.pins[group].version, "pinned"
    if (
        deployment.canary is not None
        and registry.canary_bucket(model, node) < deployment.canary_share
    ):
        return deployment.canary.version, "canary"
    if deployment.production is not None:
        return deployment.production.version, "production"
    return None, None


def _last_batches(conn: Connection, model_id: int) -> dict[int, tuple[str, datetime]]:
    """Per node id, the version and arrival of its newest batch of the model."""
    newest = (
        select(func.max(batches.c.id).label("id"))
        .where(batches.c.model_id == model_id)
        .group_by(batches.c.node_id)
        .subquery()
    )
    query = (
        select(batches.c.node_id, model_versions.c.version, batches.c.received_at)
        .join(newest, newest.c.id == batches.c.id)
        .join(model_versions, model_versions.c.id == batches.c.model_version_id)
    )
    return {row.node_id: (row.version, row.received_at) for row in conn.execute(query)}


__all__ = ["NodeVersion", "node_versions"]
