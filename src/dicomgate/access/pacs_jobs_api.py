"""REST routes that submit PACS jobs: retrieve, CSV mass import, and the import's report."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

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


def create_pacs_jobs_api(pacs: PacsService, jobs: Jobs) -> APIRouter:
    """Return the router of the PACS routes that submit jobs."""
    router = APIRouter(prefix="/api/pacs", tags=["pacs"])

    @router.post("/{node}/retrieve", status_code=202)
    def retrieve(node: str, body: RetrieveIn) -> JSONResponse:
        """Submit a retrieve job; it waits for the node's window and reconciles at the end."""
        params = {"node": node, **body.model_dump()}
        return _accepted(submit_retrieve(jobs, pacs, params))

    @router.post("/{node}/import", status_code=202)
    async def mass_import(
        node: str, request: Request, project: Annotated[str | None, Query()] = None
    ) -> JSONResponse:
        """Submit a CSV mass import (``text/csv`` body); the report is at ``/imports/{job}``."""
        body = await request.body()
        if len(body) > MAX_CSV_BYTES:
            raise InvalidInputError("the CSV is larger than 20 MiB")
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise InvalidInputError("the CSV is not UTF-8") from None
        return _accepted(csv_import.submit_import(jobs, pacs, node, text, project, None))

    @router.get("/imports/{job_id}", responses={200: {"content": {"text/csv": {}}}})
    def report(job_id: str) -> Response:
        """Return the per-row OK / KO report of a mass import as CSV."""
        job = jobs.get(job_id)
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
