"""Fixtures shared by every test: a fresh database per test on SQLite and on PostgreSQL.

PostgreSQL is taken from MONITOR_TEST_POSTGRES_URL (default: the local server at
127.0.0.1:5432, database `test`); each test gets its own schema. When the server is not
reachable the PostgreSQL variants skip with the reason, except under CI=true, where a missing
service must fail the run instead of passing it by skipping.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from functools import cache
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from monitor.storage.engine import make_engine

POSTGRES_URL = os.environ.get(
    "MONITOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
BACKENDS = ("sqlite", "postgresql")


def require_service(available: bool, reason: str) -> None:
    """Skip when a service a test needs is missing; under CI=true, fail instead."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@cache
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None when it can."""
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not available here"
        return f"PostgreSQL is not reachable at {POSTGRES_URL} ({type(exc).__name__})"
    return None


@pytest.fixture
def dead_url() -> str:
    """A loopback URL where nothing listens (connections are refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test that uses a database runs once per backend."""
    if request.param == "postgresql":
        problem = postgres_problem()
        require_service(problem is None, problem or "")
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path) -> Iterator[str]:
    """The URL of an empty database of the test's backend (no tables yet)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'edge-monitor.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on a fresh database migrated to head."""
    from monitor.storage import migrations

    migrations.upgrade(db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()
