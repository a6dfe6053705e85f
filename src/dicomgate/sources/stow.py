"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{study}]``, each part through intake.receive.

The body is streamed into spooled parts (never held whole), then each part is parsed once and
received like a C-STORE, parts in batches that share one sync pass and one transaction:
stored, refused with its reason (kept aside), or found already stored. The response
lists every instance with where it landed (staging session, target project) or why it failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Select, select

from dicomgate.archive.models import Instance, Series, StagingSession, Study
from dicomgate.auth.audit import AuditEvent, AuditTrail
from dicomgate.auth.audit import Outcome as AuditOutcome
from dicomgate.auth.guard import require_import
from dicomgate.auth.request_audit import record_request
from dicomgate.auth.roles import Caller
from dicomgate.dicom.header_values import value_text
from dicomgate.dicom.part10 import NotDicomError, Part10, parse_any
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.errors import InvalidInputError, PayloadTooLargeError, StorageError
from dicomgate.httputil import base_url
from dicomgate.intake.batch import receive_many
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult, receive, refuse
from dicomgate.raw_sql import PerDialect, listed, one_of
from dicomgate.sources.stow_body import DICOM, BodyPart, boundary_of, close, read_parts

DICOM_JSON = "application/dicom+json"
# dicomgate's extension: the project the instances are imported into (else the protocol sorts).
ProjectParam = Annotated[str | None, Query(max_length=64)]
PRIVATE_CREATOR = "DICOMGATE STOW"
# Failure reasons (PS3.18 Table I.2-1 and common practice).
CANNOT_UNDERSTAND, STUDY_MISMATCH, DUPLICATE, OUT_OF_RESOURCES = 0xC000, 0xA901, 0x0111, 0xA700
BATCH_PARTS = 64  # the group commit's largest transaction
BATCH_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class StowSettings:
    """What the STOW-RS source needs to know: limits and the project used when none is named."""

    max_bytes: int
    memory_bytes: int
    default_project: str
    public_url: str | None = None


@dataclass(frozen=True, slots=True)
class PartResult:
    """The fate of one part."""

    result: ReceiveResult
    sop_class_uid: str | None = None
    failure: int | None = None


def _screen(
    intake: Intake, part: BodyPart, origin: Origin, study: str | None
) -> PartResult | Part10:
    """Return the parsed part, or the result of a part refused before intake (parsed once)."""
    data = part.read()
    if part.content_type != DICOM:
        message = f"the part is {part.content_type[:64]}, not application/dicom"
        return PartResult(refuse(intake, data, origin, "unsupported_part", message, None),
                          failure=CANNOT_UNDERSTAND)  # fmt: skip
    try:
        parsed = parse_any(data)
    except NotDicomError:
        return PartResult(receive(intake, data, origin), failure=CANNOT_UNDERSTAND)  # set aside
    study_uid = _uid(parsed, "StudyInstanceUID")
    if study is not None and study_uid is not None and study_uid != study:
        message = "the instance belongs to another study than the request names"
        refused = refuse(intake, data, origin, "study_mismatch", message, _uid(parsed))
        return PartResult(refused, _uid(parsed, "SOPClassUID"), STUDY_MISMATCH)
    return parsed


def _part_result(parsed: Part10, result: ReceiveResult) -> PartResult:
    sop_class = _uid(parsed, "SOPClassUID")
    if result.ok:
        return PartResult(result, sop_class)
    failure = DUPLICATE if result.outcome is Outcome.CONFLICTING else CANNOT_UNDERSTAND
    return PartResult(result, sop_class, failure)


def _receive_batch(intake: Intake, batch: list[Part10], origin: Origin) -> list[PartResult]:
    results = []
    for parsed, received in zip(batch, receive_many(intake, batch, origin), strict=True):
        if isinstance(received, StorageError):
            refused = ReceiveResult(Outcome.REJECTED, _uid(parsed), reason=str(received))
            results.append(PartResult(refused, _uid(parsed, "SOPClassUID"), OUT_OF_RESOURCES))
        elif isinstance(received, Exception):
            raise received
        else:
            results.append(_part_result(parsed, received))
    return results


