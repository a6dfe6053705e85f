"""Group commit on SQLite and PostgreSQL: shared transactions, savepoint per unit of work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomgate.archive.index import log_change
from dicomgate.archive.models import Change, Project
from dicomgate.db import Database
from dicomgate.group_commit import GroupCommit


def _logged(pk: int) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        log_change(session, "test", "test", pk)
        return pk

    return work


_LEADING = threading.Event()


def _holding(committer: GroupCommit, others: int, work: Callable[[Session], Any]) -> Any:
    """Wrap ``work`` so that it waits until ``others`` units of work queue behind it."""

    def held(session: Session) -> Any:
        _LEADING.set()
        deadline = time.monotonic() + 30
        while committer.waiting < others and time.monotonic() < deadline:
            time.sleep(0.005)
        return work(session)

    return held


def _run_all(committer: GroupCommit, works: list[Callable[[Session], Any]]) -> list[Any]:
    """Run the first work, then the rest from their own threads while it holds the lead."""
    results: list[Any] = [None] * len(works)

    def call(i: int) -> None:
        try:
            results[i] = committer.run(works[i])
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    _LEADING.clear()
    threads[0].start()
    assert _LEADING.wait(30)  # the first one leads, inside its transaction
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def _changes(db: Database) -> list[int]:
    with db.reader() as session:
        query = select(Change.resource_pk).where(Change.change_type == "test")
        return sorted(session.scalars(query))


def test_concurrent_units_share_one_commit(database: Database) -> None:
    committer = GroupCommit(database)
    works = [_holding(committer, 7, _logged(0)), *(_logged(i) for i in range(1, 8))]
    assert _run_all(committer, works) == list(range(8))
    assert _changes(database) == list(range(8))
    assert committer.groups == 2  # the leader's own group, then all seven that queued behind it


def test_a_failing_unit_is_undone_alone(database: Database) -> None:
    committer = GroupCommit(database)

    def failing(session: Session) -> int:
        log_change(session, "test", "test", 99)
        raise ValueError("this unit of work fails")

    works = [_holding(committer, 3, _logged(0)), _logged(1), failing, _logged(3)]
    results = _run_all(committer, works)
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], ValueError)
    assert _changes(database) == [0, 1, 3]  # the failing unit's own write was rolled back


def test_a_failing_commit_fails_every_unit_of_its_group(database: Database) -> None:
    # A deferred foreign key is checked at COMMIT: a real commit failure on both databases.
    with database.engine.begin() as conn:
        conn.execute(
            text(
                "CREATE TABLE commit_guard (project_id VARCHAR(64) "
                "REFERENCES projects(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    committer = GroupCommit(database)

    def breaks_the_commit(session: Session) -> int:
        session.execute(text("INSERT INTO commit_guard VALUES ('no such project')"))
        return 2

    first = _holding(committer, 3, _logged(0))
    results = _run_all(committer, [first, _logged(1), breaks_the_commit, _logged(3)])
    assert results[0] == 0  # the first group committed alone before the others queued
    assert all(isinstance(r, Exception) for r in results[1:]), results
    assert _changes(database) == [0]
    with database.reader() as session:
        assert session.scalar(select(func.count()).select_from(text("commit_guard"))) == 0


def test_run_after_a_failed_group_still_commits(database: Database) -> None:
    committer = GroupCommit(database)
    with pytest.raises(ValueError, match="boom"):
        committer.run(lambda session: (_ for _ in ()).throw(ValueError("boom")))
    assert committer.run(_logged(5)) == 5
    assert _changes(database) == [5]


def test_run_all_commits_in_order_and_reports_each_unit(database: Database) -> None:
    committer = GroupCommit(database)

    def failing(session: Session) -> int:
        log_change(session, "test", "test", 99)
        raise ValueError("this unit fails")

    jobs = committer.run_all([_logged(0), failing, _logged(2)])
    assert jobs[0].outcome() == 0 and jobs[2].outcome() == 2
    with pytest.raises(ValueError, match="this unit fails"):
        jobs[1].outcome()
    assert _changes(database) == [0, 2]
    assert committer.groups == 1


def _project(database: Database, project_id: str) -> None:
    with database.writer.unit_of_work() as session:
        session.add(Project(id=project_id))


def _projects(database: Database) -> list[str]:
    with database.reader() as session:
        return sorted(session.scalars(select(Project.id)))


def _insert_statement(session: Session) -> None:
    session.execute(text("INSERT INTO projects (id, name, description) VALUES ('taken', '', '')"))


def _insert_orm(session: Session) -> None:
    session.add(Project(id="taken"))
    session.flush()


@pytest.mark.parametrize(
    ("insert", "groups"),
    [
        # On PostgreSQL the failed INSERT aborts the transaction until the savepoint is undone.
        (_insert_statement, 1),
        # A failed flush rolls the session's whole transaction back, the units before it
        # with it: the group runs again in a new transaction (SQLAlchemy's savepoints).
        (_insert_orm, 2),
    ],
)
def test_a_unit_failing_on_a_duplicate_key_is_undone_alone(
    database: Database, insert: Callable[[Session], None], groups: int
) -> None:
    _project(database, "taken")
    committer = GroupCommit(database)

    def duplicate(session: Session) -> int:
        log_change(session, "test", "test", 99)
        insert(session)
        return 1

    jobs = committer.run_all([_logged(0), duplicate, _logged(2)])
    assert jobs[0].outcome() == 0 and jobs[2].outcome() == 2
    with pytest.raises(IntegrityError):
        jobs[1].outcome()
    assert _changes(database) == [0, 2]
    assert committer.groups == groups


def test_rows_a_failed_unit_wrote_are_forgotten_by_the_session(database: Database) -> None:
    # The failed unit's flushed Project is rolled back in the database; the session must not
    # keep it, or the next unit's row with the same key would clash with a ghost.
    committer = GroupCommit(database)
    kept: list[Project] = []  # held, as a traceback's frames hold a unit's objects

    def writes_then_fails(session: Session) -> int:
        kept.append(Project(id="again"))
        session.add(kept[-1])
        session.flush()
        raise ValueError("fails after its flush")

    def writes(session: Session) -> int:
        session.add(Project(id="again"))
        session.flush()
        return 1

    jobs = committer.run_all([_logged(0), writes_then_fails, writes])
    assert jobs[0].outcome() == 0 and jobs[2].outcome() == 1
    with pytest.raises(ValueError, match="after its flush"):
        jobs[1].outcome()
    assert _projects(database) == ["again"]
    assert committer.groups == 1


def test_a_lone_failing_unit_leaves_nothing_and_the_next_commits(database: Database) -> None:
    committer = GroupCommit(database)

    def failing(session: Session) -> int:
        log_change(session, "test", "test", 98)
        raise ValueError("alone and failing")

    with pytest.raises(ValueError, match="alone and failing"):
        committer.run(failing)
    assert _changes(database) == []  # no savepoint: the whole transaction was rolled back
    assert committer.run(_logged(4)) == 4
    assert _changes(database) == [4]


def test_the_dedicated_writer_keeps_its_connection_and_replaces_a_broken_one(
    database: Database,
) -> None:
    writer = database.writer
    with writer.unit_of_work() as session:
        log_change(session, "test", "test", 1)
        kept = session.connection()
    with writer.unit_of_work() as session:
        assert session.connection() is kept  # no pool round trip between units of work
        log_change(session, "test", "test", 2)
    with pytest.raises(RuntimeError), writer.unit_of_work() as session:
        log_change(session, "test", "test", 3)
        session.connection().invalidate()  # as after a lost server connection
        raise RuntimeError("the connection broke")
    with writer.unit_of_work() as session:
        assert session.connection() is not kept
        log_change(session, "test", "test", 4)
    assert _changes(database) == [1, 2, 4]


def test_the_dedicated_writer_serves_two_units_at_once(database: Database) -> None:
    inside = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def unit(pk: int) -> None:
        try:
            with database.writer.unit_of_work() as session:
                log_change(session, "test", "test", pk)
                if not database.is_sqlite:  # SQLite's write lock lets one in at a time
                    inside.wait()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=unit, args=(pk,)) for pk in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(_changes(database)) == [1, 2]


def test_pending_orm_rows_are_flushed_before_the_commit(database: Database) -> None:
    with database.writer.unit_of_work() as session:
        session.add(Change(change_type="test", resource_type="test", resource_pk=9))
    assert _changes(database) == [9]


def test_units_handed_in_while_another_writer_holds_the_lock_join_the_group(
    database: Database,
) -> None:
    if not database.is_sqlite:
        pytest.skip("only SQLite writers queue on dicomgate's write lock (PostgreSQL has none)")
    other_process = Database(database.url)  # its own flock: as a second receiving process
    committer = GroupCommit(database)
    results: list[Any] = []

    def call(pk: int) -> None:
        results.append(committer.run(_logged(pk)))

    threads = [threading.Thread(target=call, args=(pk,)) for pk in range(4)]
    try:
        with other_process.unit_of_work():
            threads[0].start()  # leads, and waits for the lock
            deadline = time.monotonic() + 30
            while committer.groups == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            for thread in threads[1:]:
                thread.start()
            while committer.waiting < 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert committer.waiting == 4  # the leader's unit too: nothing taken yet
        for thread in threads:
            thread.join(60)
    finally:
        other_process.dispose()
    assert sorted(results) == [0, 1, 2, 3]
    assert committer.groups == 1  # one transaction, one commit for all four
    assert _changes(database) == [0, 1, 2, 3]


def test_a_transaction_that_cannot_begin_fails_its_group_and_the_next_one_leads(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    committer = GroupCommit(database)

    def cannot_begin() -> Any:
        raise OSError("the lock file cannot be opened")

    monkeypatch.setattr(database.writer, "unit_of_work", cannot_begin)
    with pytest.raises(OSError, match="lock file"):
        committer.run(_logged(1))
    assert committer.waiting == 0  # the failed unit left the queue
    monkeypatch.undo()
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(committer.run(_logged(2))))
    thread.start()
    thread.join(30)
    assert done == [2]  # no thread is left believing it leads
    assert _changes(database) == [2]
