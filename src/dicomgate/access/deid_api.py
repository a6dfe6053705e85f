"""REST for de-identification: share a session into a research project, re-identify.

``POST /api/projects/{p}/sessions/{label}/share`` submits a ``share_session`` job (202 with
its URL). ``POST /api/projects/{p}/subjects/{pseudonym}/reidentify`` returns the identity
behind a pseudonym only when the permission hook allows it; every call, refused or not, is
recorded in the vault's access log and in the audit trail (PATIENT_RECORD, 110110). Sharing
needs ``write`` in both projects (``archive.share.authorise_share``) and is audited as an
EXPORT (110106).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dicomgate.archive.share import KIND, ShareParams, authorise_share, check_share
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate
from dicomgate.auth.roles import Caller, Permission
from dicomgate.deid.config import open_vault
from dicomgate.deid.errors import VaultError, VaultKeyError
from dicomgate.deid.pseudonyms import Identity
from dicomgate.deid.reidentify import (
    REIDENTIFY,
    PermissionCheck,
    deny_without_authentication,
    reidentify,
)
from dicomgate.errors import NotFoundError, StorageError
from dicomgate.jobs.api import job_url
from dicomgate.jobs.service import Jobs
from dicomgate.prearchive.context import Review

_ID = r"^[A-Za-z0-9_-]{1,64}$"
Actor = Callable[[Request], str | None]


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

    return router
