"""REST routes of the PACS source and of tag extraction.

``GET /api/pacs`` (nodes with window state and reachability), ``POST /api/pacs/{node}/echo``,
``POST /api/pacs/{node}/find`` (JSON, or CSV with ``format=csv``), the request log, and
``GET /api/projects/{project}/extract`` (streaming CSV of chosen tags).
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dicomgate.access.extract import Extractor, archive_datasets, csv_lines, parse_tag_list
from dicomgate.archive.models import Project
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate, require, require_any
from dicomgate.auth.roles import Caller, Permission
from dicomgate.dicom.query import level_of
from dicomgate.errors import NotFoundError
from dicomgate.jobs.access import can_see
from dicomgate.jobs.models import Job
from dicomgate.sources.pacs.models import RetrieveRequest
from dicomgate.sources.pacs.service import PacsService

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


class FindIn(BaseModel):
    """A C-FIND request: level, matching keys, extra return keys."""

    model_config = ConfigDict(extra="forbid")

    level: str = "STUDY"
    keys: dict[str, str | list[str]] = Field(default_factory=dict)
    return_keys: list[str] = Field(default_factory=list)


class NodeOut(BaseModel):
    """A configured node, its window and reachability."""

    name: str
    ae_title: str
    host: str
    port: int
    retrieve_method: str
    max_associations: int
    max_requests_per_minute: int
    window_open: bool
    next_opening: str
    reachable: bool | None
    detail: str


class RequestOut(BaseModel):
    """One logged C-MOVE / C-GET request with its sub-operation counts."""

    job_id: str | None
    node: str
    method: str
    level: str
    series_uid: str | None
    status: str
    completed: int
    failed: int
    warning: int
    remaining: int
    error: str
    created_at: str


def rows_csv(rows: list[dict[str, str]]) -> str:
    """Return find results as CSV text."""
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def create_pacs_api(pacs: PacsService, gate: Gate) -> APIRouter:
    """Return the router of the PACS routes and the project tag extraction.

    Talking to a PACS (echo, find) needs ``write`` in some project (an importer); its answers
    name patients of every project, so a query is audited like an archive query.
    """
    router = APIRouter(prefix="/api", tags=["pacs"])
    _node_routes(router, pacs, gate)

    @router.get("/pacs/requests", response_model=list[RequestOut])
    def requests(
        request: Request,
        job_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> list[dict[str, Any]]:
        """List logged retrieve requests (newest first), optionally of one job."""
        query = select(RetrieveRequest).order_by(RetrieveRequest.pk.desc()).limit(limit)
        if job_id:
            query = query.where(RetrieveRequest.job_id == job_id)
        with pacs.intake.db.reader() as session:
            _may_list_requests(session.get(Job, job_id) if job_id else None, gate.caller(request))
            rows = session.scalars(query).all()
        return [_request_out(row) for row in rows]

    _extract_route(router, pacs, gate)
    return router


def _may_list_requests(job: Job | None, caller: Caller) -> None:
    # Every job's requests for site admins; one visible job's for anyone else.
    if caller.visible_projects() is None:
        return
    if job is None or not can_see(caller, job):
        raise NotFoundError("no such job")


def _node_routes(router: APIRouter, pacs: PacsService, gate: Gate) -> None:
    @router.get("/pacs", response_model=list[NodeOut])
    def nodes(probe: bool = True) -> list[dict[str, Any]]:
        """List the configured nodes; ``probe`` sends a C-ECHO to each (inside its window)."""
        return [pacs.status(node.name, probe) for node in pacs.settings.pacs.nodes]

    @router.post("/pacs/{node}/echo", response_model=NodeOut)
    def echo(node: str, request: Request) -> dict[str, Any]:
        """C-ECHO one node and return its status."""
        require_any(gate.caller(request), Permission.WRITE)
        return pacs.status(node, probe=True)

    @router.post(
        "/pacs/{node}/find",
        response_model=list[dict[str, str]],
        responses={200: {"content": {"text/csv": {}}}},
    )
    def find(node: str, body: FindIn, request: Request, format: str = "json") -> Any:
        """C-FIND at PATIENT/STUDY/SERIES/IMAGE level with any keys; JSON or ``format=csv``."""
        # The keys are PHI: the record says that a query ran, at which level, not what it sought.
        objects = {"node": node, "level": body.level[:16]}
        with gate.audited(request, AuditEvent.QUERY, "pacs_query", objects) as act:
            require_any(act.caller, Permission.WRITE)
            rows = pacs.find(node, level_of(body.level), body.keys, body.return_keys)
            act.objects["results"] = len(rows)
        if format == "csv":
            return Response(rows_csv(rows), media_type=CSV_MEDIA_TYPE)
        return rows


def _extract_route(router: APIRouter, pacs: PacsService, gate: Gate) -> None:
    @router.get("/projects/{project}/extract", responses={200: {"content": {"text/csv": {}}}})
    def extract(
        project: str,
        request: Request,
        tags: Annotated[str, Query(description="Keyword[:alias[:callback]],...")],
    ) -> StreamingResponse:
        """Stream a CSV of the chosen tags, one row per archived instance of the project."""
        with gate.audited(request, AuditEvent.EXPORT, "extract", {"project": project}) as act:
            missing = f"no project {project!r}"
            require(act.caller, project, Permission.READ, missing)
            extractor = Extractor(parse_tag_list(tags), allow_import=False)
            db = pacs.intake.db
            with db.reader() as session:
                if session.get(Project, project) is None:
                    raise NotFoundError(missing)
        lines = csv_lines(extractor, archive_datasets(db, pacs.intake.blobs, project))
        return StreamingResponse(lines, media_type=CSV_MEDIA_TYPE)


def _request_out(row: RetrieveRequest) -> dict[str, Any]:
    return {
        "job_id": row.job_id,
        "node": row.node,
        "method": row.method,
        "level": row.level,
        "series_uid": row.series_uid,
        "status": row.status,
        "completed": row.completed,
        "failed": row.failed,
        "warning": row.warning,
        "remaining": row.remaining,
        "error": row.error,
        "created_at": row.created_at.isoformat(),
    }
