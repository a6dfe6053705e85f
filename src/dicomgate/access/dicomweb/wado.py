"""WADO-RS: retrieve instances, metadata, frames and bulk data (PS3.18 10.4)."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import StreamingResponse
from pydicom import dcmread

from dicomgate.access.dicomweb import pixels
from dicomgate.access.dicomweb.context import DICOM_JSON, Context, scope_of
from dicomgate.access.dicomweb.metadata import BASE, metadata_json
from dicomgate.access.dicomweb.multipart import (
    Part,
    body_length,
    content_type,
    new_boundary,
    stream,
)
from dicomgate.access.dicomweb.negotiate import (
    DICOM,
    OCTETS,
    choose_dicom,
    choose_frames,
    choose_single,
    parse_accept,
)
from dicomgate.access.dicomweb.resources import StoredInstance, Target, instances
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.request_audit import record_request
from dicomgate.dicom.dicom_json import find_value
from dicomgate.errors import NotFoundError
from dicomgate.httputil import base_url

Uid = Annotated[str, Path(max_length=64)]


def _dicom_parts(ctx: Context, rows: list[StoredInstance], syntax: str) -> list[Part]:
    parts = []
    for row in rows:
        path = ctx.file(row.blob_key)
        if syntax in ("*", row.transfer_syntax_uid):
            kind = f"{DICOM}; transfer-syntax={row.transfer_syntax_uid}"
            parts.append(Part(kind, path=path))
        else:
            kind = f"{DICOM}; transfer-syntax={syntax}"
            parts.append(Part(kind, produce=partial(pixels.transcode, path)))
    return parts


def retrieve(ctx: Context, request: Request, target: Target) -> StreamingResponse:
    """Stream the instances ``target`` names as ``multipart/related; type=application/dicom``."""
    ranges = parse_accept(request.headers.get("accept"))
    with ctx.db.reader() as session:
        rows = instances(session, target, scope_of(request))
    audit_retrieve(ctx, request, target, len(rows), AuditEvent.INSTANCES_TRANSFERRED)
    producible = set.intersection(*(pixels.producible(r.transfer_syntax_uid) for r in rows))
    choice = choose_dicom(ranges, producible)
    boundary = new_boundary()
    parts = _dicom_parts(ctx, rows, choice.transfer_syntax)
    headers = {}
    if all(part.path is not None for part in parts):  # as stored: the length is known
        length = body_length(parts, [row.size for row in rows], boundary)
        headers["Content-Length"] = str(length)
    body = stream(parts, boundary)
    return StreamingResponse(body, media_type=content_type(DICOM, boundary), headers=headers)


def metadata(ctx: Context, request: Request, target: Target) -> Response:
    """Return the prepared DICOM JSON of the instances ``target`` names."""
    choose_single(parse_accept(request.headers.get("accept")), [DICOM_JSON, "application/json"])
    texts = metadata_json(
        ctx.db, ctx.blobs, target, scope_of(request), ctx.settings.bulk_data_threshold
    )
    body = ("[" + ",".join(texts) + "]").replace(BASE, base_url(request, ctx.settings.public_url))
    audit_retrieve(ctx, request, target, len(texts), AuditEvent.INSTANCES_ACCESSED)
    return Response(body.encode(), media_type=DICOM_JSON)


def audit_retrieve(
    ctx: Context, request: Request, target: Target, count: int, event: AuditEvent
) -> None:
    """Record one retrieve: instances sent (110104) or their metadata read (110103).

    Frames, bulk data and rendered images are not recorded: a viewer asks for them per
    instance and per frame, and the study's metadata or instances it read first are.
    """
    objects: dict[str, object] = {"study_uid": target.study, "instances": count}
    if target.series:
        objects["series_uid"] = target.series
    if target.instance:
        objects["sop_instance_uid"] = target.instance
    record_request(ctx.audit, request, event, "retrieve", objects)


def _one(ctx: Context, request: Request, target: Target) -> StoredInstance:
    with ctx.db.reader() as session:
        return instances(session, target, scope_of(request))[0]


def frames(ctx: Context, request: Request, target: Target, frame_list: str) -> Response:
    """Return the listed frames, as stored or decoded, per the Accept header."""
    row = _one(ctx, request, target)
    ds = dcmread(ctx.file(row.blob_key))
    numbers = pixels.parse_frame_list(frame_list, pixels.frame_count(ds))
    syntax = row.transfer_syntax_uid
    choice = choose_frames(
        parse_accept(request.headers.get("accept")), syntax, pixels.can_decode(syntax)
    )
    data = (
        pixels.decoded_frames(ds, numbers) if choice.decode else pixels.stored_frames(ds, numbers)
    )
    kind = choice.media_type
    if not choice.decode and not pixels.is_native(syntax):
        kind += f"; transfer-syntax={syntax}"
    boundary = new_boundary()
    parts = [Part(kind, data=d) for d in data]
    return Response(
        b"".join(stream(parts, boundary)), media_type=content_type(choice.media_type, boundary)
    )


def bulkdata(ctx: Context, request: Request, target: Target, tag_path: str) -> Response:
    """Return one bulk data value (pixel data: every frame, as stored) as multipart."""
    row = _one(ctx, request, target)
    ranges = parse_accept(request.headers.get("accept"))
    ds = dcmread(ctx.file(row.blob_key))
    try:
        element = find_value(ds, tag_path)
    except (KeyError, ValueError):
        raise NotFoundError("the instance has no value at this bulk data path") from None
    syntax = row.transfer_syntax_uid
    if element.tag == 0x7FE00010 and not pixels.is_native(syntax):
        every = ",".join(str(n) for n in range(1, pixels.frame_count(ds) + 1))
        return frames(ctx, request, target, every)
    choose_single(ranges, [OCTETS])
    if not isinstance(element.value, bytes):
        raise NotFoundError("the value at this path is not bulk data")
    data = element.value
    boundary = new_boundary()
    return Response(
        b"".join(stream([Part(OCTETS, data=bytes(data))], boundary)),
        media_type=content_type(OCTETS, boundary),
    )


def add_routes(router: APIRouter, ctx: Context) -> None:
    """Register the WADO-RS retrieve, metadata, frames and bulk data routes on ``router``."""

    @router.get("/studies/{study}")
    def study(request: Request, study: Uid) -> StreamingResponse:
        """Retrieve a study."""
        return retrieve(ctx, request, Target(study))

    @router.get("/studies/{study}/series/{series}")
    def series(request: Request, study: Uid, series: Uid) -> StreamingResponse:
        """Retrieve a series."""
        return retrieve(ctx, request, Target(study, series))

    @router.get("/studies/{study}/series/{series}/instances/{instance}")
    def instance(request: Request, study: Uid, series: Uid, instance: Uid) -> StreamingResponse:
        """Retrieve an instance."""
        return retrieve(ctx, request, Target(study, series, instance))

    @router.get("/studies/{study}/metadata")
    def study_metadata(request: Request, study: Uid) -> Response:
        """Return a study's metadata."""
        return metadata(ctx, request, Target(study))

    @router.get("/studies/{study}/series/{series}/metadata")
    def series_metadata(request: Request, study: Uid, series: Uid) -> Response:
        """Return a series' metadata."""
        return metadata(ctx, request, Target(study, series))

    @router.get("/studies/{study}/series/{series}/instances/{instance}/metadata")
    def instance_metadata(request: Request, study: Uid, series: Uid, instance: Uid) -> Response:
        """Return an instance's metadata."""
        return metadata(ctx, request, Target(study, series, instance))

    @router.get("/studies/{study}/series/{series}/instances/{instance}/frames/{frame_list}")
    def instance_frames(
        request: Request, study: Uid, series: Uid, instance: Uid, frame_list: str
    ) -> Response:
        """Return frames of an instance."""
        return frames(ctx, request, Target(study, series, instance), frame_list)

    @router.get("/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag_path:path}")
    def instance_bulkdata(
        request: Request, study: Uid, series: Uid, instance: Uid, tag_path: str
    ) -> Response:
        """Return a bulk data value of an instance."""
        return bulkdata(ctx, request, Target(study, series, instance), tag_path)
