"""REST over jobs: list, read, items, log, a server-sent event stream, cancel and retry.

``create_jobs_router(jobs)`` returns the router the app mounts; errors are the domain errors
that ``access.api_errors`` turns into problem documents (404 unknown job, 409 wrong state).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate
from dicomgate.errors import NotFoundError
from dicomgate.jobs.schemas import ItemPage, JobOut, JobPage, LogLine
from dicomgate.jobs.service import Jobs
from dicomgate.jobs.statuses import ItemOutcome, JobStatus

_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
EVENT_INTERVAL = 0.25  # seconds between progress checks of the event stream
KEEPALIVE_EVERY = 60  # checks between keep-alive comments (15 s)
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000, description="Rows to skip.")]
Name = Annotated[str | None, Query(max_length=128, pattern=r"^[\x20-\x7e]+$")]
ItemFilter = ItemOutcome | Literal["pending"]


def _job_id(value: str) -> str:
    if not _JOB_ID.match(value):
        raise NotFoundError("no such job")
    return value


def job_url(job_id: str) -> str:
    """Return the path of a job's status resource."""
    return f"/api/jobs/{job_id}"


def _event(name: str, job: JobOut, seq: int) -> str:
    return f"id: {seq}\nevent: {name}\ndata: {job.model_dump_json()}\n\n"


async def job_events(jobs: Jobs, job_id: str, request: Request) -> AsyncIterator[str]:
    """Yield ``progress`` events whenever the job changes and one ``end`` event when it ends."""
    last: tuple[object, ...] | None = None
    seq = quiet = 0
    while True:
        job = await run_in_threadpool(jobs.get, job_id)
        state = (job.status, job.done, job.total, job.errors, job.message, job.resume_at)
        if state != last:
            last, seq, quiet = state, seq + 1, 0
            yield _event("progress", job, seq)
        if job.final:
            yield _event("end", job, seq + 1)
            return
        quiet += 1
        if quiet % KEEPALIVE_EVERY == 0:
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_INTERVAL)


def create_jobs_router(jobs: Jobs, gate: Gate) -> APIRouter:
    """Return the ``/api/jobs`` router over ``jobs``.

    A caller sees and changes only the jobs ``jobs.access`` allows them; others answer 404.

    Parameters
    ----------
    jobs
        The jobs facade of the service.
    gate
        The caller of each request.
    """
    router = APIRouter(prefix="/api/jobs", tags=["jobs"])
    _read_routes(router, jobs, gate)

    @router.post("/{job_id}/cancel", response_model=JobOut, status_code=202)
    def cancel_job(job_id: str, request: Request) -> JobOut:
        """Cancel the job (409 when it has already ended)."""
        objects = {"job_id": job_id[:64]}
        with gate.audited(request, AuditEvent.APPLICATION_ACTIVITY, "job_cancel", objects) as act:
            return jobs.cancel(_job_id(job_id), act.caller)

    @router.post("/{job_id}/retry", response_model=JobOut, status_code=202)
    def retry_job(job_id: str, request: Request) -> JobOut:
        """Run the job again for its failed items only (409 unless it ended with errors)."""
        # A retry imports again, so it is recorded as the import it starts.
        with gate.audited(request, AuditEvent.IMPORT, "job_retry", {"job_id": job_id[:64]}) as act:
            return jobs.retry(_job_id(job_id), act.caller)

    return router


def _read_routes(router: APIRouter, jobs: Jobs, gate: Gate) -> None:
    @router.get("", response_model=JobPage)
    def list_jobs(
        request: Request,
        status: JobStatus | None = None,
        kind: Name = None,
        owner: Name = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> JobPage:
        """List the jobs the caller may see, newest first, filtered by status, kind, owner."""
        return jobs.list(status, kind, owner, limit, offset, gate.caller(request))

    @router.get("/{job_id}", response_model=JobOut)
    def get_job(job_id: str, request: Request) -> JobOut:
        """Return one job: status, progress, counts per outcome, message, timestamps."""
        return jobs.get(_job_id(job_id), gate.caller(request))

    @router.get("/{job_id}/items", response_model=ItemPage)
    def job_items(
        job_id: str,
        request: Request,
        outcome: ItemFilter | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> ItemPage:
        """List the job's expected items with their outcome and reason (``pending`` filter)."""
        return jobs.items(_job_id(job_id), outcome, limit, offset, gate.caller(request))

    @router.get("/{job_id}/log", response_model=list[LogLine])
    def job_log(job_id: str, request: Request) -> list[LogLine]:
        """Return the job's log (no PHI), oldest line first."""
        return jobs.log_lines(_job_id(job_id), caller=gate.caller(request))

    @router.get(
        "/{job_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    def job_event_stream(job_id: str, request: Request) -> StreamingResponse:
        """Stream server-sent events: ``progress`` on every change, ``end`` when the job ends."""
        jobs.get(_job_id(job_id), gate.caller(request))  # 404 before the stream starts
        return StreamingResponse(
            job_events(jobs, job_id, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