def _uid(parsed: Part10, keyword: str = "SOPInstanceUID") -> str | None:
    return value_text(parsed.header, keyword)  # from the raw element: pydicom's is slow


def receive_parts(
    intake: Intake, parts: list[BodyPart], origin: Origin, study: str | None
) -> list[PartResult]:
    """Receive every part; results in part order.

    Acceptable parts are stored in batches (one sync pass and one index transaction each, at
    most ``BATCH_PARTS`` parts or ``BATCH_BYTES`` bytes, so a huge request is not held in
    memory whole). Blocking: run it in a worker thread.
    """
    results: list[PartResult | None] = [None] * len(parts)
    batch: list[tuple[int, Part10]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        done = _receive_batch(intake, [parsed for _n, parsed in batch], origin)
        for (n, _parsed), result in zip(batch, done, strict=True):
            results[n] = result
        batch.clear()
        size = 0

    try:
        for n, part in enumerate(parts):
            screened = _screen(intake, part, origin, study)
            if isinstance(screened, PartResult):
                results[n] = screened
                continue
            batch.append((n, screened))
            size += len(screened.data)
            if len(batch) >= BATCH_PARTS or size >= BATCH_BYTES:
                flush()
        if batch:
            flush()
    finally:
        close(parts)
    return [result for result in results if result is not None]


Landing = tuple[int | None, str, str, str, str]


def _landing_of(dialect: str) -> Select[*tuple[Any, ...]]:
    return (
        select(Instance.pk, StagingSession.pk, StagingSession.status, StagingSession.project_id,
               Study.project_id, Study.study_uid, Series.series_uid)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
        .outerjoin(StagingSession, Instance.staging_pk == StagingSession.pk)
        .where(one_of(dialect, Instance.pk, "pks"))
    )  # fmt: skip


_LANDING = PerDialect(_landing_of)


def _landing(intake: Intake, results: list[PartResult]) -> dict[int, Landing]:
    """Return instance pk -> (staging pk, status, project, study, series) of stored parts."""
    pks = [r.result.instance_pk for r in results if r.failure is None and r.result.instance_pk]
    if not pks:
        return {}
    with intake.db.read_connection() as connection:
        dialect = connection.dialect.name
        rows = _LANDING.of(dialect).rows(connection, {"pks": listed(dialect, pks)})
    return {int(pk): (staging, status or "ARCHIVED", staged or archived or "", study, series)
            for pk, staging, status, staged, archived, study, series in rows}  # fmt: skip


def _item(part: PartResult) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if part.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [part.sop_class_uid]}
    if part.result.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [part.result.sop_instance_uid]}
    return item


def _landed(item: dict[str, Any], landing: Landing, outcome: Outcome) -> None:
    staging, status, project, _study, _series = landing
    item["00090010"] = {"vr": "LO", "Value": [PRIVATE_CREATOR]}
    item["00091001"] = {"vr": "CS", "Value": [outcome.value.upper()]}
    item["00091002"] = {"vr": "CS", "Value": [status]}
    item["00091003"] = {"vr": "LO", "Value": [project]} if project else {"vr": "LO"}
    item["00091004"] = {"vr": "UL", "Value": [staging]} if staging else {"vr": "UL"}


def response_body(
    intake: Intake, results: list[PartResult], base: str, study: str | None, project: str
) -> dict[str, Any]:
    """Return the STOW-RS response dataset (DICOM JSON)."""
    landing = _landing(intake, results)
    stored, failed = [], []
    for part in results:
        item = _item(part)
        if part.failure is not None:
            item["00081197"] = {"vr": "US", "Value": [part.failure]}
            failed.append(item)
            continue
        staging, status, target, study_uid, series_uid = landing[part.result.instance_pk or -1]
        where = (staging, status, target or project, study_uid, series_uid)
        _landed(item, where, part.result.outcome)
        url = (
            f"{base}/studies/{study_uid}/series/{series_uid}"
            f"/instances/{part.result.sop_instance_uid}"
        )
        item["00081190"] = {"vr": "UR", "Value": [url]}
        stored.append(item)
    body: dict[str, Any] = {}
    if study:
        body["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{study}"]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    return body


def status_of(results: list[PartResult]) -> int:
    """Return 200 all stored, 202 partial, 409 all failed on a conflict, 400 all unreadable."""
    failures = [r.failure for r in results if r.failure is not None]
    if not failures:
        return 200
    if len(failures) < len(results):
        return 202
    if all(f == OUT_OF_RESOURCES for f in failures):
        return 503
    if any(f in (STUDY_MISMATCH, DUPLICATE) for f in failures):
        return 409
    return 400


def audit_import(trail: AuditTrail | None, request: Request, results: list[PartResult]) -> None:
    """Record one STOW-RS request as one import (110104): counts and staging sessions."""
    failed = sum(1 for r in results if r.failure is not None)
    staging = sorted({r.result.staging_pk for r in results if r.result.staging_pk is not None})
    outcome = AuditOutcome.SUCCESS
    if failed:
        partly = failed < len(results)
        outcome = AuditOutcome.MINOR_FAILURE if partly else AuditOutcome.SERIOUS_FAILURE
    objects = {
        "instances": len(results) - failed,
        "failed": failed,
        "staging_sessions": len(staging),
        "staging_pks": staging[:100],
    }
    record_request(trail, request, AuditEvent.INSTANCES_TRANSFERRED, "import", objects, outcome)


def _caller(request: Request) -> Caller:
    """Return the caller the auth dependency left on the request; without one, nobody."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else Caller(name="nobody")


@dataclass(frozen=True, slots=True)
class Stow:
    """STOW-RS requests taken into ``intake`` under ``settings``; each one audited."""

    intake: Intake
    settings: StowSettings
    audit: AuditTrail | None = None

    async def store(self, request: Request, study: str | None, project: str | None) -> JSONResponse:
        """Take one request's parts in and answer with where each landed or why it failed.

        Parameters
        ----------
        request
            The POST, its caller already resolved (``request.state.caller``).
        study
            The study of the path (``/studies/{study}``), whose instances alone are taken.
        project
            The ``project`` query parameter.
        """
        settings = self.settings
        if study is not None and not is_valid_uid(study):
            raise InvalidInputError("the study in the path is not a UID")
        # Checked before the body is read: a caller who may not import sends nothing in.
        require_import(_caller(request), project, f"no project {project!r}")
        boundary = boundary_of(request.headers.get("content-type"))
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_bytes:
            raise PayloadTooLargeError(f"the body exceeds the limit of {settings.max_bytes} bytes")
        spool = self.intake.blobs.temp
        parts = await read_parts(
            request.stream(), boundary, spool, settings.max_bytes, settings.memory_bytes
        )
        host = request.client.host if request.client else None
        origin = Origin(OriginKind.STOW, remote_host=host, project=project)
        base = base_url(request, settings.public_url)

        def answer() -> JSONResponse:
            # One trip to a worker thread for the request's blocking work (each trip costs
            # about a tenth of a millisecond: a one-instance request made three).
            results = receive_parts(self.intake, parts, origin, study)
            audit_import(self.audit, request, results)
            body = response_body(self.intake, results, base, study, settings.default_project)
            return JSONResponse(body, status_code=status_of(results), media_type=DICOM_JSON)

        return await run_in_threadpool(answer)


def create_stow(source: Stow) -> APIRouter:
    """Return the STOW-RS router (mount it under ``/dicomweb``)."""
    router = APIRouter(tags=["dicomweb"])

    @router.post("/studies")
    async def stow(request: Request, project: ProjectParam = None) -> JSONResponse:
        """Store instances (any study); ``?project=`` names the project to import into."""
        return await source.store(request, None, project)

    @router.post("/studies/{study}")
    async def stow_study(
        request: Request, study: Annotated[str, Path(max_length=64)], project: ProjectParam = None
    ) -> JSONResponse:
        """Store instances of one study; instances of other studies are refused."""
        return await source.store(request, study, project)

    return router
