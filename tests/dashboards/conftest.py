"""The dashboard tests' databases: one seeded database per backend for the whole session (read
only: never write to it in a test), and small ones for each empty state.

Every dashboard test runs with MONITOR_HEALTH_OFFLINE_AFTER_SECONDS at ``seed.OFFLINE_AFTER``
(30 minutes): the seed's live nodes were heard as it finished, and must stay online however
long the session takes, while its offline node, silent for over an hour, stays offline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from tests.conftest import BACKENDS, POSTGRES_URL, postgres_problem, require_service
from tests.dashboards import seed
from tests.dashboards.seed import Seeded


@pytest.fixture(autouse=True)
def offline_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline threshold the seed's node states are built for (see the module's docstring)."""
    monkeypatch.setenv(
        "MONITOR_HEALTH_OFFLINE_AFTER_SECONDS", str(int(seed.OFFLINE_AFTER.total_seconds()))
    )


def _backend(request: pytest.FixtureRequest) -> str:
    backend = str(request.param)
    if backend == "postgresql":
        problem = postgres_problem()
        require_service(problem is None, problem or "")
    return backend


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database of ``backend`` (a SQLite file in ``folder``, or a
    PostgreSQL schema of its own, dropped at the end)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'edge-monitor.db'}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def seeded(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Seeded]:
    """The seeded database of one backend, built once per session (``tests.dashboards.seed``)."""
    backend = _backend(request)
    with database(backend, tmp_path_factory.mktemp(f"seeded-{backend}")) as url:
        built = seed.build(url)
        try:
            yield built
        finally:
            built.engine.dispose()


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database at the schema head with nothing in it."""
    with database(_backend(request), tmp_path) as url:
        seed.build_empty(url)
        yield url


@pytest.fixture(params=BACKENDS)
def no_reference_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database whose model has no version and no reference data."""
    with database(_backend(request), tmp_path) as url:
        seed.build_no_reference(url)
        yield url


@pytest.fixture(params=BACKENDS)
def no_window_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with a model, its reference and records, and no window analysed yet."""
    with database(_backend(request), tmp_path) as url:
        seed.build_no_window(url)
        yield url
