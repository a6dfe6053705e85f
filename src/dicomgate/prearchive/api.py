"""REST edges of the prearchive review: ``/api/prearchive...`` and ``/api/quarantine...``.

Every action is synchronous and atomic; a refusal is a 409 problem document naming the state
or the reasons, a bad label a 400, an unknown session or project a 404 (so is one in a project
the caller may not read), a project the caller may read but not write a 403. Every action is
recorded in the audit trail with its outcome.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from dicomgate.access.api_schemas import StagingStatus
from dicomgate.archive.projects import QUARANTINE
from dicomgate.archive.sessions import find_session
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate
from dicomgate.auth.roles import Caller
from dicomgate.deid.identity import IdentityResolution
from dicomgate.prearchive import actions, views
from dicomgate.prearchive import quarantine as q
from dicomgate.prearchive.context import Review
from dicomgate.prearchive.identity import resolve_identity

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class ArchiveIn(BaseModel):
    """Optional target project and new labels for an archive."""

    model_config = ConfigDict(extra="forbid")
    project: str | None = Field(default=None, pattern=_ID)
    subject: str | None = Field(default=None, max_length=256)
    session: str | None = Field(default=None, max_length=256)


class RenameIn(BaseModel):
    """New labels (at least one)."""

    model_config = ConfigDict(extra="forbid")
    subject: str | None = Field(default=None, max_length=256)
    session: str | None = Field(default=None, max_length=256)


class MoveIn(BaseModel):
    """The new target project."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field(pattern=_ID)


class MergeIn(BaseModel):
    """The archived session to merge into."""

    model_config = ConfigDict(extra="forbid")
    project: str = Field(pattern=_ID)
    into: str = Field(pattern=_ID)


class ResolveIdentityIn(BaseModel):
    """A person's decision on a session held with ``identity_mismatch``."""

    model_config = ConfigDict(extra="forbid")
    use: IdentityResolution
    subject: str | None = Field(default=None, max_length=64)


class ReleaseIn(ArchiveIn):
    """The project to release into, with optional labels."""

    project: str = Field(pattern=_ID)


def _state(review: Review, staging_pk: int, caller: Caller | None = None) -> dict[str, Any]:
    # After an action the caller sees the result even where it went (QUARANTINE, say).
    projects = caller.visible_projects() if caller else None
    with review.intake.db.reader() as session:
        return views.show_staging(session, staging_pk, projects)


def create_prearchive_api(review: Review, gate: Gate) -> APIRouter:
    """Return the router of the prearchive and quarantine review actions."""
    router = APIRouter(prefix="/api", tags=["prearchive"])
    _staging_reads(router, review, gate)
    _staging_actions(router, review, gate)
    _quarantine_routes(router, review, gate)

    @router.post("/projects/{project}/study-cards/apply")
    def apply_cards(project: str, request: Request) -> dict[str, Any]:
        """Re-apply a project's study cards to its archived sessions (no re-import)."""
        objects = {"project": project}
        with gate.audited(request, _ACCESSED, "study_cards_apply", objects) as act:
            count = q.apply_study_cards(review, project, caller=act.caller)
            act.objects["sessions"] = count
        return {"project": project, "sessions": count}

    return router


_ACCESSED = AuditEvent.INSTANCES_ACCESSED


