"""SQL lives in monitor/storage (and migrations/) only: no other module builds a query, names a
table object or speaks to a driver. Connection and engine types may pass through (routes and
jobs own their transactions), and SQLAlchemy's exceptions may be caught."""

from __future__ import annotations

import ast
from pathlib import Path

import monitor

PACKAGE_DIR = Path(monitor.__file__).resolve().parent
REPO = PACKAGE_DIR.parent
#: What may be imported from SQLAlchemy outside storage: types that pass through, exceptions.
ALLOWED = {"sqlalchemy": {"Connection", "Engine"}, "sqlalchemy.exc": None}
DRIVERS = ("psycopg", "psycopg2", "sqlite3")


def violations(source: str, where: str) -> list[str]:
    """Every SQL-building import or use in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if root == "sqlalchemy" or root in DRIVERS:
                    found.append(f"{where} imports {alias.name}")
                if alias.name == "monitor.storage.tables":
                    found.append(f"{where} imports monitor.storage.tables")
        elif isinstance(node, ast.ImportFrom) and node.module:
            module = node.module
            names = {alias.name for alias in node.names}
            if module.split(".")[0] == "sqlalchemy":
                allowed = ALLOWED.get(module, set())
                extra = set() if allowed is None else names - allowed
                if module not in ALLOWED or extra:
                    found.append(f"{where} imports {sorted(extra or names)} from {module}")
            elif module.split(".")[0] in DRIVERS:
                found.append(f"{where} imports from {module}")
            elif module == "monitor.storage.tables" or (
                module == "monitor.storage" and "tables" in names
            ):
                found.append(f"{where} imports monitor.storage.tables")
        elif isinstance(node, ast.Attribute) and node.attr in ("exec_driver_sql", "execute"):
            # conn.execute(...) outside storage runs SQL built somewhere: it must not be here.
            found.append(f"{where} calls .{node.attr}()")
    return found


def outside_storage() -> list[Path]:
    """Every module of the package but storage's, and the dashboard's (monitor.dashboards)."""
    return [
        path
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if path.relative_to(PACKAGE_DIR).parts[0] != "storage"
    ] + sorted((PACKAGE_DIR.parent / "dashboards").rglob("*.py"))


def test_no_sql_outside_storage() -> None:
    found = [
        v
        for path in outside_storage()
        for v in violations(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    ]
    assert found == []


def test_the_check_catches_each_way_of_writing_sql() -> None:
    planted = {
        "select": "from sqlalchemy import Engine, select\n",
        "module": "import sqlalchemy as sa\n",
        "tables": "from monitor.storage.tables import batches\n",
        "tables2": "from monitor.storage import results, tables\n",
        "driver": "import psycopg\n",
        "execute": "def f(conn):\n    conn.execute(q)\n",
        "dialect": "from sqlalchemy.dialects import sqlite\n",
    }
    for name, source in planted.items():
        assert violations(source, name), f"{name} was not caught"
    assert violations("from sqlalchemy import Connection, Engine\n", "ok") == []
    assert violations("from sqlalchemy.exc import OperationalError\n", "ok") == []
    assert len(outside_storage()) > 20  # the scan sees the package
    assert any(path.parent.name == "views" for path in outside_storage())  # and the dashboard
