"""The engine: SQLite pragmas, and writers in several processes taking turns without errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.storage.engine import begin_write, make_engine

WRITER = """
import sys
import pytest
import sqlalchemy as sa
from monitor.storage.engine import begin_write, make_engine

engine = make_engine(sys.argv[1], sqlite_busy_timeout_ms=200)
for i in range(200):
    with begin_write(engine) as conn:
        n = conn.execute(sa.text("SELECT n FROM counter")).scalar_one()
        conn.execute(sa.text("UPDATE counter SET n = :n"), {"n": n + 1})
"""


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")

    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_writers_in_four_processes_take_turns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'counter.db'}"
    with begin_write(make_engine(url)) as conn:
        conn.execute(sa.text("CREATE TABLE counter (n INTEGER)"))
        conn.execute(sa.text("INSERT INTO counter VALUES (0)"))

    # A busy timeout of 200 ms would fail these read-then-write transactions without the
    # write lock; with it, every increment lands.
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, url]) for _ in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]

    with make_engine(url).connect() as conn:
        assert conn.execute(sa.text("SELECT n FROM counter")).scalar_one() == 800


def test_sqlite_syncs_every_commit_so_an_acknowledged_batch_survives_power_loss(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    engine.dispose()


def test_a_sqlite_writer_waits_for_the_write_lock_no_longer_than_its_timeout(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    holder = make_engine(url)
    waiter = make_engine(url, sqlite_write_lock_timeout_ms=100)

    with (
        begin_write(holder),
        pytest.raises(sa.exc.OperationalError, match="write lock"),
        begin_write(waiter),
    ):
        pass
    with begin_write(waiter) as conn:  # free again
        conn.exec_driver_sql("SELECT 1")
    holder.dispose()
    waiter.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgres_statements_wait_for_a_lock_no_longer_than_the_lock_timeout(db_url: str) -> None:
    holder = make_engine(db_url)
    waiter = make_engine(db_url, lock_timeout_ms=100, statement_timeout_ms=5_000)
    with holder.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE locked (x int)")
    with holder.begin() as conn:
        conn.exec_driver_sql("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(sa.exc.OperationalError, match="lock timeout"), waiter.connect() as w:
            w.exec_driver_sql("SELECT count(*) FROM locked")
    holder.dispose()
    waiter.dispose()
