"""Engine and session factory; ``unit_of_work()`` is the only place that commits.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives a
power loss, and every transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers
(receiver processes) queue on the lock instead of failing on a lock upgrade.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

_SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Readers begin a deferred transaction so they never wait for the write lock.
    readonly = conn.get_execution_options().get("dicomgate_readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the durability settings dicomgate relies on.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """Owns the engine and hands out units of work.

    Parameters
    ----------
    url
        The database URL.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock: threading.RLock | contextlib.nullcontext[None] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        self._readers = sessionmaker(
            self.engine.execution_options(dicomgate_readonly=True), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        """Return True when the index lives in SQLite."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends normally, roll back otherwise."""
        # SQLite has one writer; threads that find its lock taken sleep in growing steps in the
        # busy handler. Queueing them on a process lock instead hands the lock over at once.
        with self._write_lock:
            session = self._sessions()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                session.close()

    @contextmanager
    def reader(self) -> Iterator[Session]:
        """Yield a session for reads only; it never commits."""
        session = self._readers()
        try:
            yield session
        finally:
            # close() ends the transaction without expiring loaded rows, unlike rollback().
            session.close()

    def dispose(self) -> None:
        """Close every pooled connection (call in a child process after fork)."""
        self.engine.dispose()
