"""Schema migrations: run Alembic from code and check that a database is at the expected head."""

from __future__ import annotations

import importlib.util
import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from monitor.errors import SchemaOutOfDate
from monitor.storage.engine import make_engine

# Alembic logs every step (and its plugins, on import) at INFO; called from code it stays quiet
# unless the application configures the "alembic" logger itself. Set before alembic is
# imported, which is why alembic is imported inside the functions.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory


def script_directory() -> Path:
    """The Alembic script directory: the ``monitor.migrations`` package (``migrations/`` at the
    top of a checkout, mapped into the package by pyproject.toml; inside an installed wheel)."""
    spec = importlib.util.find_spec("monitor.migrations")
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) if locations else None
    if folder is None or not (folder / "env.py").is_file():
        raise RuntimeError(
            f"edge-monitor's migrations are missing (looked for monitor.migrations, found "
            f"{folder}): reinstall edge-monitor"
        )
    return folder


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that leaves the application's logging alone."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_directory()))
    # ConfigParser interpolates '%': URLs carry %-escapes (options=-csearch_path%3D...).
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``, in one transaction."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: drop everything)."""
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head() -> str:
    """The revision this code expects; an error if the migrations have diverged."""
    heads = _scripts().get_heads()
    if len(heads) != 1:
        raise RuntimeError(
            f"migrations have {len(heads)} heads ({', '.join(heads) or 'none'}): "
            "merge them with `alembic merge heads`"
        )
    return heads[0]


@cache
def _scripts() -> ScriptDirectory:
    # Read once per process: the readiness check asks for the head on every probe.
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(script_directory()))


def _current_on(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    if len(heads) > 1:
        raise SchemaOutOfDate(
            f"database {_shown(engine)} has several migration heads ({', '.join(heads)})"
        )
    return heads[0] if heads else None


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at, or None before the first migration."""
    engine = make_engine(url, pool_size=1)
    try:
        return _current_on(engine)
    finally:
        engine.dispose()


def ensure_at_head(engine: Engine) -> None:
    """Raise SchemaOutOfDate, with what to do in one line, unless the database is at head."""
    from alembic.util.exc import CommandError

    expected = head()
    found = _current_on(engine)
    if found == expected:
        return
    try:
        known = found is None or _scripts().get_revision(found) is not None
    except CommandError:
        known = False
    if known:
        raise SchemaOutOfDate(
            f"database {_shown(engine)} is at revision {found or 'none'}, this edge-monitor "
            f'needs {expected}: run "edge-monitor db upgrade"',
            details={"current": found, "expected": expected},
        )
    raise SchemaOutOfDate(
        f"database {_shown(engine)} is at revision {found}, which this edge-monitor does not "
        f"know (it needs {expected}): the database was migrated by a newer edge-monitor",
        details={"current": found, "expected": expected},
    )


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)
