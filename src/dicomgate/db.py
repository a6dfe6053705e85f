"""Engine and session factory; ``unit_of_work()`` is the only place that commits.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives a
power loss, and every transaction starts with ``BEGIN IMMEDIATE`` so that concurrent writers
(receiver processes) queue on the lock instead of failing on a lock upgrade. Writers queue on
a lock of their own first (threads on a process lock, processes on an ``flock`` of a file
beside the index), which hands the write lock over at once instead of SQLite's busy handler
sleeping in growing steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

_SQLITE_BUSY_TIMEOUT_MS = 60_000


def _sqlite_on_connect(dbapi_conn: Any, _record: Any, synchronous: str = "FULL") -> None:
    # Take transaction control from the driver so BEGIN IMMEDIATE is ours to emit.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_on_connect_commits_to_os(dbapi_conn: Any, record: Any) -> None:
    # WAL with synchronous=NORMAL: a commit is in the operating system's hands, not yet on
    # disk; the database stays consistent, and the next FULL commit or checkpoint syncs it.
    _sqlite_on_connect(dbapi_conn, record, synchronous="NORMAL")


def _sqlite_on_begin(conn: Any) -> None:
    # Readers begin a deferred transaction so they never wait for the write lock. Sent on the
    # driver's connection: through exec_driver_sql it cost as much as an intake statement.
    readonly = conn.get_execution_options().get("dicomgate_readonly", False)
    statement = "BEGIN" if readonly else "BEGIN IMMEDIATE"
    try:
        conn.connection.driver_connection.execute(statement)
    except sqlite3.Error as exc:  # as SQLAlchemy's own execution would raise it
        raise DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc


def make_engine(url: str, wait_for_disk: bool = True) -> Engine:
    """Create an engine for ``url`` with the durability settings dicomgate relies on.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://...``.
    wait_for_disk
        When False, a commit returns once the database server or SQLite handed it to the
        operating system, before it is on disk (SQLite ``synchronous=NORMAL``, PostgreSQL
        ``synchronous_commit=off``): a crash of dicomgate loses nothing committed, a crash of
        the machine can lose the last commits, and the database stays consistent.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})
        on_connect = _sqlite_on_connect if wait_for_disk else _sqlite_on_connect_commits_to_os
        event.listen(engine, "connect", on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    if not wait_for_disk:
        # A statement per connection, not the driver's "options": those may come with the URL.
        event.listen(engine, "connect", _postgres_on_connect_commits_to_os)
    return engine


def _postgres_on_connect_commits_to_os(dbapi_conn: Any, _record: Any) -> None:
    # Commits return once in the server's WAL buffers; the server stays consistent and
    # writes them within a fraction of a second (wal_writer_delay).
    with dbapi_conn.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
    dbapi_conn.commit()


class _WriteLock:
    """A reentrant lock across the threads of this process and, by ``flock``, across processes.

    Parameters
    ----------
    path
        The lock file (created when missing); None for a lock within this process only.
    """

    def __init__(self, path: str | None) -> None:
        self._threads = threading.RLock()
        self._path = path
        self._fd: int | None = None
        self._depth = 0

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._depth == 0 and self._path is not None:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without holding the GIL
        except BaseException:
            self._threads.release()
            raise
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()


def _sqlite_lock_path(engine: Engine) -> str | None:
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}.write-lock"


class Database:
    """Owns the engine and hands out units of work.

    Parameters
    ----------
    url
        The database URL.
    wait_for_disk
        False for commits that return before they are on disk (see ``make_engine``).
    """

    def __init__(self, url: str, wait_for_disk: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url, wait_for_disk)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock: _WriteLock | contextlib.nullcontext[None] = (
            _WriteLock(_sqlite_lock_path(self.engine))
            if self.engine.dialect.name == "sqlite"
            else contextlib.nullcontext()
        )
        self._read_engine = self.engine.execution_options(dicomgate_readonly=True)
        self._readers = sessionmaker(self._read_engine, expire_on_commit=False)
        self.writer = DedicatedWriter(self)  # for the group commits (intake, audit trail)

    @property
    def is_sqlite(self) -> bool:
        """Return True when the index lives in SQLite."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends normally, roll back otherwise."""
        # SQLite has one writer; threads that find its lock taken sleep in growing steps in the
        # busy handler. Queueing them on our lock (threads and processes) hands it over at once.
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

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """Yield a Core connection for reads only, without an ORM session.

        For reads answered in a millisecond or less (a DICOMweb search), where creating and
        closing a session costs a good part of the time; it never commits.
        """
        with self._read_engine.connect() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection (call in a child process after fork)."""
        self.writer.close()
        self.engine.dispose()


class DedicatedWriter:
    """Units of work on a connection kept between them, for a writer of many small ones.

    A pooled unit of work checks a connection out, resets it and checks it back in around
    every transaction; for the group commit's leader, which writes many small transactions
    a second, that bookkeeping cost about as much as the statements. This keeps one
    connection between units of work (replaced after it broke). Two units of work at once
    are safe: the second takes a pooled connection, which is closed after it.

    Parameters
    ----------
    db
        The index; its write lock is taken as ``Database.unit_of_work`` takes it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def _take(self) -> Connection:
        with self._lock:
            conn, self._conn = self._conn, None
        return conn if conn is not None else self.db.engine.connect()

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            keep = self._conn is None and not (conn.invalidated or conn.closed)
            if keep:
                self._conn = conn
        if not keep:
            conn.close()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends normally, roll back otherwise."""
        with self.db._write_lock:
            conn = self._take()
            try:
                with conn.begin():
                    session = Session(bind=conn, expire_on_commit=False)
                    try:
                        yield session
                        session.flush()  # the session joined our transaction: it never commits
                    finally:
                        session.close()
            finally:
                self._give_back(conn)

    def close(self) -> None:
        """Close the kept connection."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
