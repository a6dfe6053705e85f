"""The engine: claim a job, run its handler, reconcile the outcome, retry or defer.

A job is claimed by one worker at a time (a row update under lock); while it runs, the
worker's heartbeat keeps the claim. A job whose worker died (no heartbeat for ``lease``
seconds) is claimed again and resumes with the items that have no outcome yet.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from dicomgate.archive.models import utcnow
from dicomgate.errors import DicomgateError, PermanentError, RetriableError, StorageError
from dicomgate.intake.receive import Intake
from dicomgate.jobs import store
from dicomgate.jobs.context import JobContext, JobDeferred
from dicomgate.jobs.models import Job
from dicomgate.jobs.registry import handler_for
from dicomgate.jobs.statuses import ItemOutcome, JobStatus

log = logging.getLogger(__name__)

# Called with (job_id, delay in seconds or None) to have the job run (again).
Schedule = Callable[[str, float | None], None]
_EARLY = dt.timedelta(seconds=1)  # a scheduled run may fire this much before resume_at


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a job that raised a retriable error is retried: exponential backoff, capped.

    Parameters
    ----------
    max_attempts
        Runs that may end in a retriable error before the job is FAILED.
    base_delay
        Seconds before the second attempt; doubled for each further one.
    max_delay
        The longest wait between attempts, in seconds.
    """

    max_attempts: int = 5
    base_delay: float = 10.0
    max_delay: float = 600.0

    def delay(self, attempt: int) -> float:
        """Return the wait in seconds after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.base_delay * 2 ** (attempt - 1), self.max_delay))


def new_worker_id() -> str:
    """Return an id naming this process (host, pid) uniquely."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Engine:
    """Runs jobs in this process.

    Parameters
    ----------
    intake
        The stores handlers write to; ``intake.db`` holds the job tables.
    schedule
        Makes a job run again (the queue adapter; a no-op for inline runs).
    lease
        Seconds without a heartbeat after which another worker may take a running job.
    retry
        The retry policy for retriable errors.
    """

    def __init__(
        self,
        intake: Intake,
        schedule: Schedule,
        lease: float = 60.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.intake = intake
        self.db = intake.db
        self.schedule = schedule
        self.lease = lease
        self.retry = retry or RetryPolicy()
        self.worker = new_worker_id()
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    # -- one run -------------------------------------------------------------------------

    def run(self, job_id: str) -> None:
        """Run the job if it can be claimed now; otherwise do nothing (a duplicate task)."""
        claimed = self._claim(job_id)
        if claimed is None:
            return
        with self._lock:
            self._running.add(job_id)
        try:
            self._execute(claimed)
        finally:
            with self._lock:
                self._running.discard(job_id)

    def _claim(self, job_id: str) -> JobContext | None:
        now = utcnow()
        with self.db.unit_of_work() as session:
            job = session.scalars(select(Job).where(Job.id == job_id).with_for_update()).first()
            if job is None or not self._claimable(job, now):
                return None
            resumed = job.started_at is not None
            job.status, job.worker, job.heartbeat_at = JobStatus.RUNNING, self.worker, now
            job.started_at, job.resume_at, job.updated_at = job.started_at or now, None, now
            job.message = "resumed" if resumed else "running"
            store.append_log(session, job_id, f"run started on {self.worker}")
            session.flush()
            return JobContext(job, self.intake, resumed)

    def _claimable(self, job: Job, now: dt.datetime) -> bool:
        status = JobStatus(job.status)
        if status is JobStatus.PENDING:
            return True
        if status is JobStatus.WAITING:
            resume_at = store.as_utc(job.resume_at)
            return resume_at is None or resume_at <= now + _EARLY
        if status is JobStatus.RUNNING:
            beat = store.as_utc(job.heartbeat_at)
            return beat is None or beat < now - dt.timedelta(seconds=self.lease)
        return False

    def _execute(self, ctx: JobContext) -> None:
        try:
            handler_for(ctx.kind)(ctx)
        except JobDeferred as deferred:
            self._defer(ctx.job_id, deferred.when, deferred.message)
        except PermanentError as exc:
            self._fail(ctx.job_id, str(exc))
        except (RetriableError, StorageError) as exc:
            self._retry_later(ctx.job_id, str(exc) or type(exc).__name__)
        except DicomgateError as exc:
            self._fail(ctx.job_id, str(exc))
        except Exception as exc:
            # Only the class name: a message from a library may quote data.
            log.exception("job %s: handler raised %s", ctx.job_id, type(exc).__name__)
            self._fail(ctx.job_id, f"internal error ({type(exc).__name__})")
        else:
            self._reconcile(ctx.job_id)

    # -- endings -------------------------------------------------------------------------

    def _reconcile(self, job_id: str) -> None:
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            if job.cancel_requested:
                self._end(session, job, JobStatus.CANCELLED, "cancelled")
                return
            left = store.mark_pending(
                session, job_id, ItemOutcome.MISSING, "the job ended without an outcome for it"
            )
            store.refresh_counts(session, job_id)
            session.refresh(job)
            status = JobStatus.COMPLETED_WITH_ERRORS if job.errors else JobStatus.SUCCEEDED
            counts = store.outcome_counts(session, job_id)
            summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items())) or "no items"
            if left:
                store.append_log(session, job_id, f"{left} items had no outcome: missing")
            self._end(session, job, status, summary)

    def _fail(self, job_id: str, message: str) -> None:
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            status = JobStatus.CANCELLED if job.cancel_requested else JobStatus.FAILED
            self._end(session, job, status, message)

    def _retry_later(self, job_id: str, message: str) -> None:
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            job.attempts += 1
            if job.cancel_requested:
                self._end(session, job, JobStatus.CANCELLED, "cancelled")
                return
            if job.attempts >= self.retry.max_attempts:
                self._end(
                    session,
                    job,
                    JobStatus.FAILED,
                    f"gave up after {job.attempts} attempts: {message}",
                )
                return
            delay = self.retry.delay(job.attempts)
            text = f"attempt {job.attempts} failed ({message}); retrying in {delay:g} s"
            self._wait(session, job, utcnow() + dt.timedelta(seconds=delay), text)
        self.schedule(job_id, delay)

    def _defer(self, job_id: str, when: dt.datetime, message: str) -> None:
        with self.db.unit_of_work() as session:
            job = store.get_job(session, job_id, lock=True)
            if job.cancel_requested:
                self._end(session, job, JobStatus.CANCELLED, "cancelled")
                return
            self._wait(session, job, when, message)
        self.schedule(job_id, max((when - utcnow()).total_seconds(), 0.0))

    def _wait(self, session: Session, job: Job, when: dt.datetime, message: str) -> None:
        job.status, job.resume_at, job.message = JobStatus.WAITING, when, message
        job.worker, job.updated_at = None, utcnow()
        store.append_log(session, job.id, message)

    def _end(self, session: Session, job: Job, status: JobStatus, message: str) -> None:
        now = utcnow()
        job.status, job.message, job.finished_at, job.updated_at = status, message, now, now
        job.worker, job.resume_at = None, None
        store.append_log(session, job.id, f"{status.value}: {message}")

    # -- heartbeat and recovery ----------------------------------------------------------

    def start(self, schedule_recovered: bool = True) -> None:
        """Start the heartbeat thread; recover jobs left behind (at start: pending ones too)."""
        if schedule_recovered:
            self.recover(include_pending=True)
        self._stop.clear()
        self._beat = threading.Thread(target=self._beat_loop, name="jobs-heartbeat", daemon=True)
        self._beat.start()

    def stop(self) -> None:
        """Stop the heartbeat thread."""
        self._stop.set()
        if self._beat:
            self._beat.join(timeout=10)

    def _beat_loop(self) -> None:
        interval = max(self.lease / 3, 0.2)
        while not self._stop.wait(interval):
            try:
                self.heartbeat()
                self.recover(include_pending=False)
            except Exception:
                log.exception("job heartbeat failed; trying again")

    def heartbeat(self) -> None:
        """Renew the claim on every job this process is running."""
        with self._lock:
            running = list(self._running)
        if not running:
            return
        with self.db.unit_of_work() as session:
            session.execute(
                update(Job)
                .where(Job.id.in_(running), Job.worker == self.worker)
                .values(heartbeat_at=utcnow())
            )

    def recover(self, include_pending: bool) -> list[str]:
        """Schedule jobs whose worker died and waiting jobs whose run was lost; return their ids."""
        now = utcnow()
        stale = now - dt.timedelta(seconds=self.lease)
        lost = [
            Job.status == JobStatus.RUNNING,
            or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < stale),
        ]
        conditions = [
            and_(*lost),
            and_(Job.status == JobStatus.WAITING, Job.resume_at < stale),
        ]
        if include_pending:
            conditions.append(Job.status == JobStatus.PENDING)
            conditions.append(Job.status == JobStatus.WAITING)
        with self.db.reader() as session:
            found = session.execute(
                select(Job.id, Job.status, Job.resume_at).where(or_(*conditions))
            ).all()
        for job_id, status, resume_at in found:
            delay = None
            when = store.as_utc(resume_at)
            if status == JobStatus.WAITING and when is not None and when > now:
                delay = (when - now).total_seconds()
            log.info("job %s: scheduling again (%s)", job_id, status)
            self.schedule(job_id, delay)
        return [row[0] for row in found]
