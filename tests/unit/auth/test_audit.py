import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection
from sqlalchemy.exc import DatabaseError

from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome, ReadAppender
from dicomgate.auth.audit_xml import to_audit_message


@pytest.fixture()
def trail(tmp_path: Path) -> Iterator[AuditTrail]:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    trail.record(
        AuditEvent.IMPORT, "import", actor="alice", source="127.0.0.1", objects={"job_id": "j1"}
    )
    trail.record(AuditEvent.QUERY, "query", actor="bob", objects={"results": 3})
    trail.record(
        AuditEvent.USER_AUTHENTICATION, "login", actor="unknown", outcome=Outcome.MINOR_FAILURE
    )
    yield trail
    trail.dispose()


@contextlib.contextmanager
def _raw(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """The trail's file opened behind its back, its guards dropped; committed and closed after."""
    with contextlib.closing(sqlite3.connect(tmp_path / "audit.sqlite3")) as conn, conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("DROP TRIGGER audit_no_delete")
        yield conn


def test_an_intact_chain_verifies(trail: AuditTrail) -> None:
    assert trail.verify() == []
    assert [r.action for r in trail.records()] == ["import", "query", "login"]
    assert [r.seq for r in trail.records(since=1)] == [2, 3]


def test_updates_and_deletes_are_refused(trail: AuditTrail) -> None:
    with pytest.raises(DatabaseError), trail.db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_records SET actor = 'mallory'")
    with pytest.raises(DatabaseError), trail.db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_records")
    assert trail.verify() == []


def test_a_changed_record_is_detected(trail: AuditTrail, tmp_path: Path) -> None:
    with _raw(tmp_path) as conn:
        conn.execute("UPDATE audit_records SET actor = 'mallory' WHERE seq = 2")
    assert trail.verify() == ["record 2: content changed after it was written"]


def test_a_removed_record_is_detected(trail: AuditTrail, tmp_path: Path) -> None:
    with _raw(tmp_path) as conn:
        conn.execute("DELETE FROM audit_records WHERE seq = 2")
    problems = trail.verify()
    assert "record 2: missing (next is 3)" in problems
    assert "record 3: does not follow its predecessor" in problems


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_link(
    trail: AuditTrail, tmp_path: Path
) -> None:
    from dicomgate.auth.audit import chain_hash

    with _raw(tmp_path) as conn:
        row = conn.execute(
            "SELECT seq, at, event_code, action, actor, source, outcome, objects, detail, "
            "prev_hash FROM audit_records WHERE seq = 1"
        ).fetchone()
        names = (
            "seq",
            "at",
            "event_code",
            "action",
            "actor",
            "source",
            "outcome",
            "objects",
            "detail",
        )
        content = dict(zip(names, row[:9], strict=True)) | {"actor": "mallory"}
        conn.execute(
            "UPDATE audit_records SET actor = 'mallory', hash = ? WHERE seq = 1",
            (chain_hash(row[9], content),),
        )
    assert trail.verify() == ["record 2: does not follow its predecessor"]


def test_concurrent_records_share_commits_and_keep_one_chain(tmp_path: Path) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    seqs: list[int] = []
    start = threading.Barrier(8)

    def search(n: int) -> None:
        start.wait()
        for i in range(25):
            seqs.append(trail.record(AuditEvent.QUERY, "query", actor=f"viewer{n}", detail=str(i)))

    threads = [threading.Thread(target=search, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 201))  # each caller got its own, committed record
    assert trail.verify() == []
    assert len(trail.records(limit=500)) == 200
    assert trail._writer.groups < 200  # some records shared a commit
    trail.dispose()


def test_dicom_audit_message(trail: AuditTrail) -> None:
    record = trail.records()[0]
    xml = to_audit_message(record, AuditEvent.IMPORT.meaning)
    assert xml.startswith("<AuditMessage>")
    assert 'csd-code="110107"' in xml and 'EventActionCode="C"' in xml
    assert 'UserID="alice"' in xml and 'NetworkAccessPointID="127.0.0.1"' in xml
    assert 'ParticipantObjectID="j1"' in xml


@pytest.mark.postgres
def test_chain_on_postgres(postgres_url: str) -> None:
    trail = AuditTrail(postgres_url)
    for n in range(3):
        trail.record(AuditEvent.QUERY, "query", actor=f"u{n}")
    assert trail.verify() == []
    with pytest.raises(DatabaseError), trail.db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_records")
    trail.dispose()


def _waits_for_disk(trail_db: object, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether a unit of work of the store's writer returns only once its commit is on disk.

    Either SQLite syncs inside the commit (``synchronous=FULL``) or the writer syncs the WAL
    after it (``synchronous=NORMAL``, then ``fdatasync``).
    """
    from dicomgate.db import Database

    assert isinstance(trail_db, Database)
    synced: list[int] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", recording)
    try:
        with trail_db.writer.unit_of_work() as session:
            mode = int(session.connection().exec_driver_sql("PRAGMA synchronous").scalar_one())
    finally:
        monkeypatch.undo()
    return mode == 2 or (mode == 1 and len(synced) == 1)


def test_reads_may_commit_without_waiting_for_the_disk_and_keep_one_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}", reads_wait_for_disk=False)
    assert _waits_for_disk(trail.db, monkeypatch)  # changes, logins and refusals
    assert not _waits_for_disk(trail._reads.db, monkeypatch)  # reads: committed, not flushed
    seqs: list[int] = []
    start = threading.Barrier(6)

    def client(n: int) -> None:
        start.wait()
        for i in range(20):
            action = ("query", "retrieve", "import")[(n + i) % 3]
            event = AuditEvent.IMPORT if action == "import" else AuditEvent.QUERY
            seqs.append(trail.record(event, action, actor=f"client{n}", detail=str(i)))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 121))  # reads and changes interleaved in one chain
    assert trail.verify() == []
    assert isinstance(trail._reads, ReadAppender)
    assert trail._reads.appended > 0 and trail._writer.groups > 0  # both writers were used
    trail.dispose()


def test_a_failed_read_append_leaves_the_trail_appendable(tmp_path: Path) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}", reads_wait_for_disk=False)
    assert isinstance(trail._reads, ReadAppender)
    trail.record(AuditEvent.QUERY, "query", actor="viewer")

    def broken(connection: Connection) -> int:
        values = {"event_code": "110112", "action": "query", "actor": "x", "source": ""}
        trail._append({**values, "outcome": 0, "objects": "{}", "detail": ""}, connection)
        raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError, match="the disk is full"):
        trail._reads.run(broken)
    assert trail.record(AuditEvent.QUERY, "query", actor="viewer") == 2  # rolled back, on
    assert [r.seq for r in trail.records()] == [1, 2] and trail.verify() == []
    trail.dispose()


def test_reads_wait_for_the_disk_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}", reads_wait_for_disk=True)
    trail.record(AuditEvent.QUERY, "query", actor="viewer")
    assert trail._reads is trail._writer and _waits_for_disk(trail.db, monkeypatch)
    trail.dispose()


def test_read_records_survive_a_crash_of_the_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    AuditTrail(url).dispose()  # the table and its guards
    script = (
        "import os, sys\n"
        "from dicomgate.auth.audit import AuditEvent, AuditTrail\n"
        "trail = AuditTrail(sys.argv[1], create=False, reads_wait_for_disk=False)\n"
        "for n in range(30):\n"
        "    trail.record(AuditEvent.QUERY, 'query', actor='viewer', detail=str(n))\n"
        "os._exit(0)  # no clean-up, no checkpoint: as if the process had been killed\n"
    )
    subprocess.run([sys.executable, "-c", script, url], check=True, timeout=120)
    trail = AuditTrail(url, create=False)
    assert [r.detail for r in trail.records()] == [str(n) for n in range(30)]
    assert trail.verify() == []
    trail.dispose()


@pytest.mark.postgres
def test_reads_on_postgres_commit_asynchronously(postgres_url: str) -> None:
    # Options given with the URL still apply to the reads' connection.
    separator = "&" if "?" in postgres_url else "?"
    url = f"{postgres_url}{separator}options=-c%20statement_timeout%3D123456"
    trail = AuditTrail(url, reads_wait_for_disk=False)
    with trail._reads.db.writer.unit_of_work() as session:
        connection = session.connection()
        setting = connection.exec_driver_sql("SHOW synchronous_commit").scalar_one()
        timeout = connection.exec_driver_sql("SHOW statement_timeout").scalar_one()
    assert setting == "off" and timeout == "123456ms"
    with trail.db.writer.unit_of_work() as session:
        assert session.connection().exec_driver_sql("SHOW synchronous_commit").scalar_one() == "on"
    first = trail.record(AuditEvent.QUERY, "query", actor="viewer")
    second = trail.record(AuditEvent.IMPORT, "import", actor="scanner")
    assert second == first + 1 and trail.verify() == []
    trail.dispose()
