"""Pydantic views of jobs for the REST API and the CLI (the tables stay inside)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from dicomgate.jobs.models import Job, JobItem, JobLog
from dicomgate.jobs.statuses import JobStatus
from dicomgate.jobs.store import as_utc


class JobOut(BaseModel):
    """One job: status, progress (done of total, errors), message and timestamps."""

    id: str
    kind: str
    status: JobStatus
    owner: str | None
    params: dict[str, Any]
    message: str
    total: int
    done: int
    errors: int
    attempts: int
    cancel_requested: bool
    resume_at: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime
    counts: dict[str, int] | None = None

    @classmethod
    def of(cls, job: Job, counts: dict[str, int] | None = None) -> JobOut:
        """Build the view of a job row."""
        return cls(
            id=job.id,
            kind=job.kind,
            status=JobStatus(job.status),
            owner=job.owner,
            params=job.params,
            message=job.message,
            total=job.total,
            done=job.done,
            errors=job.errors,
            attempts=job.attempts,
            cancel_requested=job.cancel_requested,
            resume_at=as_utc(job.resume_at),
            created_at=as_utc(job.created_at) or job.created_at,
            started_at=as_utc(job.started_at),
            finished_at=as_utc(job.finished_at),
            updated_at=as_utc(job.updated_at) or job.updated_at,
            counts=counts,
        )

    @property
    def final(self) -> bool:
        """Return True when the job has ended."""
        return self.status.final


class JobPage(BaseModel):
    """A page of jobs, newest first."""

    total: int
    limit: int
    offset: int
    jobs: list[JobOut]


class ItemOut(BaseModel):
    """One expected item and its outcome (``None`` while pending)."""

    key: str
    outcome: str | None
    reason: str
    detail: dict[str, Any]
    updated_at: dt.datetime

    @classmethod
    def of(cls, item: JobItem) -> ItemOut:
        """Build the view of an item row."""
        return cls(
            key=item.key,
            outcome=item.outcome,
            reason=item.reason,
            detail=item.detail,
            updated_at=as_utc(item.updated_at) or item.updated_at,
        )


class ItemPage(BaseModel):
    """A page of a job's items, in the order they were expected."""

    total: int
    limit: int
    offset: int
    items: list[ItemOut]


class LogLine(BaseModel):
    """One line of a job's log."""

    at: dt.datetime
    message: str

    @classmethod
    def of(cls, line: JobLog) -> LogLine:
        """Build the view of a log row."""
        return cls(at=as_utc(line.created_at) or line.created_at, message=line.message)
