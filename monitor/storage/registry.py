"""The model registry: versions with their artifacts, and the rollout that assigns them to nodes.

Stages: a registered version starts as ``candidate``; ``promote`` makes it ``production`` and
archives the one before (remembered for ``rollback``). A canary sends a candidate to a
deterministic share of the nodes; a pin sends a version to every node of a group. A node's
assignment is, in order: its group's pin, the canary (when the node's bucket falls inside the
share), production.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage.nodes import Node
from monitor.storage.tables import deployment_pins, deployments, model_versions, rollout_events
from monitor.storage.types import utcnow

STAGES = ("candidate", "production", "archived")


@dataclass(frozen=True, slots=True)
class Version:
    """A model version as the registry knows it (without its large blobs)."""

    id: int
    model_id: int
    version: str
    stage: str
    sha256: str | None
    size: int | None
    card: dict[str, Any] | None
    reference_rows: int | None
    metrics: dict[str, Any] | None
    created_at: datetime
    registered_at: datetime | None
    promoted_at: datetime | None
    #: The data schema (``monitor.dataschema`` JSON): from the card, or given with a
    #: reference-only registration; None for versions registered before schemas were kept.
    schema: dict[str, Any] | None = None

    @property
    def deployable(self) -> bool:
        """Whether it has an artifact that nodes can run."""
        return self.sha256 is not None


@dataclass(frozen=True, slots=True)
class Deployment:
    """Which versions a model's nodes should run."""

    production: Version | None
    previous: Version | None
    canary: Version | None
    canary_share: float
    pins: dict[str, Version]


@dataclass(frozen=True, slots=True)
class Assignment:
    """The version one node should run, and why."""

    version: Version
    reason: str

    @property
    def etag(self) -> str:
        return f'"{self.version.id}-{(self.version.sha256 or "")[:16]}-{self.reason}"'


_VERSION_COLUMNS = [
    model_versions.c[name]
    for name in (
        "id",
        "model_id",
        "version",
        "stage",
        "sha256",
        "size",
        "card",
        "reference_rows",
        "metrics",
        "created_at",
        "registered_at",
        "promoted_at",
        "schema",
    )
]


