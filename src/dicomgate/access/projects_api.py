"""Projects over REST: list, create, browse subjects -> sessions -> scans, equipment seen.

A caller sees the projects they hold a role in (site admins: all); any other answers 404
like a missing one. Creating a project is for site admins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from dicomgate.archive import projects, sessions
from dicomgate.auth.audit import AuditEvent
from dicomgate.auth.guard import Gate, can_read, require, require_site
from dicomgate.auth.roles import Permission
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


def create_projects_api(db: Database, gate: Gate) -> APIRouter:
    """Return the projects router over ``db``."""
    router = APIRouter(prefix="/api/projects", tags=["projects"])

    def readable(request: Request, project: str) -> None:
        require(gate.caller(request), project, Permission.READ)

    @router.get("")
    def list_projects(request: Request) -> list[dict[str, Any]]:
        """List the caller's projects with their archive policy and subject/session counts."""
        caller = gate.caller(request)
        with db.reader() as session:
            found = projects.list_projects(session)
        return [asdict(p) for p in found if can_read(caller, p.id)]

    @router.post("", status_code=201)
    def create(body: ProjectIn, request: Request) -> dict[str, Any]:
        """Create a project (site admins); 409 when it exists."""
        objects = {"project": body.id}
        with gate.audited(request, AuditEvent.APPLICATION_ACTIVITY, "project_create", objects):
            require_site(gate.caller(request))
            with db.unit_of_work() as session:
                projects.create_project(
                    session, body.id, body.name, body.description, body.archive_policy
                )
        with db.reader() as session:
            return asdict(projects.get_project(session, body.id))

    @router.get("/{project}")
    def get(project: str, request: Request) -> dict[str, Any]:
        """Return one project."""
        readable(request, project)
        with db.reader() as session:
            return asdict(projects.get_project(session, project))

    @router.get("/{project}/subjects")
    def subjects(project: str, request: Request) -> list[dict[str, Any]]:
        """List the subjects of a project with their session counts."""
        readable(request, project)
        with db.reader() as session:
            projects.require_project(session, project)
            return sessions.subjects(session, project)

    _browse_routes(router, db, readable)
    return router


def _browse_routes(
    router: APIRouter, db: Database, readable: Callable[[Request, str], None]
) -> None:
    @router.get("/{project}/subjects/{subject}/sessions")
    def subject_sessions(project: str, subject: str, request: Request) -> list[dict[str, Any]]:
        """List the sessions of one subject."""
        readable(request, project)
        with db.reader() as session:
            projects.require_project(session, project)
            found = sessions.sessions_of(session, project, subject)
            return [views.session_summary(row) for row in found]

    @router.get("/{project}/sessions/{label}")
    def session_detail(project: str, label: str, request: Request) -> dict[str, Any]:
        """Return one session with its scans and instance counts."""
        readable(request, project)
        with db.reader() as session:
            return views.session_detail(session, project, label)

    @router.get("/{project}/equipment")
    def equipment(project: str, request: Request) -> list[dict[str, Any]]:
        """List the acquisition equipment seen for a project (to write study cards from)."""
        readable(request, project)
        with db.reader() as session:
            projects.require_project(session, project)
            return sessions.equipment_seen(session, project)
