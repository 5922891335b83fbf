"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_or_ignore(conn: Connection, table: Table, conflict_columns: Sequence[str]) -> Any:
    """``INSERT ... ON CONFLICT (columns) DO NOTHING`` for the connection's database."""
    module = sqlite if conn.dialect.name == "sqlite" else postgresql
    return module.insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))


def upsert(
    conn: Connection, table: Table, conflict_columns: Sequence[str], update_columns: Sequence[str]
) -> Any:
    """``INSERT ... ON CONFLICT (columns) DO UPDATE SET`` the given columns from the new row."""
    module = sqlite if conn.dialect.name == "sqlite" else postgresql
    stmt = module.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=list(conflict_columns),
        set_={name: stmt.excluded[name] for name in update_columns},
    )
