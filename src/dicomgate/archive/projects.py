"""Projects: creation (config file or REST), archive policy, and the QUARANTINE project.

Functions take the session explicitly and never commit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicomgate.archive.index import ensure_project, log_change
from dicomgate.archive.models import Project
from dicomgate.archive.session_models import ArchivedSession, ProjectPolicy
from dicomgate.errors import ConflictError, InvalidInputError, NotFoundError

QUARANTINE = "QUARANTINE"
AUTO, MANUAL = "auto", "manual"
PROJECT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project as the API and CLI show it."""

    id: str
    name: str
    description: str
    archive_policy: str
    subjects: int
    sessions: int


def check_project_id(project_id: str) -> str:
    """Return ``project_id`` when it is a valid id, else raise ``InvalidInputError``."""
    if not PROJECT_ID.fullmatch(project_id):
        raise InvalidInputError(f"project id {project_id!r} does not match [A-Za-z0-9_-]{{1,64}}")
    return project_id


def sync_project(
    session: Session, project_id: str, name: str = "", description: str = "", policy: str = AUTO
) -> None:
    """Create or update a project declared in the config file (the file wins)."""
    ensure_project(session, project_id, name)
    row = session.get_one(Project, project_id)
    row.name, row.description = name or project_id, description
    _set_policy(session, project_id, policy)


def ensure_quarantine(session: Session) -> None:
    """Create the QUARANTINE project; it always exists and is always reviewed by hand."""
    ensure_project(session, QUARANTINE, "Quarantine")
    _set_policy(session, QUARANTINE, MANUAL)


def create_project(
    session: Session, project_id: str, name: str = "", description: str = "", policy: str = AUTO
) -> None:
    """Create a new project (REST ``POST /api/projects``).

    Raises
    ------
    InvalidInputError
        For a bad id or policy.
    ConflictError
        When the project exists.
    """
    check_project_id(project_id)
    if policy not in (AUTO, MANUAL):
        raise InvalidInputError("archive_policy must be 'auto' or 'manual'")
    if session.get(Project, project_id) is not None:
        raise ConflictError(f"project {project_id} already exists")
    session.add(Project(id=project_id, name=name or project_id, description=description))
    session.flush()
    _set_policy(session, project_id, policy)
    log_change(session, "project_created", "project", 0)


def _set_policy(session: Session, project_id: str, policy: str) -> None:
    row = session.get(ProjectPolicy, project_id)
    if row is None:
        session.add(ProjectPolicy(project_id=project_id, archive_policy=policy))
    else:
        row.archive_policy = policy
    session.flush()


def archive_policy(session: Session, project_id: str) -> str:
    """Return ``auto`` or ``manual`` (``auto`` for a project with no policy row)."""
    row = session.get(ProjectPolicy, project_id)
    return row.archive_policy if row else AUTO


def require_project(session: Session, project_id: str) -> Project:
    """Return the project row, or raise ``NotFoundError``."""
    row = session.get(Project, project_id) if PROJECT_ID.fullmatch(project_id) else None
    if row is None:
        raise NotFoundError(f"no project {project_id}")
    return row


def list_projects(session: Session) -> list[ProjectInfo]:
    """Return every project with its subject and session counts."""
    counts = {
        row[0]: (int(row[1]), int(row[2]))
        for row in session.execute(
            select(
                ArchivedSession.project_id,
                func.count(func.distinct(ArchivedSession.subject_label)),
                func.count(ArchivedSession.pk),
            ).group_by(ArchivedSession.project_id)
        )
    }
    out = []
    for project in session.scalars(select(Project).order_by(Project.id)):
        subjects, sessions = counts.get(project.id, (0, 0))
        policy = archive_policy(session, project.id)
        info = ProjectInfo(
            project.id, project.name, project.description, policy, subjects, sessions
        )
        out.append(info)
    return out


def get_project(session: Session, project_id: str) -> ProjectInfo:
    """Return one project with its counts, or raise ``NotFoundError``."""
    require_project(session, project_id)
    return next(p for p in list_projects(session) if p.id == project_id)
