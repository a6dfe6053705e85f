"""The group commit's writer on SQLite: commits with ``synchronous=NORMAL``, then syncs the WAL.

The sync that ``synchronous=FULL`` does inside the commit is done after the write lock is
released and before the unit of work returns, so the next writer need not wait for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.index import log_change
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.models import Change, Instance
from dicomgate.db import CommitNotDurableError, Database, sync_wal
from dicomgate.group_commit import GroupCommit
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from tests.conftest import PYDICOM_FILES, open_descriptors


@pytest.fixture()
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(database)
    yield database
    database.dispose()


def _synchronous(session_or_conn: object) -> int:
    return int(session_or_conn.execute(text("PRAGMA synchronous")).scalar_one())  # type: ignore[attr-defined]


def _syncs(monkeypatch: pytest.MonkeyPatch, database: Database) -> list[tuple[str, int]]:
    """Record each file ``fdatasync`` flushes, with the write lock's depth at that moment."""
    seen: list[tuple[str, int]] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        seen.append((os.readlink(f"/proc/self/fd/{fd}"), database._write_lock._depth))  # type: ignore[union-attr]
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    return seen


def test_the_writer_commits_without_waiting_and_syncs_the_wal_after_the_lock(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = _syncs(monkeypatch, sqlite_db)
    with sqlite_db.writer.unit_of_work() as session:
        assert _synchronous(session) == 1  # NORMAL: the commit does not sync
        log_change(session, "test", "test", 1)
        assert syncs == []
    wal = str(Path(str(sqlite_db.engine.url.database)).resolve()) + "-wal"
    assert syncs == [(wal, 0)]  # once, after the write lock was released
    with sqlite_db.unit_of_work() as session:
        assert _synchronous(session) == 2  # every other unit of work: FULL, as before
    with sqlite_db.reader() as session:
        assert list(session.scalars(select(Change.resource_pk))) == [1]


def _failing_sync(fd: int) -> None:
    raise OSError(5, "Input/output error")


def test_a_failed_sync_fails_its_group_and_every_later_unit_of_work(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "fdatasync", _failing_sync)
    committer = GroupCommit(sqlite_db)
    with pytest.raises(CommitNotDurableError, match=r"Input/output.*restart dicomgate"):
        committer.run(lambda session: log_change(session, "test", "test", 1))
    monkeypatch.undo()
    # The kernel may have dropped the pages it failed to write: nothing more is acknowledged.
    with pytest.raises(CommitNotDurableError, match="refused"):
        committer.run(lambda session: log_change(session, "test", "test", 2))
    with sqlite_db.reader() as session:
        assert list(session.scalars(select(Change.resource_pk))) == [1]  # committed, unsynced
    with sqlite_db.unit_of_work() as session:  # other writers (FULL commits) go on
        log_change(session, "test", "test", 3)


def test_intake_keeps_the_blob_of_a_row_committed_without_its_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(database)
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    intake = Intake(database, blobs, FilesystemBlobStore(tmp_path / "set-aside"))
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    monkeypatch.setattr(os, "fdatasync", _failing_sync)
    try:
        with pytest.raises(CommitNotDurableError):
            receive(intake, data, Origin(OriginKind.IMPORT))
        monkeypatch.undo()
        with pytest.raises(CommitNotDurableError, match="refused"):
            receive(intake, data, Origin(OriginKind.IMPORT))  # a resend is not acknowledged
        with database.reader() as session:
            keys = list(session.scalars(select(Instance.blob_key)))
        assert len(keys) == 1 and blobs.exists(keys[0])  # no index row without its blob
    finally:
        database.dispose()


def test_a_writer_that_need_not_wait_for_the_disk_never_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(f"sqlite:///{tmp_path / 'audit.sqlite3'}", wait_for_disk=False)
    try:
        upgrade(database)
        syncs = _syncs(monkeypatch, database)
        with database.writer.unit_of_work() as session:
            log_change(session, "test", "test", 1)
        assert syncs == []
    finally:
        database.dispose()


def test_without_a_wal_file_the_database_file_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "closed.sqlite3"
    path.write_bytes(b"")
    database = Database(f"sqlite:///{path}")
    syncs = _syncs(monkeypatch, database)
    sync_wal(str(path))
    assert syncs == [(str(path.resolve()), 0)]
    with pytest.raises(FileNotFoundError):
        sync_wal(str(tmp_path / "missing.sqlite3"))
    database.dispose()


def _lock_files_open(database: Database) -> list[int]:
    lock = str(database._write_lock._path)  # type: ignore[union-attr]
    return [fd for fd, target in open_descriptors().items() if target == lock]


def test_dispose_closes_the_write_locks_file_and_the_next_write_opens_it(
    sqlite_db: Database,
) -> None:
    with sqlite_db.writer.unit_of_work() as session:
        log_change(session, "test", "test", 1)
    assert len(_lock_files_open(sqlite_db)) == 1
    sqlite_db.dispose()
    assert _lock_files_open(sqlite_db) == []
    with sqlite_db.writer.unit_of_work() as session:
        log_change(session, "test", "test", 2)
    assert len(_lock_files_open(sqlite_db)) == 1


def test_dispose_leaves_a_held_write_lock_alone(sqlite_db: Database) -> None:
    with sqlite_db.write_lock:
        sqlite_db.dispose()  # e.g. a child process: the lock may be a thread's it lacks
        assert len(_lock_files_open(sqlite_db)) == 1
    sqlite_db.dispose()
    assert _lock_files_open(sqlite_db) == []
