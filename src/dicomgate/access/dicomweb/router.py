"""The ``/dicomweb`` router: QIDO-RS searches, WADO-RS, WADO-URI and the capabilities document.

``create_dicomweb(db, blobs, settings)`` returns the router (STOW-RS is a source and lives in
``dicomgate.sources.stow``; ``app.py`` mounts both under ``/dicomweb``).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from dicomgate.access.dicomweb import rendered, wado
from dicomgate.access.dicomweb.attributes import ATTRIBUTES, Level
from dicomgate.access.dicomweb.config import DicomwebSettings
from dicomgate.access.dicomweb.context import DICOM_JSON, Context, scope_of
from dicomgate.access.dicomweb.negotiate import choose_single, parse_accept
from dicomgate.access.dicomweb.qido import Within, search
from dicomgate.access.dicomweb.qido_params import parse_query
from dicomgate.access.dicomweb.wado import Uid
from dicomgate.access.dicomweb.wado_uri import add_wado_uri
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.auth.audit import AuditEvent, AuditTrail
from dicomgate.auth.request_audit import record_request
from dicomgate.db import Database
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError
from dicomgate.httputil import base_url

WARNING = "Warning"


def within_path(study: str | None = None, series: str | None = None) -> Within:
    """Return the study and series a search's path names, refusing what is not a UID."""
    for uid in (study, series):
        if uid is not None and not is_valid_uid(uid):
            raise InvalidInputError("a path segment is not a UID")
    return Within(study, series)


def qido(ctx: Context, request: Request, level: Level, within: Within) -> Response:
    """Answer one QIDO-RS search from the index."""
    choose_single(parse_accept(request.headers.get("accept")), [DICOM_JSON, "application/json"])
    max_limit = ctx.settings.qido_max_limit
    query, capped = parse_query(level, request.query_params.multi_items(), max_limit)
    limit = query.limit if query.limit is not None else max_limit
    with ctx.db.read_connection() as connection:
        results, more = search(connection, query, within, scope_of(request), limit)
    body = json.dumps(results, separators=(",", ":")).replace(
        "{+base}", base_url(request, ctx.settings.public_url)
    )
    # The query values are PHI: the record says that a search ran and what it found.
    objects = {"level": level.name, "results": len(results)}
    record_request(ctx.audit, request, AuditEvent.QUERY, "query", objects)
    response = Response(body.encode(), media_type=DICOM_JSON)
    warnings = []
    if query.fuzzy:
        warnings.append('299 dicomgate "fuzzymatching is not supported; matching is exact"')
    if capped or (more and query.limit is None):
        warnings.append(
            '299 dicomgate "The number of results exceeded the maximum supported by the '
            'server. Additional results can be requested."'
        )
    if warnings:
        response.headers[WARNING] = ", ".join(warnings)
    return response


def capabilities() -> dict[str, object]:
    """Return the description of what this DICOMweb service supports."""
    return {
        "service": "dicomgate DICOMweb",
        "conformance": "docs/dicomweb-conformance.md",
        "qido-rs": {
            "levels": ["studies", "series", "instances"],
            "attributes": [a.keyword for a in ATTRIBUTES],
            "matching": ["single value", "wildcard * ?", "date/time range", "UID list"],
            "parameters": ["includefield", "limit", "offset", "fuzzymatching (not applied)"],
            "media-types": [DICOM_JSON],
        },
        "wado-rs": {
            "resources": [
                "study",
                "series",
                "instance",
                "metadata",
                "frames",
                "bulkdata",
                "rendered",
                "thumbnail",
            ],
            "transfer-syntaxes": ["* (as stored)", "1.2.840.10008.1.2.1 (transcoded)"],
            "rendered": ["image/jpeg", "image/png"],
        },
        "stow-rs": {"media-types": ['multipart/related; type="application/dicom"']},
        "wado-uri": {
            "path": "/wado",
            "content-types": ["application/dicom", "image/jpeg", "image/png"],
        },
    }


def _add_qido(router: APIRouter, ctx: Context) -> None:
    @router.get("/studies")
    def studies(request: Request) -> Response:
        """Search studies."""
        return qido(ctx, request, Level.STUDY, Within())

    @router.get("/series")
    def all_series(request: Request) -> Response:
        """Search series of every study."""
        return qido(ctx, request, Level.SERIES, Within())

    @router.get("/instances")
    def all_instances(request: Request) -> Response:
        """Search instances of every study."""
        return qido(ctx, request, Level.INSTANCE, Within())

    @router.get("/studies/{study}/series")
    def study_series(request: Request, study: Uid) -> Response:
        """Search the series of a study."""
        return qido(ctx, request, Level.SERIES, within_path(study))

    @router.get("/studies/{study}/instances")
    def study_instances(request: Request, study: Uid) -> Response:
        """Search the instances of a study."""
        return qido(ctx, request, Level.INSTANCE, within_path(study))

    @router.get("/studies/{study}/series/{series}/instances")
    def series_instances(request: Request, study: Uid, series: Uid) -> Response:
        """Search the instances of a series."""
        return qido(ctx, request, Level.INSTANCE, within_path(study, series))


def create_dicomweb(
    db: Database,
    blobs: FilesystemBlobStore,
    settings: DicomwebSettings,
    audit: AuditTrail | None = None,
) -> APIRouter:
    """Return the DICOMweb router (mount it under ``/dicomweb``).

    Parameters
    ----------
    db
        The index (read sessions; the metadata cache is its only write).
    blobs
        The blob store of archived instances.
    settings
        The ``dicomweb`` options.
    audit
        Where searches (QIDO-RS) and retrieves (WADO-RS, WADO-URI) are recorded, once per
        request (``None``: not recorded).
    """
    ctx = Context(db, blobs, settings, audit)
    router = APIRouter(tags=["dicomweb"])

    @router.get("/")
    def describe() -> dict[str, object]:
        """Describe the supported services."""
        return capabilities()

    @router.options("/")
    def options() -> Response:
        """Describe the supported services (OPTIONS)."""
        body = json.dumps(capabilities()).encode()
        return Response(
            body, media_type="application/json", headers={"Allow": "GET, POST, OPTIONS"}
        )

    _add_qido(router, ctx)
    wado.add_routes(router, ctx)
    rendered.add_routes(router, ctx)
    add_wado_uri(router, ctx)
    return router


__all__ = ["create_dicomweb"]
