"""WADO-URI (PS3.18 9): one instance by its UIDs, as DICOM or rendered."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse
from pydicom import dcmread

from dicomgate.access.dicomweb import pixels
from dicomgate.access.dicomweb.context import Context, scope_of
from dicomgate.access.dicomweb.negotiate import DICOM, EXPLICIT_LE
from dicomgate.access.dicomweb.render import JPEG, PNG, RenderParams, parse_params, render
from dicomgate.access.dicomweb.resources import Target, instances
from dicomgate.access.dicomweb.wado import audit_retrieve
from dicomgate.auth.audit import AuditEvent
from dicomgate.errors import InvalidInputError, NotAcceptableError, NotFoundError

Param = Annotated[str | None, Query(max_length=64)]


def _render_params(
    center: str | None, width: str | None, rows: str | None, columns: str | None
) -> RenderParams:
    window = f"{center},{width}" if center is not None and width is not None else None
    viewport = f"{columns or rows},{rows or columns}" if rows or columns else None
    return parse_params(window, viewport, None)


def _frame(value: str | None, count: int) -> int:
    if value is None:
        return 0
    if not value.isdigit() or not 1 <= int(value) <= count:
        raise NotFoundError(f"the instance has {count} frame(s), numbered from 1")
    return int(value) - 1


def add_wado_uri(router: APIRouter, ctx: Context) -> None:
    """Register ``GET /wado`` on ``router``."""

    @router.get("/wado")
    def wado_uri(
        request: Request,
        request_type: Annotated[str, Query(alias="requestType")],
        study: Annotated[str, Query(alias="studyUID", max_length=64)],
        series: Annotated[str, Query(alias="seriesUID", max_length=64)],
        instance: Annotated[str, Query(alias="objectUID", max_length=64)],
        content_type: Annotated[str, Query(alias="contentType", max_length=128)] = JPEG,
        transfer_syntax: Annotated[str | None, Query(alias="transferSyntax")] = None,
        frame_number: Annotated[str | None, Query(alias="frameNumber")] = None,
        window_center: Annotated[str | None, Query(alias="windowCenter")] = None,
        window_width: Annotated[str | None, Query(alias="windowWidth")] = None,
        rows: Param = None,
        columns: Param = None,
    ) -> Response:
        """Return one instance as ``application/dicom``, ``image/jpeg`` or ``image/png``."""
        if request_type != "WADO":
            raise InvalidInputError("requestType must be WADO")
        with ctx.db.reader() as session:
            row = instances(session, Target(study, series, instance), scope_of(request))[0]
        path = ctx.file(row.blob_key)
        target = Target(study, series, instance)
        audit_retrieve(ctx, request, target, 1, AuditEvent.INSTANCES_TRANSFERRED)
        kind = content_type.split(";")[0].strip().lower()
        if kind == DICOM:
            if transfer_syntax in (None, "*", row.transfer_syntax_uid):
                return FileResponse(path, media_type=DICOM)
            if transfer_syntax == EXPLICIT_LE and pixels.can_decode(row.transfer_syntax_uid):
                return Response(pixels.transcode(path), media_type=DICOM)
            raise NotAcceptableError(f"can send {row.transfer_syntax_uid} or {EXPLICIT_LE}")
        if kind not in (JPEG, PNG):
            raise NotAcceptableError("contentType can be application/dicom, image/jpeg, image/png")
        ds = dcmread(path)
        count = pixels.frame_count(ds)
        if count == 0 or not pixels.can_decode(row.transfer_syntax_uid):
            raise NotAcceptableError("this instance cannot be rendered; ask for application/dicom")
        params = _render_params(window_center, window_width, rows, columns)
        return Response(render(ds, _frame(frame_number, count), params, kind), media_type=kind)
