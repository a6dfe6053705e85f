"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3-4) for every level."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydicom import dcmread

from dicomgate.access.dicomweb import pixels
from dicomgate.access.dicomweb.context import Context, scope_of
from dicomgate.access.dicomweb.multipart import Part, content_type, new_boundary, stream
from dicomgate.access.dicomweb.negotiate import MediaRange, parse_accept, part_type
from dicomgate.access.dicomweb.render import JPEG, PNG, RenderParams, parse_params, render
from dicomgate.access.dicomweb.resources import StoredInstance, Target, instances
from dicomgate.access.dicomweb.wado import Uid
from dicomgate.errors import InvalidInputError, NotAcceptableError, NotFoundError

Text = Annotated[str | None, Query(max_length=64)]


def _image_type(ranges: list[MediaRange]) -> str:
    for accepted in ranges:
        wanted = part_type(accepted) if accepted.type.startswith("multipart/") else accepted.type
        for offer in (JPEG, PNG):
            if wanted and MediaRange(wanted, {}, 1).matches(offer):
                return offer
    raise NotAcceptableError("can render image/jpeg or image/png")


def _images(ctx: Context, rows: list[StoredInstance], frame: int, params: RenderParams,
            media_type: str) -> list[bytes]:  # fmt: skip
    out = []
    for row in rows:
        ds = dcmread(ctx.file(row.blob_key))
        count = pixels.frame_count(ds)
        if count == 0:
            continue
        if frame >= count:
            raise NotFoundError(f"the instance has {count} frame(s), numbered from 1")
        if not pixels.can_decode(row.transfer_syntax_uid):
            raise NotAcceptableError("the stored pixel data cannot be decoded here")
        out.append(render(ds, frame, params, media_type))
    return out


class Renderer:
    """Renders the instances a target names, per the Accept header and the query parameters."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def rows(self, request: Request, target: Target) -> list[StoredInstance]:
        """Return the instances of ``target`` that the caller may see."""
        with self.ctx.db.reader() as session:
            return instances(session, target, scope_of(request))

    def one(self, request: Request, rows: list[StoredInstance], frame: int,
            params: RenderParams) -> Response:  # fmt: skip
        """Render one frame of the first image among ``rows``."""
        kind = _image_type(parse_accept(request.headers.get("accept")))
        for row in rows:
            images = _images(self.ctx, [row], frame, params, kind)
            if images:
                return Response(images[0], media_type=kind)
        raise NotFoundError("the resource holds no image")

    def many(self, request: Request, target: Target, params: RenderParams) -> Response:
        """Render the first frame of every image of ``target`` as multipart/related."""
        kind = _image_type(parse_accept(request.headers.get("accept")))
        images = _images(self.ctx, self.rows(request, target), 0, params, kind)
        if not images:
            raise NotFoundError("the resource holds no image")
        boundary = new_boundary()
        body = b"".join(stream([Part(kind, data=i) for i in images], boundary))
        return Response(body, media_type=content_type(kind, boundary))


def _frame_number(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 2**31:
        raise InvalidInputError("a frame number is a positive integer")
    return int(text) - 1


def add_routes(router: APIRouter, ctx: Context) -> None:
    """Register the rendered and thumbnail routes of every level on ``router``."""
    r = Renderer(ctx)
    base = "/studies/{study}/series/{series}/instances/{instance}"

    def params(window: str | None, viewport: str | None, quality: str | None) -> RenderParams:
        return parse_params(window, viewport, quality)

    def thumb(viewport: str | None) -> RenderParams:
        size = ctx.settings.thumbnail_size
        return parse_params(None, viewport or f"{size},{size}", None)

    @router.get("/studies/{study}/rendered")
    def study_rendered(request: Request, study: Uid, window: Text = None,
                       viewport: Text = None, quality: Text = None) -> Response:  # fmt: skip
        """Render a study (first frame of each image)."""
        return r.many(request, Target(study), params(window, viewport, quality))

    @router.get("/studies/{study}/series/{series}/rendered")
    def series_rendered(request: Request, study: Uid, series: Uid, window: Text = None,
                        viewport: Text = None, quality: Text = None) -> Response:  # fmt: skip
        """Render a series (first frame of each image)."""
        return r.many(request, Target(study, series), params(window, viewport, quality))

    @router.get(base + "/rendered")
    def instance_rendered(request: Request, study: Uid, series: Uid, instance: Uid,
                          window: Text = None, viewport: Text = None,
                          quality: Text = None) -> Response:  # fmt: skip
        """Render an instance (its first frame)."""
        rows = r.rows(request, Target(study, series, instance))
        return r.one(request, rows, 0, params(window, viewport, quality))

    @router.get(base + "/frames/{frame}/rendered")
    def frame_rendered(request: Request, study: Uid, series: Uid, instance: Uid, frame: str,
                       window: Text = None, viewport: Text = None,
                       quality: Text = None) -> Response:  # fmt: skip
        """Render one frame."""
        rows = r.rows(request, Target(study, series, instance))
        return r.one(request, rows, _frame_number(frame), params(window, viewport, quality))

    @router.get("/studies/{study}/thumbnail")
    def study_thumbnail(request: Request, study: Uid, viewport: Text = None) -> Response:
        """Return a thumbnail of a study (its middle image)."""
        rows = r.rows(request, Target(study))
        return r.one(request, rows[len(rows) // 2 :] + rows, 0, thumb(viewport))

    @router.get("/studies/{study}/series/{series}/thumbnail")
    def series_thumbnail(request: Request, study: Uid, series: Uid,
                         viewport: Text = None) -> Response:  # fmt: skip
        """Return a thumbnail of a series (its middle image)."""
        rows = r.rows(request, Target(study, series))
        return r.one(request, rows[len(rows) // 2 :] + rows, 0, thumb(viewport))

    @router.get(base + "/thumbnail")
    def instance_thumbnail(request: Request, study: Uid, series: Uid, instance: Uid,
                           viewport: Text = None) -> Response:  # fmt: skip
        """Return a thumbnail of an instance."""
        rows = r.rows(request, Target(study, series, instance))
        return r.one(request, rows, 0, thumb(viewport))

    @router.get(base + "/frames/{frame}/thumbnail")
    def frame_thumbnail(request: Request, study: Uid, series: Uid, instance: Uid, frame: str,
                        viewport: Text = None) -> Response:  # fmt: skip
        """Return a thumbnail of one frame."""
        rows = r.rows(request, Target(study, series, instance))
        return r.one(request, rows, _frame_number(frame), thumb(viewport))
