"""Engine and session factory; ``unit_of_work()`` is the only place that commits.

SQLite runs in WAL mode with ``synchronous=FULL`` so that a committed transaction survives a
power loss (the group commits' writer syncs the WAL itself, just after the commit: see
``DedicatedWriter``), and every transaction starts with ``BEGIN IMMEDIATE`` so that
concurrent writers (receiver processes) queue on the lock instead of failing on a lock
upgrade. Writers queue on a lock of their own first (threads on a process lock, processes on
an ``flock`` of a file beside the index), which hands the write lock over at once instead of
SQLite's busy handler sleeping in growing steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from dicomgate.raw_sql import SESSION_CONNECTION

_SQLITE_BUSY_TIMEOUT_MS = 60_000
log = logging.getLogger(__name__)


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

    def close(self) -> None:
        """Close the lock file unless it is held (the next holder opens it again).

        Never waits: after a fork the thread lock may be held by a thread the child lacks.
        """
        if not self._threads.acquire(blocking=False):
            return
        try:
            if self._depth == 0 and self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
        finally:
            self._threads.release()


def _sqlite_file(engine: Engine) -> str | None:
    """Return the path of a SQLite engine's database file (None in memory or for a URI)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database:
        return None
    if database == ":memory:" or database.startswith("file:"):
        return None
    return database


def _sqlite_lock_path(engine: Engine) -> str | None:
    database = _sqlite_file(engine)
    return None if database is None else f"{database}.write-lock"


class CommitNotDurableError(OSError):
    """A commit is in the database, but making it durable failed (a failed sync of the disk).

    Its rows stand and may be read: a caller keeps what they name (a blob), and acknowledges
    nothing. After a failed sync the kernel may have dropped the unwritten pages, so the writer
    refuses every later unit of work until dicomgate restarts (as PostgreSQL stops on a
    failed fsync); see ``DedicatedWriter``.
    """


def sync_wal(database: str) -> None:
    """Make every commit written to a SQLite database's write-ahead log durable.

    What ``synchronous=FULL`` does at the end of each commit, for commits made with
    ``synchronous=NORMAL``. Without a WAL file, the last connection checkpointed the log into
    the database file and removed it (syncing both first); the database file is synced then.
    """
    try:
        fd = os.open(f"{database}-wal", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(database, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


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
        # For the group commits (intake, audit trail).
        self.writer = DedicatedWriter(self, wait_for_disk)

    @property
    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        """Return the lock every writer of this database takes around its transaction.

        SQLite has one writer; threads that find its lock taken sleep in growing steps in the
        busy handler. Queueing them on this lock (threads, and processes by ``flock``) hands
        it over at once. On PostgreSQL it is no lock.
        """
        return self._write_lock

    @property
    def is_sqlite(self) -> bool:
        """Return True when the index lives in SQLite."""
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends normally, roll back otherwise."""
        with self._write_lock:  # see ``write_lock``
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
        """Close every pooled connection and the write lock's file.

        Call it in a child process after fork too: ``flock`` locks belong to the open file,
        which the child would otherwise share with its parent.
        """
        self.writer.close()
        self.engine.dispose()
        if isinstance(self._write_lock, _WriteLock):
            self._write_lock.close()


class DedicatedWriter:
    """Units of work on a connection kept between them, for a writer of many small ones.

    A pooled unit of work checks a connection out, resets it and checks it back in around
    every transaction; for the group commit's leader, which writes many small transactions
    a second, that bookkeeping cost about as much as the statements. This keeps one
    connection between units of work (replaced after it broke). Two units of work at once
    are safe: the second takes a pooled connection, which is closed after it.

    On a SQLite file whose commits wait for the disk, the writer's connections (an engine of
    their own) commit with ``synchronous=NORMAL`` and ``unit_of_work`` makes the log durable
    with ``sync_wal`` after the write lock is released, before it returns. That is the sync
    ``synchronous=FULL`` does inside the commit, moved out of the lock: the receiving
    processes queue on the lock for each other's transactions, and the sync was half of the
    time they held it. Other connections may read a commit a moment before it is on disk;
    nothing is acknowledged before.

    Parameters
    ----------
    db
        The index; its write lock is taken as ``Database.unit_of_work`` takes it.
    wait_for_disk
        Whether a unit of work returns only once its commit is on disk (``db``'s setting).
    """

    def __init__(self, db: Database, wait_for_disk: bool = True) -> None:
        self.db = db
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._engine = db.engine
        self._synced_file: str | None = None
        self._sync_failed: CommitNotDurableError | None = None
        database = _sqlite_file(db.engine)
        if database is not None and wait_for_disk:
            self._engine = make_engine(db.url, wait_for_disk=False)
            self._synced_file = database

    def _take(self) -> Connection:
        with self._lock:
            conn, self._conn = self._conn, None
        return conn if conn is not None else self._engine.connect()

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            keep = self._conn is None and not (conn.invalidated or conn.closed)
            if keep:
                self._conn = conn
        if not keep:
            conn.close()

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends normally, roll back otherwise.

        Returns once the commit is on disk (see the class docstring).

        Raises
        ------
        CommitNotDurableError
            The commit is in the database but could not be synced to the disk (then and for
            every later unit of work of this writer: nothing more is acknowledged).
        """
        if self._sync_failed is not None:
            raise CommitNotDurableError(f"refused: {self._sync_failed}")
        with self.db._write_lock:
            conn = self._take()
            try:
                with conn.begin():
                    session = Session(
                        bind=conn, expire_on_commit=False, info={SESSION_CONNECTION: conn}
                    )
                    try:
                        yield session
                        session.flush()  # the session joined our transaction: it never commits
                    finally:
                        session.close()
            finally:
                self._give_back(conn)
        if self._synced_file is not None:
            self._sync(self._synced_file)

    def _sync(self, database: str) -> None:
        try:
            sync_wal(database)
        except OSError as exc:
            self._sync_failed = CommitNotDurableError(
                f"the index's write-ahead log could not be synced to disk ({exc}); "
                "check the disk and restart dicomgate"
            )
            log.critical("%s", self._sync_failed)
            raise self._sync_failed from exc

    def close(self) -> None:
        """Close the kept connection (and the writer's own engine's pooled ones)."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        if self._engine is not self.db.engine:
            self._engine.dispose()
