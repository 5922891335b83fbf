"""The engine: SQLite pragmas, and writers in several processes taking turns without errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from monitor.storage.engine import begin_write, make_engine

WRITER = """
import sys
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
