"""``JobContext``: what a handler sees of its job, and how it reports each item."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from sqlalchemy import select, update

from dicomgate.archive.models import Instance, StagingSession, utcnow
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult
from dicomgate.jobs import store
from dicomgate.jobs.models import Job
from dicomgate.jobs.statuses import ItemOutcome

_INTAKE_TO_ITEM = {
    Outcome.STORED: ItemOutcome.STORED,
    Outcome.REPLACED: ItemOutcome.STORED,
    Outcome.ALREADY_STORED: ItemOutcome.ALREADY_STORED,
    Outcome.CONFLICTING: ItemOutcome.CONFLICTING,
    Outcome.REJECTED: ItemOutcome.REJECTED,
}
_CANCEL_POLL_SECONDS = 0.25


class JobDeferred(BaseException):
    """Raised by ``JobContext.defer_until``; a BaseException so ``except Exception`` passes it."""

    def __init__(self, when: dt.datetime, message: str) -> None:
        super().__init__(message)
        self.when = when
        self.message = message


class JobContext:
    """The running job as its handler sees it.

    Parameters
    ----------
    job
        A snapshot of the job row taken when the run started.
    intake
        The stores ``receive()`` writes to (its ``db`` also holds the job tables).
    resumed
        True when an earlier run of this job started and did not finish (crash or retry).
    stopping
        Set when the worker shuts down; ``cancelled()`` is then True so the handler returns,
        and the engine hands the job back instead of ending it.
    """

    cancel_poll_seconds = _CANCEL_POLL_SECONDS

    def __init__(
        self,
        job: Job,
        intake: Intake,
        resumed: bool = False,
        stopping: threading.Event | None = None,
    ) -> None:
        self.job_id: str = job.id
        self.kind: str = job.kind
        self.params: dict[str, Any] = dict(job.params)
        self.owner: str | None = job.owner
        self.intake = intake
        self.resumed = resumed
        self._db = intake.db
        self._cancel_checked = 0.0
        self._cancelled = False
        self._stopping = stopping or threading.Event()

    @property
    def planned(self) -> bool:
        """Return True once ``expect()`` has committed the expected items of this job."""
        with self._db.reader() as session:
            return bool(session.scalar(select(Job.planned).where(Job.id == self.job_id)))

    def expect(self, keys: Iterable[str]) -> None:
        """Declare expected items; keys already known are kept with their outcome."""
        with self._db.unit_of_work() as session:
            store.add_items(session, self.job_id, keys)

    def pending(self) -> list[str]:
        """Return the expected keys that have no outcome yet."""
        with self._db.reader() as session:
            return store.pending_keys(session, self.job_id)

    def record(
        self,
        key: str,
        outcome: ItemOutcome,
        reason: str = "",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Record one item's outcome; committed before this returns."""
        with self._db.unit_of_work() as session:
            store.record_item(session, self.job_id, key, ItemOutcome(outcome), reason, detail or {})

    def record_many(self, records: Sequence[store.ItemRecord]) -> None:
        """Record many items' outcomes in one transaction; committed before this returns."""
        if records:
            with self._db.unit_of_work() as session:
                store.record_items(session, self.job_id, records)

    def record_receive(self, key: str, result: ReceiveResult) -> None:
        """Record what ``intake.receive()`` did with the item ``key``."""
        rec = self.receive_record(key, result)
        self.record(rec.key, rec.outcome, rec.reason, rec.detail)

    def receive_record(self, key: str, result: ReceiveResult) -> store.ItemRecord:
        """Return the record of what ``intake.receive()`` did with the item ``key``."""
        outcome = _INTAKE_TO_ITEM[result.outcome]
        detail: dict[str, Any] = {"intake": result.outcome.value}
        if result.sop_instance_uid:
            detail["sop_instance_uid"] = result.sop_instance_uid
        if outcome is ItemOutcome.ALREADY_STORED and self._stored_by_this_job(result):
            # A crash came between receive() and record(): this job stored it on its last run.
            outcome, detail["resumed"] = ItemOutcome.STORED, True
        return store.ItemRecord(key, outcome, result.reason, detail)

    def _stored_by_this_job(self, result: ReceiveResult) -> bool:
        if not self.resumed or result.instance_pk is None:
            return False
        query = (
            select(StagingSession.source_key)
            .join(Instance, Instance.staging_pk == StagingSession.pk)
            .where(Instance.pk == result.instance_pk)
        )
        with self._db.reader() as session:
            source_key = session.scalar(query)
        return bool(source_key and source_key.endswith(f":job:{self.job_id}"))

    def origin(self, kind: OriginKind, **fields: Any) -> Origin:
        """Return an Origin for ``kind`` with this job's id (and owner as user) filled in."""
        fields.setdefault("user", self.owner)
        return Origin(kind=OriginKind(kind), job_id=self.job_id, **fields)

    def cancelled(self) -> bool:
        """Return True once asked to cancel this job (or the worker shuts down): stop then.

        The request is read from the database at most every ``cancel_poll_seconds``.
        """
        if self._stopping.is_set():
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._cancel_checked >= self.cancel_poll_seconds:
            self._cancel_checked = now
            with self._db.reader() as session:
                query = select(Job.cancel_requested).where(Job.id == self.job_id)
                self._cancelled = bool(session.scalar(query))
        return self._cancelled

    def log(self, message: str) -> None:
        """Append a line to the job's log (no PHI: UIDs and internal ids only)."""
        with self._db.unit_of_work() as session:
            store.append_log(session, self.job_id, message)

    def set_message(self, text: str) -> None:
        """Set the job's short status message."""
        with self._db.unit_of_work() as session:
            session.execute(
                update(Job).where(Job.id == self.job_id).values(message=text, updated_at=utcnow())
            )

    def defer_until(self, when: dt.datetime, message: str) -> NoReturn:
        """Stop this run; the job becomes WAITING and runs again at ``when`` (UTC if naive)."""
        raise JobDeferred(store.as_utc(when) or utcnow(), message)
