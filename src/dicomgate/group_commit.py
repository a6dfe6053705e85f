"""Group commit: index writes of concurrent threads share one transaction and one commit.

A thread that hands in a unit of work while no group is being written becomes the leader: once
it holds the write lock, it takes every waiting unit of work (its own first), runs each inside
its own SAVEPOINT (a lone unit of work needs none: its failure rolls the transaction back) of
one transaction, commits once, then wakes the others with their results and hands the lead to
the next waiting thread. While a commit (and its fsync) is in flight, newcomers queue up and go
into the next group, so N concurrent associations pay for about one commit instead of N.

The savepoints are the driver's (``raw_sql.savepoint``), much cheaper than SQLAlchemy's; when a
unit's failure takes the whole transaction with it (a failed ORM flush does), the group runs
again in a new transaction with SQLAlchemy's savepoints, which contain such a failure.

Guarantees, for every unit of work:

- ``run()`` returns only after the commit that holds the work returned; the result is durable.
- A unit of work that raises is rolled back to its savepoint alone; the others of its group go on,
  and ``run()`` re-raises that exception in the thread that handed the work in.
- When the commit itself fails, nothing of the group was committed, and ``run()`` raises the
  commit's exception in every thread of the group.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from dicomgate.db import Database
from dicomgate.raw_sql import TransactionLostError, savepoint

T = TypeVar("T")


class Job(Generic[T]):
    """One unit of work handed in; ``outcome()`` returns its result or raises its error."""

    __slots__ = ("done", "error", "result", "wake", "work")

    def __init__(self, work: Callable[[Session], T]) -> None:
        self.work = work
        self.wake = threading.Event()
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        """Return the result, or raise the error of the work or of its commit."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class GroupCommit:
    """Run units of work from many threads in shared transactions.

    Parameters
    ----------
    db
        The index; each group is one unit of work of ``db.writer`` (a kept connection).
    max_group
        The most units of work one transaction holds.
    """

    def __init__(self, db: Database, max_group: int = 64) -> None:
        self.db = db
        self.max_group = max_group
        self._lock = threading.Lock()
        self._queue: deque[Job[Any]] = deque()
        self._leading = False
        self.groups = 0  # transactions committed or attempted, for tests and statistics

    @property
    def waiting(self) -> int:
        """Return how many units of work wait for the next group."""
        with self._lock:
            return len(self._queue)

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a shared transaction; return its result after the commit.

        ``work`` must not commit, and must leave nothing behind when it raises: it runs inside
        a savepoint that is rolled back then.
        """
        return self.run_all([work])[0].outcome()

    def run_all(self, works: Sequence[Callable[[Session], T]]) -> list[Job[T]]:
        """Run several units of work, in order, in as few shared transactions as they fit.

        Returns once all are committed (or failed); each job's ``outcome()`` returns its result
        or raises its exception.
        """
        jobs: list[Job[T]] = [Job(work) for work in works]
        with self._lock:
            self._queue.extend(jobs)
            if not self._leading:
                self._leading = True
                jobs[0].wake.set()  # no group is being written: this thread leads
        for job in jobs:
            job.wake.wait()  # set when the job is done, or when this thread is to lead
            if not job.done:
                self._lead()
        return jobs

    def _lead(self) -> None:
        group: list[Job[Any]] = []
        try:
            self._write(group)
        finally:
            for job in group:
                job.done = True
                job.wake.set()
            with self._lock:
                if self._queue:
                    self._queue[0].wake.set()  # the next waiting thread leads the next group
                else:
                    self._leading = False

    def _take_group(self) -> list[Job[Any]]:
        with self._lock:
            size = min(len(self._queue), self.max_group)
            return [self._queue.popleft() for _ in range(size)]

    def _write(self, group: list[Job[Any]]) -> None:
        """Write and commit the next group, which ``group`` is filled with.

        The group is taken once the write lock is held: units of work handed in while another
        writer (a receiving process of the same index) held it join this transaction instead
        of waiting for the next one.
        """
        self.groups += 1
        try:
            with self.db.writer.unit_of_work() as session:
                group.extend(self._take_group())
                if len(group) == 1:
                    # Alone in its transaction, a unit of work needs no savepoint: when it
                    # raises, the whole transaction is rolled back (two statements saved for
                    # every instance a lone association sends).
                    group[0].result = group[0].work(session)
                    return
                _run_each(group, session, savepoint)
        except TransactionLostError:
            self._write_again(group)
        except BaseException as exc:  # the commit (or the transaction) failed: nothing is stored
            if not group:  # the transaction never began: its group fails with it
                group.extend(self._take_group())
            _fail(group, exc)

    def _write_again(self, group: list[Job[Any]]) -> None:
        """Run a group whose transaction was lost once more, each unit in the session's savepoint.

        SQLAlchemy's own savepoints cost more, but a failed ORM flush inside one undoes that
        savepoint only. Every unit of the group runs again: a unit of work only writes in its
        session, and nothing of the lost transaction was committed.
        """
        for job in group:
            job.result, job.error = None, None
        self.groups += 1
        try:
            with self.db.writer.unit_of_work() as session:
                _run_each(group, session, Session.begin_nested)
        except BaseException as exc:
            _fail(group, exc)


def _run_each(
    group: list[Job[Any]],
    session: Session,
    savepoint: Callable[[Session], AbstractContextManager[Any]],
) -> None:
    """Run every unit of ``group`` in its own ``savepoint(session)``; a failure is its own."""
    for job in group:
        try:
            with savepoint(session):
                job.result = job.work(session)
        except TransactionLostError:
            raise
        except Exception as exc:  # this job alone failed; its savepoint is undone
            job.error = exc


def _fail(group: list[Job[Any]], exc: BaseException) -> None:
    """Fail every unit of ``group`` that has no error of its own with ``exc``."""
    for job in group:
        job.error = job.error or exc
        job.result = None
