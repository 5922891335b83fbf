"""Model commands: models, version registration, and the rollout (promote, canary, pins)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine

from monitor.commands.checks import (
    MAX_DESCRIPTION_CHARS,
    MAX_GROUP_CHARS,
    check_card,
    check_name,
    check_share,
    check_text,
    invalid,
    reference_parquet,
)
from monitor.commands.datasets import (
    SchemaChoice,
    infer_schema,
    read_reference,
    reference_columns,
)
from monitor.dataschema import DataSchema
from monitor.storage import models, registry
from monitor.storage.engine import begin_write
from monitor.storage.models import Model
from monitor.storage.registry import Deployment, Version


@dataclass(frozen=True, slots=True)
class ModelListing:
    """A model and the names of its versions, oldest first."""

    model: Model
    versions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VersionRoles:
    """What one version does in the rollout."""

    version: Version
    production: bool
    canary_share: float | None
    pinned_groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelVersions:
    """A model's versions and its current rollout."""

    model: Model
    versions: list[Version]
    deployment: Deployment

    def roles(self) -> list[VersionRoles]:
        """Every version with its part in the rollout."""
        current = self.deployment
        return [
            VersionRoles(
                version=v,
                production=current.production is not None and current.production.id == v.id,
                canary_share=(
                    current.canary_share
                    if current.canary is not None and current.canary.id == v.id
                    else None
                ),
                pinned_groups=tuple(g for g, pv in current.pins.items() if pv.id == v.id),
            )
            for v in self.versions
        ]


@dataclass(frozen=True, slots=True)
class Rollout:
    """The outcome of a rollout change: the version it concerned (if any), the new rollout."""

    version: Version | None
    deployment: Deployment


def add_model(engine: Engine, name: str, *, description: str = "") -> Model:
    """Register a model by name; a taken name is a conflict (``model_exists``)."""
    check_name(name, "name", "model name")
    if description:
        check_text(description, "description", MAX_DESCRIPTION_CHARS)
    with begin_write(engine) as conn:
        return models.add_model(conn, name, description=description)


def list_models(engine: Engine) -> list[ModelListing]:
    """Every model, by name, with its versions."""
    with engine.connect() as conn:
        return [
            ModelListing(model, tuple(models.list_versions(conn, model.id)))
            for model in models.list_models(conn)
        ]


def register_version(
    engine: Engine,
    model: str,
    *,
    artifact: bytes,
    card: Any,
    reference: bytes | None = None,
    version: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Version:
    """Register a version as a candidate: its ONNX artifact, its card and, optionally, its
    reference data (Parquet or CSV, stored as Parquet). Its data schema is the card's.

    The version is ``version`` when given, else the card's. Metrics default to the card's.
    """
    checked = check_card(card, model)
    if version is None:
        version = check_name(checked.version, "card.version", "version")
    else:
        check_name(version, "version", "version")
    if not artifact:
        raise invalid("artifact", "empty", "the artifact is empty")
    data = reference_parquet(reference) if reference is not None else None
    columns = reference_columns(data.parquet) if data else ()
    schema = DataSchema.from_card(card, columns)
    with begin_write(engine) as conn:
        return registry.register_version(
            conn,
            models.get_model(conn, model).id,
            version,
            artifact=artifact,
            card=card,
            reference=data.parquet if data else None,
            reference_rows=data.rows if data else None,
            metrics=card.get("metrics") if metrics is None else metrics,
            schema=schema.to_json(),
        )


@dataclass(frozen=True, slots=True)
class ReferenceRegistration:
    """A version registered with reference data only, its schema and the columns left out."""

    version: Version
    schema: DataSchema
    ignored: tuple[str, ...]


def register_reference(
    engine: Engine,
    model: str,
    version: str,
    reference: bytes,
    choice: SchemaChoice | None = None,
    *,
    metrics: dict[str, Any] | None = None,
) -> ReferenceRegistration:
    """Register a version by its reference data alone (Parquet or CSV), for a model that runs
    outside the bundled runtime: its drift is measured, nodes are never sent it.

    The data schema is inferred from the reference, with ``choice`` applied (or is the whole
    schema it gives). A version that nodes already reported gets its reference now.
    """
    check_name(version, "version", "version")
    data = reference_parquet(reference)
    inferred = infer_schema(read_reference(data.parquet), choice)
    with begin_write(engine) as conn:
        registered = registry.register_version(
            conn,
            models.get_model(conn, model).id,
            version,
            artifact=None,
            card=None,
            reference=data.parquet,
            reference_rows=data.rows,
            metrics=metrics,
            schema=inferred.schema.to_json(),
        )
    return ReferenceRegistration(registered, inferred.schema, inferred.ignored)


def model_versions(engine: Engine, model: str) -> ModelVersions:
    """A model's versions, oldest first, and its current rollout."""
    with engine.connect() as conn:
        found = models.get_model(conn, model)
        return ModelVersions(
            found, registry.versions(conn, found.id), registry.deployment(conn, found.id)
        )


def promote(engine: Engine, model: str, version: str) -> Rollout:
    """Make a version production; the production before it is archived (for rollback)."""
    return _rollout(engine, model, lambda conn, m: registry.promote(conn, m, version))


def start_canary(engine: Engine, model: str, version: str, share: float) -> Rollout:
    """Send a candidate to ``share`` of the nodes, a number in (0, 1]."""
    share = check_share(share)
    return _rollout(engine, model, lambda conn, m: registry.start_canary(conn, m, version, share))


def stop_canary(engine: Engine, model: str) -> Rollout:
    """End the canary: its nodes go back to production."""
    return _rollout(engine, model, registry.stop_canary)


def pin(engine: Engine, model: str, version: str, group: str) -> Rollout:
    """Run one version on every node of a group, whatever production is."""
    check_text(group, "group", MAX_GROUP_CHARS)
    return _rollout(engine, model, lambda conn, m: registry.pin(conn, m, group, version))


def unpin(engine: Engine, model: str, group: str) -> Rollout:
    """Let a group follow production (and the canary) again."""
    return _rollout(engine, model, lambda conn, m: registry.unpin(conn, m, group))


def rollback(engine: Engine, model: str) -> Rollout:
    """Put the previous production version back; the current one is archived."""
    return _rollout(engine, model, registry.rollback)


def archive(engine: Engine, model: str, version: str) -> Rollout:
    """Retire a version that no node runs."""
    return _rollout(engine, model, lambda conn, m: registry.archive(conn, m, version))


def _rollout(
    engine: Engine, model: str, change: Callable[[Connection, int], Version | None]
) -> Rollout:
    with begin_write(engine) as conn:
        model_id = models.get_model(conn, model).id
        changed = change(conn, model_id)
        return Rollout(changed, registry.deployment(conn, model_id))
