"""REST routes that submit PACS jobs: retrieve, CSV mass import, and the import's report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate
from dicomgate.errors import InvalidInputError, NotFoundError
from dicomgate.jobs import Jobs
from dicomgate.sources.pacs import csv_import
from dicomgate.sources.pacs.jobs import submit_retrieve
from dicomgate.sources.pacs.service import PacsService

MAX_CSV_BYTES = 20 * 1024 * 1024


class RetrieveIn(BaseModel):
    """What to retrieve: targets (level, uid, study_uid for a series), project, labels."""

    model_config = ConfigDict(extra="forbid")

    targets: list[dict[str, Any]] = Field(min_length=1)
    project: str | None = None
    subject: str | None = None
    session: str | None = None


def _accepted(job_id: str) -> JSONResponse:
    url = f"/api/jobs/{job_id}"
    return JSONResponse({"job_id": job_id, "url": url}, status_code=202, headers={"Location": url})


def create_pacs_jobs_api(pacs: PacsService, jobs: Jobs, gate: Gate) -> APIRouter:
    """Return the router of the PACS routes that submit jobs (imports: audited)."""
    router = APIRouter(prefix="/api/pacs", tags=["pacs"])

    @router.post("/{node}/retrieve", status_code=202)
    def retrieve(node: str, body: RetrieveIn, request: Request) -> JSONResponse:
        """Submit a retrieve job; it waits for the node's window and reconciles at the end."""
        params = {"node": node, **body.model_dump()}
        objects = {"node": node, "project": body.project, "source": "pacs_retrieve"}
        with gate.audited(request, AuditEvent.IMPORT, "import", objects) as act:
            job_id = submit_retrieve(jobs, pacs, params, act.caller)
            act.objects["job_id"] = job_id
        return _accepted(job_id)

    @router.post("/{node}/import", status_code=202)
    async def mass_import(
        node: str, request: Request, project: Annotated[str | None, Query()] = None
    ) -> JSONResponse:
        """Submit a CSV mass import (``text/csv`` body); the report is at ``/imports/{job}``."""
        objects = {"node": node, "project": project, "source": "pacs_csv_import"}
        with gate.audited(request, AuditEvent.IMPORT, "import", objects) as act:
            body = await request.body()
            if len(body) > MAX_CSV_BYTES:
                raise InvalidInputError("the CSV is larger than 20 MiB")
            try:
                text = body.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InvalidInputError("the CSV is not UTF-8") from None
            job_id = await run_in_threadpool(
                csv_import.submit_import, jobs, pacs, node, text, project, act.caller
            )
            act.objects["job_id"] = job_id
        return _accepted(job_id)

    @router.get("/imports/{job_id}", responses={200: {"content": {"text/csv": {}}}})
    def report(job_id: str, request: Request) -> Response:
        """Return the per-row OK / KO report of a mass import as CSV."""
        job = jobs.get(job_id, gate.caller(request))
        if job.kind != csv_import.KIND:
            raise NotFoundError("no such mass import")
        rows = _rows(pacs, job_id)
        text = csv_import.report_csv(pacs.intake.db, job_id, rows)
        headers = {"Content-Disposition": f'attachment; filename="import-{job_id}.csv"'}
        return Response(text, media_type="text/csv; charset=utf-8", headers=headers)

    return router


def _rows(pacs: PacsService, job_id: str) -> list[dict[str, str]]:
    from dicomgate.jobs.models import Job

    with pacs.intake.db.reader() as session:
        job = session.get(Job, job_id)
        return list((job.params if job else {}).get("rows") or [])
