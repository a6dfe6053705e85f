"""``Jobs``: the facade the app builds once; routers, the CLI and sources use only this."""

from __future__ import annotations

import builtins
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from dicomgate.archive.models import utcnow
from dicomgate.auth.roles import Caller
from dicomgate.errors import ConflictError, InvalidInputError
from dicomgate.intake.receive import Intake
from dicomgate.jobs import access, store
from dicomgate.jobs.config import JobsConfig
from dicomgate.jobs.engine import Engine, RetryPolicy
from dicomgate.jobs.models import Job, JobItem, JobLog
from dicomgate.jobs.queue import Queue
from dicomgate.jobs.registry import handler_for
from dicomgate.jobs.schemas import ItemOut, ItemPage, JobOut, JobPage, LogLine
from dicomgate.jobs.statuses import ERROR_OUTCOMES, JobStatus

log = logging.getLogger(__name__)

_INLINE_POLL = 0.2


class Jobs:
    """Submit, read, cancel and retry jobs; run them through the queue or inline.

    Parameters
    ----------
    intake
        The stores handlers write to; ``intake.db`` holds the job tables.
    config
        The ``jobs`` settings.
    queue
        The queue adapter; ``None`` for a process that runs its jobs inline (the CLI).
    """

    def __init__(self, intake: Intake, config: JobsConfig, queue: Queue | None = None) -> None:
        self.db = intake.db
        self.config = config
        self.queue = queue
        retry = RetryPolicy(config.max_attempts, config.retry_base_delay, config.retry_max_delay)
        self.engine = Engine(intake, self._schedule, config.lease_seconds, retry)
        if queue is not None:
            queue.bind(self.engine.run)

    def _schedule(self, job_id: str, delay: float | None) -> None:
        if self.queue is None:
            return
        try:
            self.queue.enqueue(job_id, delay)
        except Exception as exc:
            # The job row is committed: the recovery pass schedules it once the queue answers.
            log.warning("job %s: could not enqueue (%s)", job_id, type(exc).__name__)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Schedule jobs left behind, start the heartbeat and the worker threads."""
        self.engine.start(schedule_recovered=self.queue is not None)
        if self.queue is not None:
            self.queue.start(self.config.workers)

    def stop(self) -> None:
        """Stop the workers (running jobs stop at their next item, resume later), the heartbeat."""
        self.engine.begin_stop()
        if self.queue is not None:
            self.queue.stop()
        self.engine.stop()

    # -- commands ------------------------------------------------------------------------

    def submit(self, kind: str, params: dict[str, Any], owner: str | None = None) -> str:
        """Create a job of ``kind`` and queue it; return its id.

        Raises
        ------
        NotFoundError
            When no handler is registered for ``kind``.
        InvalidInputError
            When ``params`` cannot be stored as JSON.
        """
        handler_for(kind)
        try:
            params = json.loads(json.dumps(params))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"job parameters must be JSON: {exc}") from None
        with self.db.unit_of_work() as session:
            job_id = store.create_job(session, kind, params, owner)
            store.append_log(session, job_id, f"submitted ({kind})")
        self._schedule(job_id, None)
        return job_id

    def cancel(self, job_id: str, caller: Caller | None = None) -> JobOut:
        """Cancel a job: at once when not running, at the handler's next check otherwise.

        With ``caller``, only a job they may change (``jobs.access``); ``None`` is the server.

        Raises
        ------
        NotFoundError
            When there is no such job (or the caller may not see it).
        ForbiddenError
            When the caller may see the job but not change it.
        ConflictError
            When the job has already ended.
        """
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            access.require_writable(caller, job)
            status = JobStatus(job.status)
            if status.final:
                raise ConflictError(f"the job has already ended ({status.value})")
            job.cancel_requested, job.updated_at = True, utcnow()
            if status is JobStatus.RUNNING:
                job.message = "cancelling"
            else:
                job.status, job.message, job.finished_at = (
                    JobStatus.CANCELLED,
                    "cancelled",
                    utcnow(),
                )
                job.resume_at = None
            store.append_log(session, job_id, "cancel requested")
        return self.get(job_id)

    def retry(self, job_id: str, caller: Caller | None = None) -> JobOut:
        """Run an ended job again for its failed, missing, rejected and conflicting items only.

        Returns the job as queued again (PENDING). With ``caller``, only a job they may change
        (``jobs.access``); ``None`` is the server.

        Raises
        ------
        NotFoundError
            When there is no such job (or the caller may not see it).
        ForbiddenError
            When the caller may see the job but not change it.
        ConflictError
            When the job has not ended, or ended with every item ok.
        """
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            access.require_writable(caller, job)
            status = JobStatus(job.status)
            if not status.final:
                raise ConflictError(f"the job has not ended ({status.value})")
            if status is JobStatus.SUCCEEDED:
                raise ConflictError("nothing to retry: every item succeeded")
            reset = store.reset_items(session, job_id, ERROR_OUTCOMES)
            store.refresh_counts(session, job_id)
            job.status, job.attempts, job.cancel_requested = JobStatus.PENDING, 0, False
            job.finished_at, job.resume_at, job.updated_at = None, None, utcnow()
            job.message = f"retrying {reset} items"
            store.append_log(session, job_id, job.message)
        # The answer is the job as the retry left it: an idle worker, woken at once, may
        # already have it RUNNING by the time a read after the scheduling looks.
        queued = self.get(job_id)
        self._schedule(job_id, None)
        return queued

    def run_inline(self, job_id: str, wait: Callable[[float], None] = time.sleep) -> JobOut:
        """Run a job in this thread until it ends (waiting out deferrals); return its end."""
        while True:
            self.engine.run(job_id)
            job = self.get(job_id)
            if job.final:
                return job
            delay = _INLINE_POLL
            if job.status is JobStatus.WAITING and job.resume_at is not None:
                delay = max((job.resume_at - utcnow()).total_seconds(), 0.0)
            wait(delay)

    # -- reads ---------------------------------------------------------------------------

    def get(self, job_id: str, caller: Caller | None = None, *, counts: bool = True) -> JobOut:
        """Return one job with its counts per outcome (one ``caller`` may see, when given).

        ``counts=False`` leaves the counts out: they take a scan of the job's items, which a
        progress display polling a large import need not pay for on every refresh.

        Raises
        ------
        NotFoundError
            When there is no such job (or the caller may not see it).
        """
        with self.db.reader() as session:
            job = store.get_job(session, job_id)
            access.require_visible(caller, job)
            return JobOut.of(job, store.outcome_counts(session, job_id) if counts else None)

    def list(
        self,
        status: JobStatus | None = None,
        kind: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        offset: int = 0,
        caller: Caller | None = None,
    ) -> JobPage:
        """Return a page of jobs, newest first, filtered by status, kind and owner.

        With ``caller``, only the jobs they may see (``jobs.access``).
        """
        query = select(Job).where(access.visible_jobs(caller))
        for column, value in ((Job.status, status), (Job.kind, kind), (Job.owner, owner)):
            if value is not None:
                query = query.where(column == value)
        with self.db.reader() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
            ).all()
            jobs = [JobOut.of(row) for row in rows]
        return JobPage(total=total, limit=limit, offset=offset, jobs=jobs)

    def items(
        self,
        job_id: str,
        outcome: str | None = None,
        limit: int = 100,
        offset: int = 0,
        caller: Caller | None = None,
    ) -> ItemPage:
        """Return a page of a job's items; ``outcome`` filters (``pending`` for none yet).

        Raises
        ------
        NotFoundError
            When there is no such job.
        """
        query = select(JobItem).where(JobItem.job_id == job_id)
        if outcome == "pending":
            query = query.where(JobItem.outcome.is_(None))
        elif outcome is not None:
            query = query.where(JobItem.outcome == outcome)
        with self.db.reader() as session:
            access.require_visible(caller, store.get_job(session, job_id))
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(query.order_by(JobItem.pk).limit(limit).offset(offset)).all()
            items = [ItemOut.of(row) for row in rows]
        return ItemPage(total=total, limit=limit, offset=offset, items=items)

    def log_lines(
        self, job_id: str, limit: int = 1000, caller: Caller | None = None
    ) -> builtins.list[LogLine]:
        """Return the job's log, oldest line first (the last ``limit`` lines)."""
        query = select(JobLog).where(JobLog.job_id == job_id).order_by(JobLog.pk.desc())
        with self.db.reader() as session:
            access.require_visible(caller, store.get_job(session, job_id))
            rows = session.scalars(query.limit(limit)).all()
            return [LogLine.of(row) for row in reversed(rows)]