def register_version(
    conn: Connection,
    model_id: int,
    version: str,
    *,
    artifact: bytes | None,
    card: dict[str, Any] | None,
    reference: bytes | None = None,
    reference_rows: int | None = None,
    metrics: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> Version:
    """Register a version as a candidate: its artifact and card, or only its reference data
    (a model that runs elsewhere: drift without our runtime; nodes are never sent it). A
    version first seen in traffic gets them now; registering the same version twice is a
    conflict."""
    if artifact is None:
        if reference is None:
            raise ValidationFailed(
                "a version needs an artifact or reference data", details=[{"field": "reference"}]
            )
    elif not artifact:
        raise ValidationFailed("the artifact is empty", details=[{"field": "artifact"}])
    values = {
        "artifact": artifact,
        "sha256": hashlib.sha256(artifact).hexdigest() if artifact is not None else None,
        "size": len(artifact) if artifact is not None else None,
        "card": card,
        "reference": reference,
        "reference_rows": reference_rows,
        "metrics": metrics,
        "schema": schema,
        "registered_at": utcnow(),
    }
    existing = find_version(conn, model_id, version)
    if existing is None:
        conn.execute(
            insert(model_versions).values(
                model_id=model_id, version=version, created_at=utcnow(), stage="candidate", **values
            )
        )
    elif existing.registered_at is not None or existing.deployable:
        raise Conflict(f"version {version!r} is already registered", code="version_exists")
    else:
        conn.execute(
            update(model_versions).where(model_versions.c.id == existing.id).values(values)
        )
    registered = get_version(conn, model_id, version)
    _event(
        conn,
        model_id,
        "register",
        registered,
        {"sha256": registered.sha256, "reference_rows": registered.reference_rows},
    )
    return registered


def find_version(conn: Connection, model_id: int, version: str) -> Version | None:
    """A version of the model, or None."""
    row = (
        conn.execute(
            select(*_VERSION_COLUMNS).where(
                model_versions.c.model_id == model_id, model_versions.c.version == version
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else Version(**row)


def get_version(conn: Connection, model_id: int, version: str) -> Version:
    """A version of the model."""
    found = find_version(conn, model_id, version)
    if found is None:
        raise NotFound(f"no version {version!r} of this model", code="unknown_version")
    return found


def versions(conn: Connection, model_id: int) -> list[Version]:
    """All versions of the model, oldest first."""
    query = (
        select(*_VERSION_COLUMNS)
        .where(model_versions.c.model_id == model_id)
        .order_by(model_versions.c.id)
    )
    return [Version(**row) for row in conn.execute(query).mappings()]


def artifact(conn: Connection, version_id: int) -> bytes:
    """The ONNX bytes of a version."""
    blob = conn.execute(
        select(model_versions.c.artifact).where(model_versions.c.id == version_id)
    ).scalar()
    if blob is None:
        raise NotFound("this version has no artifact", code="no_artifact")
    return bytes(blob)


def reference(conn: Connection, version_id: int) -> bytes | None:
    """The reference dataset of a version (Parquet bytes), or None."""
    blob = conn.execute(
        select(model_versions.c.reference).where(model_versions.c.id == version_id)
    ).scalar()
    return None if blob is None else bytes(blob)


def deployment(conn: Connection, model_id: int) -> Deployment:
    """The model's current rollout."""
    row = conn.execute(select(deployments).where(deployments.c.model_id == model_id)).first()
    by_id = {v.id: v for v in versions(conn, model_id)}
    pins = {
        group: by_id[version_id]
        for group, version_id in conn.execute(
            select(deployment_pins.c.group_name, deployment_pins.c.version_id)
            .where(deployment_pins.c.model_id == model_id)
            .order_by(deployment_pins.c.group_name)
        )
    }
    if row is None:
        return Deployment(None, None, None, 0.0, pins)
    return Deployment(
        production=by_id.get(row.production_version_id),
        previous=by_id.get(row.previous_version_id),
        canary=by_id.get(row.canary_version_id),
        canary_share=float(row.canary_share) if row.canary_version_id else 0.0,
        pins=pins,
    )


def promote(conn: Connection, model_id: int, version: str) -> Version:
    """Make a version production; the production version before it is archived."""
    target = _deployable(conn, model_id, version)
    current = deployment(conn, model_id)
    if current.production is not None and current.production.id == target.id:
        raise Conflict(f"version {version!r} is already in production", code="already_production")
    if current.production is not None:
        _set_stage(conn, current.production.id, "archived")
    _set_stage(conn, target.id, "production", promoted=True)
    canary_done = current.canary is not None and current.canary.id == target.id
    _save(
        conn,
        model_id,
        production_version_id=target.id,
        previous_version_id=current.production.id if current.production else None,
        **({"canary_version_id": None, "canary_share": 0.0} if canary_done else {}),
    )
    promoted = get_version(conn, model_id, version)
    _event(conn, model_id, "promote", promoted, {"replaced": _name(current.production)})
    return promoted


def start_canary(conn: Connection, model_id: int, version: str, share: float) -> Version:
    """Send a candidate to ``share`` of the nodes (chosen by a hash of each node's name)."""
    if not 0.0 < share <= 1.0:
        raise ValidationFailed(
            "the canary share must be in (0, 1]", details=[{"field": "share", "message": "(0, 1]"}]
        )
    target = _deployable(conn, model_id, version)
    if target.stage != "candidate":
        raise Conflict(f"version {version!r} is {target.stage}, not a candidate", code="bad_stage")
    _save(conn, model_id, canary_version_id=target.id, canary_share=share)
    _event(conn, model_id, "canary", target, {"share": share})
    return target


def stop_canary(conn: Connection, model_id: int) -> None:
    """End the canary: its nodes go back to production."""
    current = deployment(conn, model_id)
    if current.canary is None:
        raise Conflict("this model has no canary", code="no_canary")
    _save(conn, model_id, canary_version_id=None, canary_share=0.0)
    _event(conn, model_id, "canary_stop", current.canary, {})


def pin(conn: Connection, model_id: int, group: str, version: str) -> Version:
    """Run one version on every node of a group, whatever production is."""
    target = _deployable(conn, model_id, version)
    conn.execute(
        delete(deployment_pins).where(
            deployment_pins.c.model_id == model_id, deployment_pins.c.group_name == group
        )
    )
    conn.execute(
        insert(deployment_pins).values(
            model_id=model_id, group_name=group, version_id=target.id, created_at=utcnow()
        )
    )
    _event(conn, model_id, "pin", target, {"group": group})
    return target


def unpin(conn: Connection, model_id: int, group: str) -> None:
    """Let a group follow production (and the canary) again."""
    gone = conn.execute(
        delete(deployment_pins).where(
            deployment_pins.c.model_id == model_id, deployment_pins.c.group_name == group
        )
    ).rowcount
    if not gone:
        raise NotFound(f"group {group!r} is not pinned", code="not_pinned")
    _event(conn, model_id, "unpin", None, {"group": group})


def rollback(conn: Connection, model_id: int) -> Version:
    """Put the previous production version back; the current one is archived."""
    current = deployment(conn, model_id)
    if current.production is None or current.previous is None:
        raise Conflict("there is no earlier production version to go back to", code="no_previous")
    _set_stage(conn, current.production.id, "archived")
    _set_stage(conn, current.previous.id, "production", promoted=True)
    _save(conn, model_id, production_version_id=current.previous.id, previous_version_id=None)
    restored = get_version(conn, model_id, current.previous.version)
    _event(conn, model_id, "rollback", restored, {"replaced": current.production.version})
    return restored


def archive(conn: Connection, model_id: int, version: str) -> Version:
    """Retire a version that no node should run."""
    target = get_version(conn, model_id, version)
    current = deployment(conn, model_id)
    in_use = [current.production, current.canary, *current.pins.values()]
    if any(v is not None and v.id == target.id for v in in_use):
        raise Conflict(f"version {version!r} is deployed; roll it out first", code="in_use")
    _set_stage(conn, target.id, "archived")
    _event(conn, model_id, "archive", target, {})
    return get_version(conn, model_id, version)


def canary_bucket(model: str, node_name: str) -> float:
    """A node's fixed place in [0, 1) for a model's canaries: the same node stays in (or out
    of) the canary whatever else changes, and the share of nodes inside is the canary share."""
    digest = hashlib.sha256(f"{model}\0{node_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assignment_for(conn: Connection, model_id: int, model: str, node: Node) -> Assignment | None:
    """The version ``node`` should run, or None when the model has nothing deployed."""
    current = deployment(conn, model_id)
    if node.group_name is not None and node.group_name in current.pins:
        return Assignment(current.pins[node.group_name], "pinned")
    if current.canary is not None and canary_bucket(model, node.name) < current.canary_share:
        return Assignment(current.canary, "canary")
    if current.production is not None:
        return Assignment(current.production, "production")
    return None


def rollout_history(conn: Connection, model_id: int, limit: int = 100) -> list[dict[str, Any]]:
    """The model's latest rollout events, newest first."""
    query = (
        select(rollout_events, model_versions.c.version)
        .outerjoin(model_versions, model_versions.c.id == rollout_events.c.version_id)
        .where(rollout_events.c.model_id == model_id)
        .order_by(rollout_events.c.id.desc())
        .limit(limit)
    )
    return [
        {"action": r.action, "version": r.version, "details": r.details, "at": r.at}
        for r in conn.execute(query)
    ]


def _deployable(conn: Connection, model_id: int, version: str) -> Version:
    target = get_version(conn, model_id, version)
    if not target.deployable:
        raise Conflict(
            f"version {version!r} has no artifact: register it first", code="not_registered"
        )
    if target.stage == "archived":
        raise Conflict(f"version {version!r} is archived", code="bad_stage")
    return target


def _set_stage(conn: Connection, version_id: int, stage: str, *, promoted: bool = False) -> None:
    values: dict[str, Any] = {"stage": stage}
    if promoted:
        values["promoted_at"] = utcnow()
    conn.execute(update(model_versions).where(model_versions.c.id == version_id).values(values))


def _save(conn: Connection, model_id: int, **values: Any) -> None:
    values["updated_at"] = utcnow()
    updated = conn.execute(
        update(deployments).where(deployments.c.model_id == model_id).values(values)
    ).rowcount
    if not updated:
        conn.execute(insert(deployments).values(model_id=model_id, **values))


def _event(
    conn: Connection, model_id: int, action: str, version: Version | None, details: dict[str, Any]
) -> None:
    conn.execute(
        insert(rollout_events).values(
            model_id=model_id,
            action=action,
            version_id=version.id if version else None,
            details=details,
            at=utcnow(),
        )
    )


def _name(version: Version | None) -> str | None:
    return None if version is None else version.version
