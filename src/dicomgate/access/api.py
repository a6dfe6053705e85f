"""Read-only HTTP API over the archive index: health, studies, instance files, staging.

``create_api(db, blobs)`` returns the router to mount with ``app.include_router``;
``install_error_handlers(app)`` makes every error an RFC 9457 problem document.
"""

# No `from __future__ import annotations`: FastAPI must evaluate the route annotations, which
# name the caller dependency of the enclosing factory function.

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy.exc import SQLAlchemyError

from dicomgate.access import api_queries as q
from dicomgate.access.api_errors import install_error_handlers
from dicomgate.access.api_schemas import (
    HealthOut,
    StagingPage,
    StagingStatus,
    StudyDetail,
    StudyPage,
)
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.auth.audit import AuditEvent, AuditTrail
from dicomgate.auth.http import client_address
from dicomgate.auth.roles import Caller
from dicomgate.db import Database
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError, NotFoundError, StorageError

__all__ = ["create_api", "install_error_handlers"]

log = logging.getLogger(__name__)

MAX_OFFSET = 1_000_000_000
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip.")]
DICOM_MEDIA_TYPE = "application/dicom"


def _text(value: str | None, name: str, max_length: int) -> str | None:
    """Return a query string value, refusing what no index value can hold."""
    if value is None:
        return None
    if len(value) > max_length or any(ord(c) < 0x20 or c == "\\" for c in value):
        raise InvalidInputError(f"{name} is not a valid value")
    return value


def _uid(value: str, what: str) -> str:
    """Return a UID from a path; a string that is no UID names nothing that exists."""
    if not is_valid_uid(value):
        raise NotFoundError(f"no such {what}")
    return value


def _study_filter(
    patient_id: str | None, study_date: str | None, modality: str | None
) -> q.StudyFilter:
    low, high = q.parse_date_range(study_date) if study_date is not None else (None, None)
    return q.StudyFilter(
        patient_id=_text(patient_id, "PatientID", 64),
        date_from=low,
        date_to=high,
        modality=_text(modality, "Modality", 16),
    )


def create_api(
    db: Database,
    blobs: FilesystemBlobStore,
    current: Callable[[Request], Caller],
    audit: AuditTrail,
) -> APIRouter:
    """Return the read-only API router over ``db`` and ``blobs``.

    Parameters
    ----------
    db
        The index database (only read sessions are used).
    blobs
        The blob store holding the archived instances.
    current
        The dependency that resolves the request's caller (``auth.http``).
    audit
        Where queries and retrievals are recorded.
    """
    router = APIRouter(prefix="/api", tags=["access"])
    Current = Annotated[Caller, Depends(current)]  # noqa: N806  (a type alias, not a value)

    @router.get("/health", response_model=HealthOut)
    def health() -> HealthOut:
        """Report whether the service and its index database answer."""
        try:
            with db.reader() as session:
                q.ping(session)
        except SQLAlchemyError as exc:
            log.warning("health check: index database unavailable (%s)", type(exc).__name__)
            raise StorageError("index database unavailable") from None
        return HealthOut(status="ok", database="ok")

    @router.get("/studies", response_model=StudyPage)
    def studies(
        caller: Current,
        request: Request,
        patient_id: Annotated[str | None, Query(alias="PatientID")] = None,
        study_date: Annotated[str | None, Query(alias="StudyDate")] = None,
        modality: Annotated[str | None, Query(alias="Modality")] = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> StudyPage:
        """Search studies by Patient ID (``*``/``?`` wildcards), date or range, modality."""
        flt = _study_filter(patient_id, study_date, modality)
        projects = caller.visible_projects()
        with db.reader() as session:
            total, rows = q.search_studies(session, flt, limit, offset, projects=projects)
        # The query values are PHI: the record says that a search ran, not what it sought.
        audit.record(
            AuditEvent.QUERY,
            "query",
            actor=caller.name,
            source=client_address(request),
            objects={"results": total},
        )
        return StudyPage(total=total, limit=limit, offset=offset, studies=rows)

    @router.get("/studies/{study_uid}", response_model=StudyDetail)
    def study(study_uid: str, caller: Current) -> StudyDetail:
        """Return one study and its series."""
        with db.reader() as session:
            return q.get_study(
                session, _uid(study_uid, "study"), projects=caller.visible_projects()
            )

    @router.get(
        "/instances/{sop_instance_uid}/file",
        response_class=FileResponse,
        responses={200: {"content": {DICOM_MEDIA_TYPE: {}}}},
    )
    def instance_file(sop_instance_uid: str, caller: Current, request: Request) -> FileResponse:
        """Stream the stored Part-10 file of one instance."""
        uid = _uid(sop_instance_uid, "instance")
        with db.reader() as session:
            key = q.instance_blob_key(session, uid, projects=caller.visible_projects())
        path = blobs.path(key)
        if not path.is_file():
            log.warning("indexed blob %s is missing from the store", key)
            raise NotFoundError("the stored file of this instance is missing")
        audit.record(
            AuditEvent.INSTANCES_ACCESSED,
            "retrieve",
            actor=caller.name,
            source=client_address(request),
            objects={"sop_instance_uid": uid},
        )
        return FileResponse(path, media_type=DICOM_MEDIA_TYPE, filename=f"{uid}.dcm")

    @router.get("/staging", response_model=StagingPage)
    def staging(
        caller: Current,
        status: StagingStatus | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> StagingPage:
        """List staging sessions, optionally in one status."""
        projects = caller.visible_projects()
        with db.reader() as session:
            total, rows = q.list_staging(
                session, status and status.value, limit, offset, projects=projects
            )
        return StagingPage(total=total, limit=limit, offset=offset, sessions=rows)

    return router
