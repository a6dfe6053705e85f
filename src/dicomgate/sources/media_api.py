"""REST over media on the server (a mounted CD/DVD, a copied folder): list it, import it.

``GET /api/media?path=...`` returns the DICOMDIR tree with counts and every problem;
``POST /api/imports/media`` imports it (optionally one study or series) as a job. Only paths
that resolve, after following links, inside one of ``sources.media_roots`` are read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dicomgate.archive.models import Project
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


def _submit(jobs: Jobs, db: Database, config: SourcesConfig, body: MediaImport) -> str:
    roots = config.media_roots
    root = resolve_media_path(roots, body.path)
    with db.reader() as session:
        if session.scalar(select(Project.id).where(Project.id == body.project)) is None:
            raise NotFoundError(f"no such project: {body.project}")
    if (body.study or body.series) and find_dicomdir(root) is None:
        raise InvalidInputError("study and series filters need a folder holding a DICOMDIR")
    params = media_params(root, body.project, body.study, body.series, config.import_workers)
    return jobs.submit(MEDIA, params)


def create_media_router(jobs: Jobs, db: Database, config: SourcesConfig) -> APIRouter:
    """Return the router of ``GET /api/media`` and ``POST /api/imports/media``."""
    roots = config.media_roots
    router = APIRouter(tags=["imports"])

    @router.get("/api/media", response_model=MediaOut)
    def list_media(path: Annotated[str, Query(min_length=1, max_length=4096)]) -> MediaOut:
        """Return the DICOMDIR tree of a server-side folder, with missing and unlisted files."""
        return media_out(read_media(resolve_media_path(roots, path)))

    @router.post("/api/imports/media", status_code=202)
    async def import_media(body: MediaImport) -> JSONResponse:
        """Import a server-side folder through its DICOMDIR (or a scan) as a job."""
        job_id = await run_in_threadpool(_submit, jobs, db, config, body)
        url = job_url(job_id)
        return JSONResponse(
            {"job_id": job_id, "url": url}, status_code=202, headers={"Location": url}
        )

    return router
