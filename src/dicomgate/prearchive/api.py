"""REST edges of the prearchive review: ``/api/prearchive...`` and ``/api/quarantine...``.

Every action is synchronous and atomic; a refusal is a 409 problem document naming the state
or the reasons, a bad label a 400, an unknown session or project a 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from dicomgate.access.api_schemas import StagingStatus
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


def _state(review: Review, staging_pk: int) -> dict[str, Any]:
    with review.intake.db.reader() as session:
        return views.show_staging(session, staging_pk)


def create_prearchive_api(review: Review) -> APIRouter:
    """Return the router of the prearchive and quarantine review actions."""
    router = APIRouter(prefix="/api", tags=["prearchive"])

    @router.get("/prearchive")
    def list_prearchive(
        status: StagingStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        """List staging sessions (newest first) with state, target, labels and reasons."""
        with review.intake.db.reader() as session:
            return views.list_staging(session, status.value if status else None, limit, offset)

    @router.get("/prearchive/{staging_id}")
    def show(staging_id: int) -> dict[str, Any]:
        """Show one staging session: reasons, rule, labels with originals, series."""
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/archive")
    def archive(staging_id: int, body: ArchiveIn | None = None) -> dict[str, Any]:
        """Archive (optionally into another project, with new labels) after its checks."""
        body = body or ArchiveIn()
        actions.archive(review, staging_id, body.project, body.subject, body.session)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/rename")
    def rename(staging_id: int, body: RenameIn) -> dict[str, Any]:
        """Set new subject/session labels and check again."""
        actions.rename(review, staging_id, body.subject, body.session)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/move")
    def move(staging_id: int, body: MoveIn) -> dict[str, Any]:
        """Target another project and check again."""
        actions.move(review, staging_id, body.project)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/merge")
    def merge(staging_id: int, body: MergeIn) -> dict[str, Any]:
        """Add to an archived session of the same study (only when asked)."""
        actions.merge(review, staging_id, body.project, body.into)
        return _state(review, staging_id)

    @router.post("/prearchive/{staging_id}/resolve-identity")
    def resolve(staging_id: int, body: ResolveIdentityIn) -> dict[str, Any]:
        """Decide whose data a session held with ``identity_mismatch`` is, then archive it.

        ``use``: ``headers``, ``confirmed``, ``subject`` (with ``subject``, a label of the
        project) or ``reject`` (deletes the staging session).
        """
        status = resolve_identity(review, staging_id, body.use, body.subject)
        if status == "DELETED":
            return {"deleted": staging_id, "status": status}
        return _state(review, staging_id)

    @router.delete("/prearchive/{staging_id}")
    def delete(staging_id: int) -> dict[str, Any]:
        """Delete a staging session and its instances (recorded)."""
        return {"deleted": staging_id, "instances": actions.delete(review, staging_id)}

    @router.get("/quarantine")
    def list_quarantine() -> list[dict[str, Any]]:
        """List quarantined sessions with their reasons."""
        with review.intake.db.reader() as session:
            return views.quarantine(session)

    @router.post("/quarantine/{label}/release")
    def release(label: str, body: ReleaseIn) -> dict[str, Any]:
        """Move a quarantined session into a project after that project's checks."""
        new = q.release(review, label, body.project, body.subject, body.session)
        with review.intake.db.reader() as session:
            return views.session_detail(session, body.project, new)

    @router.delete("/quarantine/{label}")
    def delete_quarantined(label: str) -> dict[str, Any]:
        """Delete a quarantined session and its instances (recorded)."""
        return {"deleted": label, "instances": q.delete_quarantined(review, label)}

    @router.post("/projects/{project}/study-cards/apply")
    def apply_cards(project: str) -> dict[str, Any]:
        """Re-apply a project's study cards to its archived sessions (no re-import)."""
        return {"project": project, "sessions": q.apply_study_cards(review, project)}

    return router
