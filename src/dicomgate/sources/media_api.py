"""REST over media on the server (a mounted CD/DVD, a copied folder): list it, import it.

``GET /api/media?path=...`` returns the DICOMDIR tree with counts and every problem;
``POST /api/imports/media`` imports it (optionally one study or series) as a job. Only paths
that resolve, after following links, inside one of ``sources.media_roots`` are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dicomgate.archive.models import Project
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate, require_any, require_import
from dicomgate.auth.roles import Caller, Permission
from dicomgate.db import Database
from dicomgate.errors import InvalidInputError, NotFoundError
from dicomgate.jobs import Jobs
from dicomgate.jobs.api import job_url
from dicomgate.sources.config import SourcesConfig
from dicomgate.sources.dicomdir import (
    MISSING,
    Media,
    SeriesNode,
    StudyNode,
    find_dicomdir,
    read_media,
)
from dicomgate.sources.handlers import MEDIA, media_params

_UID = r"^[0-9.]{1,64}$"


class SeriesOut(BaseModel):
    """One series of the DICOMDIR with its file counts."""

    uid: str
    modality: str
    number: str
    files: int
    missing: int
    refused: int


class StudyOut(BaseModel):
    """One study of the DICOMDIR."""

    uid: str
    date: str
    description: str
    series: list[SeriesOut]


class PatientOut(BaseModel):
    """One patient of the DICOMDIR."""

    patient_id: str
    name: str
    studies: list[StudyOut]


class MediaOut(BaseModel):
    """The DICOMDIR tree and what disagrees with the media."""

    path: str
    patients: list[PatientOut]
    unlisted: list[str]
    problems: list[str]


class MediaImport(BaseModel):
    """Body of ``POST /api/imports/media``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096)
    project: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)
    study: str | None = Field(default=None, pattern=_UID)
    series: str | None = Field(default=None, pattern=_UID)


def _series_out(series: SeriesNode) -> SeriesOut:
    files = series.files
    return SeriesOut(
        uid=series.uid,
        modality=series.modality,
        number=series.number,
        files=len(files),
        missing=sum(f.problem == MISSING for f in files),
        refused=sum(f.problem.startswith("refused") for f in files),
    )


def _study_out(study: StudyNode) -> StudyOut:
    series = [_series_out(se) for se in study.series.values()]
    return StudyOut(uid=study.uid, date=study.date, description=study.description, series=series)


def media_out(media: Media) -> MediaOut:
    """Return the API view of a read DICOMDIR."""
    patients = [
        PatientOut(
            patient_id=patient.patient_id,
            name=patient.name,
            studies=[_study_out(study) for study in patient.studies.values()],
        )
        for patient in media.patients
    ]
    return MediaOut(
        path=str(media.root),
        patients=patients,
        unlisted=[found.key for found in media.unlisted],
        problems=media.problems,
    )


def resolve_media_path(roots: list[Path], path: str) -> Path:
    """Return ``path`` resolved, if it is a folder inside one of ``roots``.

    Raises
    ------
    NotFoundError
        When no media root is configured, or the path is outside them or not a folder.
    """
    if not roots:
        raise NotFoundError("media over REST is not enabled (set sources.media_roots)")
    if "\x00" in path:
        raise NotFoundError("no such media folder below the configured media roots")
    resolved = Path(path).resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise NotFoundError("no such media folder below the configured media roots")
    if not resolved.is_dir():
        raise NotFoundError("no such media folder below the configured media roots")
    return resolved


def submit_media(
    jobs: Jobs, db: Database, config: SourcesConfig, body: MediaImport, caller: Caller
) -> str:
    """Check a media import (the caller needs ``write`` in its project); submit its job."""
    roots = config.media_roots
    root = resolve_media_path(roots, body.path)
    missing = f"no such project: {body.project}"
    require_import(caller, body.project, missing)
    with db.reader() as session:
        if session.scalar(select(Project.id).where(Project.id == body.project)) is None:
            raise NotFoundError(missing)
    if (body.study or body.series) and find_dicomdir(root) is None:
        raise InvalidInputError("study and series filters need a folder holding a DICOMDIR")
    params = media_params(root, body.project, body.study, body.series, config.import_workers)
    return jobs.submit(MEDIA, params, caller.name)


def create_media_router(jobs: Jobs, db: Database, config: SourcesConfig, gate: Gate) -> APIRouter:
    """Return the router of ``GET /api/media`` and ``POST /api/imports/media``."""
    roots = config.media_roots
    router = APIRouter(tags=["imports"])

    @router.get("/api/media", response_model=MediaOut)
    def list_media(
        request: Request, path: Annotated[str, Query(min_length=1, max_length=4096)]
    ) -> MediaOut:
        """Return the DICOMDIR tree of a server-side folder, with missing and unlisted files.

        The tree names patients: only callers who may import somewhere may read it.
        """
        require_any(gate.caller(request), Permission.WRITE)
        return media_out(read_media(resolve_media_path(roots, path)))

    def _import_media(request: Request, body: MediaImport) -> str:
        objects = {"project": body.project, "source": "media"}
        with gate.audited(request, AuditEvent.IMPORT, "import", objects) as act:
            job_id = submit_media(jobs, db, config, body, act.caller)
            act.objects["job_id"] = job_id
        return job_id

    @router.post("/api/imports/media", status_code=202)
    async def import_media(body: MediaImport, request: Request) -> JSONResponse:
        """Import a server-side folder through its DICOMDIR (or a scan) as a job."""
        job_id = await run_in_threadpool(_import_media, request, body)
        url = job_url(job_id)
        return JSONResponse(
            {"job_id": job_id, "url": url}, status_code=202, headers={"Location": url}
        )

    return router
