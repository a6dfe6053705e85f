"""HTTP upload: ``POST /api/imports/upload?project=P`` with multipart files or one archive.

The body streams to a spool folder on disk as it arrives (never held in memory): multipart
parts become one file each under a generated name (the client's file name is only the item
key), any other body is one file, read later as a zip / tar / tar.gz or a single DICOM file.
The spool is fsynced before the job is submitted; the answer is 202 with the job's URL.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from dicomgate.archive.models import Project
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Acting, Gate, require_import
from dicomgate.db import Database
from dicomgate.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from dicomgate.jobs import Jobs
from dicomgate.jobs.api import job_url
from dicomgate.sources.archives import EntryKeys
from dicomgate.sources.config import SourcesConfig
from dicomgate.sources.handlers import BODY, MANIFEST, UPLOAD

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

ProjectId = Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]+$", max_length=64)]
_SINGLE_FILE = {"application/dicom"}


class _Spool:
    """One upload's folder: body or parts, counted against the size cap as they arrive."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.size = 0
        self.files: list[dict[str, str]] = []
        self._keys = EntryKeys()
        root.mkdir(parents=True)

    def count(self, chunk: bytes) -> None:
        """Count ``chunk`` against the size cap."""
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLargeError(f"the upload is larger than {self.max_bytes} bytes")

    def new_file(self, client_name: str) -> BinaryIO:
        """Open the spool file of the next part; the client's name only becomes its key."""
        name = f"part-{len(self.files) + 1:06d}"
        self.files.append({"file": name, "key": self._keys(client_name or name)})
        return (self.root / name).open("wb")

    def finish(self, archive: bool) -> None:
        """Write the manifest and make every spooled byte durable."""
        manifest = self.root / MANIFEST
        manifest.write_text(json.dumps({"archive": archive, "files": self.files}))
        for path in self.root.iterdir():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(self.root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


async def _spool_body(request: Request, spool: _Spool) -> None:
    spool.files.append({"file": BODY, "key": BODY})
    with (spool.root / BODY).open("wb") as out:
        async for chunk in request.stream():
            spool.count(chunk)
            out.write(chunk)


class _Parts:
    """python-multipart callbacks writing each file part straight to its spool file."""

    def __init__(self, spool: _Spool) -> None:
        self.spool = spool
        self.current: BinaryIO | None = None
        self.headers: dict[bytes, bytes] = {}
        self.field = b""
        self.value = b""

    def callbacks(self) -> MultipartCallbacks:
        """Return the parser callbacks bound to this upload."""
        return {
            "on_part_begin": self.headers.clear,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.field.lower()] = self.value
        self.field = self.value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        raw = options.get(b"filename")
        if raw is not None:  # a plain form field is not data
            self.current = self.spool.new_file(raw.decode("utf-8", "replace"))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.current is not None:
            self.current.write(data[start:end])

    def on_part_end(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


async def _spool_multipart(request: Request, spool: _Spool, content_type: str) -> None:
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InvalidInputError("multipart body without a boundary")
    parts = _Parts(spool)
    parser = MultipartParser(boundary, parts.callbacks())
    try:
        async for chunk in request.stream():
            spool.count(chunk)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidInputError(f"malformed multipart body: {exc}") from None
    finally:
        parts.on_part_end()
    if not spool.files:
        raise InvalidInputError("the multipart body holds no file part")


def _check_project(db: Database, act: Acting, project: str) -> None:
    missing = f"no such project: {project}"
    require_import(act.caller, project, missing)
    with db.reader() as session:
        if session.scalar(select(Project.id).where(Project.id == project)) is None:
            raise NotFoundError(missing)


async def _spool_request(request: Request, target: _Spool) -> bool:
    """Spool the body; return whether it is one archive (not multipart, not one DICOM file)."""
    content_type = request.headers.get("content-type", "application/octet-stream")
    try:
        multipart = content_type.lower().startswith("multipart/form-data")
        if multipart:
            await _spool_multipart(request, target, content_type)
        else:
            await _spool_body(request, target)
        archive = not multipart and content_type.split(";")[0].strip() not in _SINGLE_FILE
        await run_in_threadpool(target.finish, archive)
    except BaseException:
        shutil.rmtree(target.root, ignore_errors=True)
        raise
    return archive


def create_upload_router(
    jobs: Jobs, db: Database, config: SourcesConfig, spool: Path, gate: Gate
) -> APIRouter:
    """Return the router of ``POST /api/imports/upload``.

    Parameters
    ----------
    jobs
        The jobs facade.
    db
        The index (to check that the project exists).
    config
        The ``sources`` settings (size cap, archive caps).
    spool
        The folder uploads are spooled into until their job has read them.
    gate
        The caller (who needs ``write`` in the project, checked before the body is read) and
        the audit trail.
    """
    router = APIRouter(tags=["imports"])

    @router.post("/api/imports/upload", status_code=202)
    async def upload(request: Request, project: ProjectId) -> JSONResponse:
        """Upload DICOM files (multipart) or one zip / tar / tar.gz; imported as a job."""
        objects = {"project": project, "source": "upload"}
        with gate.audited(request, AuditEvent.IMPORT, "import", objects) as act:
            await run_in_threadpool(_check_project, db, act, project)
            target = _Spool(spool / uuid.uuid4().hex, config.max_upload_bytes)
            archive = await _spool_request(request, target)
            params = {
                "spool": str(target.root),
                "project": project,
                "archive": archive,
                "limits": config.archive.model_dump(),
                "bytes": target.size,
                "workers": config.import_workers,
            }
            job_id = await run_in_threadpool(jobs.submit, UPLOAD, params, act.caller.name)
            act.objects.update(job_id=job_id, bytes=target.size)
        url = job_url(job_id)
        return JSONResponse(
            {"job_id": job_id, "url": url}, status_code=202, headers={"Location": url}
        )

    return router
