"""A request never waits without bound behind a database lock: past the configured wait it is
answered 503 with Retry-After (the SDK keeps the batch and sends it again), and nothing is lost
or stored twice."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import Engine

from monitor import wire
from monitor.collector.server import BackgroundCollector
from monitor.config import Settings
from monitor.storage.engine import begin_write
from tests.collector.conftest import ADMIN_TOKEN, auth, batch, record, stored


@contextmanager
def database_locked(engine: Engine, backend: str) -> Iterator[None]:
    """Another process's long write: the SQLite write lock, or PostgreSQL's lock on batches."""
    if backend == "sqlite":
        with begin_write(engine):
            yield
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("LOCK TABLE batches IN ACCESS EXCLUSIVE MODE")
        yield


def test_a_write_behind_a_held_lock_is_answered_503_and_stored_once_when_retried(
    backend: str, db_url: str, engine: Engine, token: str, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=db_url,
        data_dir=tmp_path,
        admin_token=ADMIN_TOKEN,
        sqlite_busy_timeout_ms=200,
        db_lock_timeout_ms=200,
    )
    body = batch([record()])
    with BackgroundCollector(settings) as collector, httpx.Client(base_url=collector.url) as http:
        with database_locked(engine, backend):
            refused = http.post(wire.RECORDS_PATH, json=body, headers=auth(token), timeout=30)
        retried = http.post(wire.RECORDS_PATH, json=body, headers=auth(token), timeout=30)

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "database_unavailable"
    assert int(refused.headers["Retry-After"]) > 0
    assert retried.json()["accepted"] == 1
    assert stored(engine)["records"] == 1
