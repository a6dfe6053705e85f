"""Projects over REST: list, create, browse subjects -> sessions -> scans, equipment seen."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from dicomgate.archive import projects, sessions
from dicomgate.db import Database
from dicomgate.prearchive import views

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class ProjectIn(BaseModel):
    """A project to create."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    name: str = Field(default="", max_length=256)
    description: str = Field(default="", max_length=4000)
    archive_policy: str = Field(default="auto", pattern=r"^(auto|manual)$")


def create_projects_api(db: Database) -> APIRouter:
    """Return the projects router over ``db``."""
    router = APIRouter(prefix="/api/projects", tags=["projects"])

    @router.get("")
    def list_projects() -> list[dict[str, Any]]:
        """List projects with their archive policy and subject/session counts."""
        with db.reader() as session:
            return [asdict(p) for p in projects.list_projects(session)]

    @router.post("", status_code=201)
    def create(body: ProjectIn) -> dict[str, Any]:
        """Create a project; 409 when it exists."""
        with db.unit_of_work() as session:
            projects.create_project(
                session, body.id, body.name, body.description, body.archive_policy
            )
        with db.reader() as session:
            return asdict(projects.get_project(session, body.id))

    @router.get("/{project}")
    def get(project: str) -> dict[str, Any]:
        """Return one project."""
        with db.reader() as session:
            return asdict(projects.get_project(session, project))

    @router.get("/{project}/subjects")
    def subjects(project: str) -> list[dict[str, Any]]:
        """List the subjects of a project with their session counts."""
        with db.reader() as session:
            projects.require_project(session, project)
            return sessions.subjects(session, project)

    @router.get("/{project}/subjects/{subject}/sessions")
    def subject_sessions(project: str, subject: str) -> list[dict[str, Any]]:
        """List the sessions of one subject."""
        with db.reader() as session:
            projects.require_project(session, project)
            found = sessions.sessions_of(session, project, subject)
            return [views.session_summary(row) for row in found]

    @router.get("/{project}/sessions/{label}")
    def session_detail(project: str, label: str) -> dict[str, Any]:
        """Return one session with its scans and instance counts."""
        with db.reader() as session:
            return views.session_detail(session, project, label)

    @router.get("/{project}/equipment")
    def equipment(project: str) -> list[dict[str, Any]]:
        """List the acquisition equipment seen for a project (to write study cards from)."""
        with db.reader() as session:
            projects.require_project(session, project)
            return sessions.equipment_seen(session, project)

    return router
