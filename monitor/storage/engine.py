"""Engine factory: SQLite in WAL mode with a busy timeout and foreign keys, or PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

try:
    import fcntl
except ImportError:  # Windows: processes fall back on SQLite's busy timeout
    fcntl = None  # type: ignore[assignment]
from sqlalchemy.engine import make_url

_WRITE = "edge_monitor_write"


class _SqliteWriteLock:
    """SQLite has one writer at a time. Writers queue on this lock (threads of a process on a
    mutex, processes on an flock of ``<database>.write-lock``) instead of polling SQLite's busy
    handler, which sleeps in steps of up to 100 ms and lets a steady writer starve the rest."""

    def __init__(self, database: str | None, timeout: float) -> None:
        self._mutex = threading.Lock()
        self._path = f"{database}.write-lock" if _is_file(database) and fcntl else None
        self._fd: int | None = None
        self._timeout = timeout

    def __enter__(self) -> None:
        # Bounded: a writer stuck elsewhere (another process holding the lock) makes this
        # request fail with "database unavailable" (503 and Retry-After) rather than hang.
        deadline = time.monotonic() + self._timeout
        if not self._mutex.acquire(timeout=self._timeout):
            raise _busy("another writer of this process held the write lock too long")
        if self._path is not None:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                self._flock(deadline)
            except BaseException:
                self._mutex.release()
                raise

    def _flock(self, deadline: float) -> None:
        assert self._fd is not None
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy("another process held the write lock too long") from None
                # Short, growing pauses: the lock usually frees within milliseconds.
                time.sleep(pause)
                pause = min(pause * 2, 0.01)

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._path is not None and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._mutex.release()

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)


def _busy(message: str) -> OperationalError:
    # The error SQLAlchemy raises for SQLITE_BUSY, so callers handle both alike (the collector
    # answers 503 with Retry-After).
    return OperationalError("acquire the SQLite write lock", None, TimeoutError(message))


def _is_file(database: str | None) -> bool:
    return bool(database) and database != ":memory:" and not str(database).startswith("file:")


_sqlite_write_locks: WeakKeyDictionary[Engine, _SqliteWriteLock] = WeakKeyDictionary()


def make_engine(
    url: str,
    *,
    pool_size: int = 8,
    sqlite_busy_timeout_ms: int = 30_000,
    sqlite_write_lock_timeout_ms: int = 60_000,
    lock_timeout_ms: int | None = None,
    statement_timeout_ms: int | None = None,
) -> Engine:
    """An engine for ``url``; for SQLite the parent directory of the file is created.

    On PostgreSQL, ``lock_timeout_ms`` and ``statement_timeout_ms`` bound how long one
    statement waits for a lock and runs (a request must not wait without bound behind a lock;
    the collector answers 503 instead). Long jobs, such as loading a window, pass none."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(
            url, parsed.database, sqlite_busy_timeout_ms, sqlite_write_lock_timeout_ms
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # Plain postgresql:// would pick psycopg2; we ship psycopg 3.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # Settings already in the URL (``?options=-csearch_path=...``) are kept beside ours.
    given = parsed.query.get("options")
    options = [given] if isinstance(given, str) else list(given or ())
    options += [
        f"-c {name}={int(ms)}"
        for name, ms in (
            ("lock_timeout", lock_timeout_ms),
            ("statement_timeout", statement_timeout_ms),
        )
        if ms
    ]
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # A database that does not answer fails the connection (and /readyz) in seconds.
        connect_args={"connect_timeout": 5, **({"options": " ".join(options)} if options else {})},
    )


def _sqlite_engine(
    url: str, database: str | None, busy_timeout_ms: int, write_lock_timeout_ms: int
) -> Engine:
    if _is_file(database):
        Path(str(database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    _sqlite_write_locks[engine] = _SqliteWriteLock(
        str(Path(str(database)).expanduser()) if _is_file(database) else None,
        write_lock_timeout_ms / 1000,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that we can say BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL, not WAL's usual NORMAL: a batch the collector acknowledged is deleted from
        # the node's spool, so it must survive a power loss (NORMAL may lose the last commits).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front: a deferred transaction that upgrades from read to
        # write gets SQLITE_BUSY at once, without waiting for the busy timeout.
        if conn.get_execution_options().get(_WRITE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write: committed on success, rolled back on error."""
    lock = _sqlite_write_locks.get(engine)
    if lock is None:
        with engine.connect() as conn, conn.begin():
            yield conn
        return
    with lock, engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn
