"""REST for de-identification: share a session, re-identify, upload a pseudonym mapping.

``POST /api/projects/{p}/sessions/{label}/share`` submits a ``share_session`` job (202 with
its URL). ``POST /api/projects/{p}/subjects/{pseudonym}/reidentify`` returns the identity
behind a pseudonym only when the permission hook allows it; every call, refused or not, is
recorded in the vault's access log and in the audit trail (PATIENT_RECORD, 110110). Sharing
needs ``write`` in both projects (``archive.share.authorise_share``) and is audited as an
EXPORT (110106). ``PUT /api/projects/{p}/pseudonym-mapping`` adds a study's Patient ID ->
pseudonym mapping to the vault (CSV with ``original,pseudonym`` columns, or JSON
``{"mapping": {...}}``); it needs the ``manage`` permission in the project.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from dicomgate.archive.deidentify import project_deid
from dicomgate.archive.share import KIND, ShareParams, authorise_share, check_share
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate, require
from dicomgate.auth.roles import Caller, Permission
from dicomgate.deid.config import open_vault
from dicomgate.deid.errors import PseudonymError, VaultError, VaultKeyError
from dicomgate.deid.mapping import upload_mapping
from dicomgate.deid.pseudonyms import Identity, mapping_from_csv, mapping_from_pairs
from dicomgate.deid.reidentify import (
    REIDENTIFY,
    PermissionCheck,
    deny_without_authentication,
    reidentify,
)
from dicomgate.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    StorageError,
    UnsupportedMediaTypeError,
)
from dicomgate.jobs.api import job_url
from dicomgate.jobs.service import Jobs
from dicomgate.prearchive.context import Review

_ID = r"^[A-Za-z0-9_-]{1,64}$"
Actor = Callable[[Request], str | None]
MAX_MAPPING_BYTES = 16 * 1024 * 1024


class ShareIn(BaseModel):
    """Where to share a session: a project with a de-identification profile."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field(pattern=_ID)


class ReidentifyIn(BaseModel):
    """Why the identity is needed (recorded with the call)."""

    model_config = ConfigDict(extra="forbid")
    purpose: str = Field(min_length=1, max_length=500)


def _caller(request: Request) -> Caller | None:
    # The router is mounted behind the authentication dependency, which leaves the caller here.
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else None


def caller_name(request: Request) -> str | None:
    """Return the name of the request's authenticated caller (None without one)."""
    caller = _caller(request)
    return caller.name if caller else None


def caller_check(request: Request) -> PermissionCheck:
    """Return the permission check of the request's caller: their own ``reidentify`` right.

    Without an authenticated caller every call is refused. The open caller of a service run
    with authentication off never holds ``reidentify``, so such a service re-identifies nobody.
    """
    caller = _caller(request)
    if caller is None:
        return deny_without_authentication

    def check(_actor: str | None, permission: str, project: str) -> bool:
        return permission == REIDENTIFY and caller.allows(Permission.REIDENTIFY, project)

    return check


async def _mapping_body(request: Request) -> dict[str, str]:
    """Read and validate a mapping body: CSV (``text/csv``) or JSON ``{"mapping": {...}}``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "text/plain", "application/json"):
        raise UnsupportedMediaTypeError("send the mapping as text/csv or application/json")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MAPPING_BYTES:
            raise PayloadTooLargeError(f"a mapping is at most {MAX_MAPPING_BYTES} bytes")
    try:
        text = bytes(body).decode("utf-8-sig")
        if kind != "application/json":
            return mapping_from_csv(text)
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("mapping"), dict):
            raise PseudonymError('expected {"mapping": {"<Patient ID>": "<pseudonym>", ...}}')
        return mapping_from_pairs(data["mapping"])
    except UnicodeDecodeError:
        raise InvalidInputError("the mapping is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the mapping is not valid JSON: {exc.msg}") from None
    except PseudonymError as exc:
        raise InvalidInputError(str(exc)) from None


def _reidentify(
    review: Review,
    check: PermissionCheck,
    actor: str | None,
    project: str,
    pseudonym: str,
    body: ReidentifyIn,
) -> Identity:
    settings = review.settings
    try:
        with open_vault(settings.deid, settings.data_dir) as vault:
            return reidentify(vault, check, actor, project, pseudonym, body.purpose)
    except VaultKeyError as exc:
        raise StorageError("the identity vault cannot be opened") from exc
    except VaultError as exc:
        raise NotFoundError(str(exc)) from None


def create_deid_api(
    review: Review,
    jobs: Jobs,
    gate: Gate,
    check: Callable[[Request], PermissionCheck] = caller_check,
    actor: Actor = caller_name,
) -> APIRouter:
    """Return the router; ``check`` gives each request's permission hook, ``actor`` its caller."""
    router = APIRouter(prefix="/api/projects", tags=["de-identification"])

    @router.post("/{project}/sessions/{label}/share", status_code=202)
    def share(project: str, label: str, body: ShareIn, request: Request) -> dict[str, Any]:
        """Submit a job that de-identifies the session with the target's profile."""
        objects = {"project": project[:64], "target_project": body.project}
        with gate.audited(request, AuditEvent.EXPORT, "share", objects) as act:
            try:
                params = ShareParams(
                    source_project=project, session=label, target_project=body.project
                )
            except ValidationError:
                raise NotFoundError(f"no session {label[:64]} in project {project[:64]}") from None
            authorise_share(act.caller, params)
            check_share(review, params)
            job_id = jobs.submit(KIND, params.model_dump(), owner=act.caller.name)
            act.objects["job_id"] = job_id
        return {"job": job_id, "url": job_url(job_id)}

    @router.post("/{project}/subjects/{pseudonym}/reidentify")
    def reidentify_subject(
        project: str, pseudonym: str, body: ReidentifyIn, request: Request
    ) -> dict[str, str]:
        """Return the identity behind a pseudonym (403 without the permission)."""
        # The purpose is free text that may name the patient: it stays in the vault's log.
        objects = {"project": project[:64], "pseudonym": pseudonym[:64]}
        with gate.audited(request, AuditEvent.PATIENT_RECORD, "reidentify", objects):
            found = _reidentify(review, check(request), actor(request), project, pseudonym, body)
        return found.to_dict()

    @router.put("/{project}/pseudonym-mapping")
    async def put_mapping(project: str, request: Request) -> dict[str, Any]:
        """Add Patient ID -> pseudonym entries for the ``mapping`` scheme (never changes one)."""
        objects = {"project": project[:64]}
        with gate.audited(request, AuditEvent.PATIENT_RECORD, "pseudonym_mapping", objects) as act:
            require(act.caller, project, Permission.MANAGE, f"no project {project!r}")
            mapping = await _mapping_body(request)
            act.objects["entries"] = len(mapping)
            settings, config = review.settings, project_deid(review, project)
            done = await _upload(settings, config, project, mapping)
        return done

    return router


async def _upload(
    settings: Any, config: Any, project: str, mapping: dict[str, str]
) -> dict[str, Any]:
    try:
        done = await run_in_threadpool(
            upload_mapping, settings.deid, settings.data_dir, config, project, mapping
        )
    except VaultKeyError as exc:
        raise StorageError("the identity vault cannot be opened") from exc
    except (PseudonymError, VaultError) as exc:
        raise ConflictError(str(exc)) from None
    return {"project": done.project, "added": done.added, "total": done.total}
