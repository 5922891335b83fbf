"""Models and their versions (the registry grows on these)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from monitor import wire
from monitor.errors import Conflict, NotFound, ValidationFailed
from monitor.storage.dialect import insert_or_ignore
from monitor.storage.tables import model_versions, models
from monitor.storage.types import utcnow


def check_name(name: str, field: str = "name") -> None:
    """Refuse a model or node name that would not survive in a URL path."""
    if not re.match(wire.NAME_PATTERN, name):
        raise ValidationFailed(
            f"invalid name {name!r}: use letters, digits and _.-:@ (at most 128)",
            details=[{"code": "invalid_field", "field": field, "message": "invalid name"}],
        )


@dataclass(frozen=True, slots=True)
class Model:
    """A monitored model."""

    id: int
    name: str
    description: str
    created_at: datetime
    #: Its window policy and baseline as stored (None: the defaults); their modules read them.
    window_policy: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None


def add_model(conn: Connection, name: str, *, description: str = "") -> Model:
    """Register a model by name."""
    check_name(name)
    try:
        with conn.begin_nested():
            conn.execute(
                models.insert().values(name=name, description=description, created_at=utcnow())
            )
    except IntegrityError as exc:
        raise Conflict(f"a model named {name!r} already exists", code="model_exists") from exc
    return get_model(conn, name)


def find_model(conn: Connection, name: str) -> Model | None:
    """The model called ``name``, or None."""
    row = conn.execute(select(models).where(models.c.name == name)).mappings().first()
    return None if row is None else Model(**row)


def get_model(conn: Connection, name: str) -> Model:
    """The model called ``name``."""
    model = find_model(conn, name)
    if model is None:
        raise NotFound(f"no model named {name!r}", code="unknown_model")
    return model


def list_models(conn: Connection) -> list[Model]:
    """Every model, by name."""
    return [Model(**row) for row in conn.execute(select(models).order_by(models.c.name)).mappings()]


def version_id(
    conn: Connection,
    model_id: int,
    version: str,
    *,
    max_reported: int | None = None,
) -> int:
    """The id of a model's version. A version nodes report before it is registered is created
    the first time it is seen (unregistered: no artifact, ``registered_at`` null), up to
    ``max_reported`` such versions per model (None: no bound), so that nodes cannot grow the
    registry without bound; past that, a new unregistered version is refused."""
    query = select(model_versions.c.id).where(
        model_versions.c.model_id == model_id, model_versions.c.version == version
    )
    found = conn.execute(query).scalar()
    if found is not None:
        return int(found)
    if max_reported is not None:
        _check_reported(conn, model_id, version, max_reported)
    conn.execute(
        insert_or_ignore(conn, model_versions, ["model_id", "version"]).values(
            model_id=model_id, version=version, created_at=utcnow()
        )
    )
    return int(conn.execute(query).scalar_one())


def _check_reported(conn: Connection, model_id: int, version: str, max_reported: int) -> None:
    reported = conn.execute(
        select(func.count()).where(
            model_versions.c.model_id == model_id, model_versions.c.registered_at.is_(None)
        )
    ).scalar_one()
    if reported >= max_reported:
        raise ValidationFailed(
            f"model version {version!r} is not registered, and nodes have already reported "
            f"{reported} unregistered versions of this model (the limit): register it with "
            "`edge-monitor models register`",
            code="unregistered_version",
            details=[
                {
                    "code": "unregistered_version",
                    "field": "model_version",
                    "message": f"not registered; {reported} unregistered versions already",
                }
            ],
        )


def list_versions(conn: Connection, model_id: int) -> list[str]:
    """A model's versions, oldest first."""
    query = (
        select(model_versions.c.version)
        .where(model_versions.c.model_id == model_id)
        .order_by(model_versions.c.id)
    )
    return list(conn.execute(query).scalars())


def version_names(conn: Connection) -> dict[int, str]:
    """Every model version's name, by id."""
    return {
        row.id: row.version
        for row in conn.execute(select(model_versions.c.id, model_versions.c.version))
    }