def _staging_reads(router: APIRouter, review: Review, gate: Gate) -> None:
    @router.get("/prearchive")
    def list_prearchive(
        request: Request,
        status: StagingStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        """List staging sessions (newest first) with state, target, labels and reasons."""
        projects = gate.caller(request).visible_projects()
        with review.intake.db.reader() as session:
            value = status.value if status else None
            return views.list_staging(session, value, limit, offset, projects)

    @router.get("/prearchive/{staging_id}")
    def show(staging_id: int, request: Request) -> dict[str, Any]:
        """Show one staging session: reasons, rule, labels with originals, series."""
        return _state(review, staging_id, gate.caller(request))


def _staging_actions(router: APIRouter, review: Review, gate: Gate) -> None:
    @router.post("/prearchive/{staging_id}/archive")
    def archive(staging_id: int, request: Request, body: ArchiveIn | None = None) -> dict[str, Any]:
        """Archive (optionally into another project, with new labels) after its checks."""
        body = body or ArchiveIn()
        objects = {"staging_pk": staging_id, "project": body.project}
        with gate.audited(request, _ACCESSED, "archive", objects) as act:
            done = actions.archive(
                review, staging_id, body.project, body.subject, body.session, caller=act.caller
            )
            act.objects["archived_session_pk"] = done
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/rename")
    def rename(staging_id: int, body: RenameIn, request: Request) -> dict[str, Any]:
        """Set new subject/session labels and check again."""
        with gate.audited(request, _ACCESSED, "rename", {"staging_pk": staging_id}) as act:
            actions.rename(review, staging_id, body.subject, body.session, caller=act.caller)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/move")
    def move(staging_id: int, body: MoveIn, request: Request) -> dict[str, Any]:
        """Target another project and check again."""
        objects = {"staging_pk": staging_id, "project": body.project}
        with gate.audited(request, _ACCESSED, "move", objects) as act:
            actions.move(review, staging_id, body.project, caller=act.caller)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/merge")
    def merge(staging_id: int, body: MergeIn, request: Request) -> dict[str, Any]:
        """Add to an archived session of the same study (only when asked)."""
        objects = {"staging_pk": staging_id, "project": body.project}
        with gate.audited(request, _ACCESSED, "merge", objects) as act:
            done = actions.merge(review, staging_id, body.project, body.into, caller=act.caller)
            act.objects["archived_session_pk"] = done
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/resolve-identity")
    def resolve(staging_id: int, body: ResolveIdentityIn, request: Request) -> dict[str, Any]:
        """Decide whose data a session held with ``identity_mismatch`` is, then archive it.

        ``use``: ``headers``, ``confirmed``, ``subject`` (with ``subject``, a label of the
        project) or ``reject`` (deletes the staging session).
        """
        objects = {"staging_pk": staging_id, "use": str(body.use)}
        with gate.audited(request, _ACCESSED, "resolve_identity", objects) as act:
            status = resolve_identity(review, staging_id, body.use, body.subject, caller=act.caller)
        if status == "DELETED":
            return {"deleted": staging_id, "status": status}
        return _state(review, staging_id)

    @router.delete("/prearchive/{staging_id}")
    def delete(staging_id: int, request: Request) -> dict[str, Any]:
        """Delete a staging session and its instances (recorded)."""
        objects = {"staging_pk": staging_id}
        with gate.audited(request, AuditEvent.STUDY_DELETED, "delete", objects) as act:
            count = actions.delete(review, staging_id, caller=act.caller)
            act.objects["instances"] = count
        return {"deleted": staging_id, "instances": count}


def _quarantined_pk(review: Review, label: str) -> int | None:
    # The audit trail names sessions by internal id: a label may come from a Patient ID.
    with review.intake.db.reader() as session:
        found = find_session(session, QUARANTINE, label)
        return found.pk if found else None


def _quarantine_routes(router: APIRouter, review: Review, gate: Gate) -> None:
    @router.get("/quarantine")
    def list_quarantine(request: Request) -> list[dict[str, Any]]:
        """List the quarantined sessions the caller may see, with their reasons."""
        caller = gate.caller(request)
        with review.intake.db.reader() as session:
            return views.quarantine(session, caller.visible_projects())

    @router.post("/quarantine/{label}/release")
    def release(label: str, body: ReleaseIn, request: Request) -> dict[str, Any]:
        """Move a quarantined session into a project after that project's checks."""
        objects = {"archived_session_pk": _quarantined_pk(review, label), "project": body.project}
        with gate.audited(request, _ACCESSED, "quarantine_release", objects) as act:
            new = q.release(
                review, label, body.project, body.subject, body.session, caller=act.caller
            )
        with review.intake.db.reader() as session:
            return views.session_detail(session, body.project, new)

    @router.delete("/quarantine/{label}")
    def delete_quarantined(label: str, request: Request) -> dict[str, Any]:
        """Delete a quarantined session and its instances (recorded)."""
        objects = {"archived_session_pk": _quarantined_pk(review, label)}
        with gate.audited(request, AuditEvent.STUDY_DELETED, "quarantine_delete", objects) as act:
            count = q.delete_quarantined(review, label, caller=act.caller)
            act.objects["instances"] = count
        return {"deleted": label, "instances": count}
