"""HTTP entry points of the server-side inbox: ``POST /api/imports`` and the XNAT form.

The XNAT form (``POST /data/services/import?import-handler=inbox&PROJECT_ID=...``) is kept
so that existing scripts work unchanged; it answers with the job's status URL as text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate
from dicomgate.db import Database
from dicomgate.errors import InvalidInputError
from dicomgate.jobs import Jobs
from dicomgate.jobs.api import job_url
from dicomgate.sources.inbox import InboxImport, submit_inbox_import

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _flag(value: str | None, name: str) -> bool:
    text = (value or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInputError(f"{name} must be true or false")


def _xnat_request(values: dict[str, str]) -> InboxImport:
    handler = values.get("import-handler", "")
    if handler != "inbox":
        raise InvalidInputError("import-handler must be inbox (the only handler served here)")
    fields = {
        "path": values.get("path", ""),
        "project": values.get("PROJECT_ID", ""),
        "subject": values.get("SUBJECT_ID") or None,
        "session": values.get("EXPT_LABEL") or None,
        "cleanup": _flag(values.get("cleanupAfterImport"), "cleanupAfterImport"),
    }
    try:
        return InboxImport.model_validate(fields)
    except ValidationError as exc:
        names = {"path": "path", "project": "PROJECT_ID", "subject": "SUBJECT_ID"}
        bad = sorted({names.get(str(e["loc"][0]), "EXPT_LABEL") for e in exc.errors()})
        raise InvalidInputError(f"invalid or missing: {', '.join(bad)}") from None


def _submit(
    gate: Gate, request: Request, jobs: Jobs, db: Database, root: Path | None, body: InboxImport
) -> str:
    objects = {"project": body.project, "source": "inbox"}
    with gate.audited(request, AuditEvent.IMPORT, "import", objects) as act:
        job_id = submit_inbox_import(jobs, db, root, body, act.caller)
        act.objects["job_id"] = job_id
    return job_id


def create_inbox_router(jobs: Jobs, db: Database, inbox_root: Path | None, gate: Gate) -> APIRouter:
    """Return the router of ``POST /api/imports`` and the XNAT import form.

    Parameters
    ----------
    jobs
        The jobs facade.
    db
        The index (to check that the project exists).
    inbox_root
        The configured ``jobs.inbox_root`` (``None``: the inbox is off, every call is 404).
    gate
        The caller (who needs ``write`` in the project) and the audit trail.
    """
    router = APIRouter(tags=["imports"])

    @router.post("/api/imports", status_code=202, responses={202: {"description": "job queued"}})
    def import_from_inbox(body: InboxImport, request: Request) -> JSONResponse:
        """Import a folder or file below ``<inbox_root>/<project>/`` as a job."""
        job_id = _submit(gate, request, jobs, db, inbox_root, body)
        url = job_url(job_id)
        return JSONResponse(
            {"job_id": job_id, "url": url}, status_code=202, headers={"Location": url}
        )

    @router.post("/data/services/import", response_class=PlainTextResponse)
    async def xnat_import(
        request: Request,
        import_handler: Annotated[str | None, Query(alias="import-handler")] = None,
    ) -> Response:
        """XNAT-compatible inbox import; parameters in the query or a form body."""
        values = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = await request.form()
            values.update({k: v for k, v in form.items() if isinstance(v, str)})
        body = _xnat_request(values)
        job_id = await run_in_threadpool(_submit, gate, request, jobs, db, inbox_root, body)
        url = job_url(job_id)
        return PlainTextResponse(url + "\n", headers={"Location": url})

    return router
