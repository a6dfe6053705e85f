"""The server-side inbox: import a folder or file already on the server, as a job.

A path is accepted only when it resolves, after following every link, inside
``<inbox_root>/<project>/`` and the project exists; otherwise a clear error and nothing is
read. Containment is checked before existence so an answer never tells whether a path
outside the inbox exists. Inside, the import job itself never follows a link.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from dicomgate.archive.models import Project
from dicomgate.auth.guard import require_import
from dicomgate.auth.roles import Caller
from dicomgate.db import Database
from dicomgate.errors import InvalidInputError, NotFoundError
from dicomgate.intake.origin import OriginKind
from dicomgate.jobs import Jobs
from dicomgate.sources.files import KIND

_PROJECT_ID = r"^[A-Za-z0-9_-]+$"
_LABEL = r"^[A-Za-z0-9_.\- ]+$"
MAX_PATH = 4096


class InboxImport(BaseModel):
    """``POST /api/imports``: what to import, into which project, with which labels."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=MAX_PATH)
    project: str = Field(pattern=_PROJECT_ID, max_length=64)
    subject: str | None = Field(default=None, pattern=_LABEL, max_length=64)
    session: str | None = Field(default=None, pattern=_LABEL, max_length=64)
    cleanup: bool = False


def resolve_inbox_path(inbox_root: Path, project: str, path: str) -> Path:
    """Return ``path`` resolved, refusing anything that is not inside the project's inbox.

    Parameters
    ----------
    inbox_root
        The configured ``jobs.inbox_root``.
    project
        The project id (already validated as ``[A-Za-z0-9_-]``).
    path
        Absolute, or relative to ``<inbox_root>/<project>/``.

    Raises
    ------
    InvalidInputError
        When the path is outside the project's inbox (also through links or ``..``), does not
        exist, or is neither a folder nor a regular file.
    """
    if "\x00" in path:
        raise InvalidInputError("path holds a NUL character")
    base = (inbox_root / project).resolve()
    candidate = Path(path) if Path(path).is_absolute() else base / path
    try:
        loose = candidate.resolve(strict=False)
    except (OSError, RuntimeError):
        raise InvalidInputError("path cannot be resolved (a link loop?)") from None
    if not loose.is_relative_to(base):
        raise InvalidInputError(f"path is outside the inbox of project {project}")
    try:
        resolved = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidInputError(f"path does not exist in the inbox of project {project}") from None
    if not resolved.is_relative_to(base):  # a link changed between the two looks
        raise InvalidInputError(f"path is outside the inbox of project {project}")
    if not (resolved.is_dir() or resolved.is_file()):
        raise InvalidInputError("path is neither a folder nor a regular file")
    return resolved


def submit_inbox_import(
    jobs: Jobs, db: Database, inbox_root: Path | None, request: InboxImport, caller: Caller
) -> str:
    """Check the request and submit an ``import_files`` job for it; return the job id.

    The caller needs ``write`` in the project; they own the job.

    Raises
    ------
    NotFoundError
        When the inbox is not configured or the project does not exist (or the caller may
        not see it).
    ForbiddenError
        When the caller may see the project but not import into it.
    InvalidInputError
        When the path is refused (see ``resolve_inbox_path``).
    """
    if inbox_root is None:
        raise NotFoundError("the server-side inbox is not enabled (set jobs.inbox_root)")
    require_import(caller, request.project, f"no such project: {request.project}")
    with db.reader() as session:
        if session.scalar(select(Project.id).where(Project.id == request.project)) is None:
            raise NotFoundError(f"no such project: {request.project}")
    resolved = resolve_inbox_path(inbox_root, request.project, request.path)
    params = {
        "paths": [str(resolved)],
        "origin": OriginKind.INBOX.value,
        "project": request.project,
        "subject": request.subject,
        "session": request.session,
        "cleanup": request.cleanup,
        "keep": str((inbox_root / request.project).resolve()),
    }
    return jobs.submit(KIND, params, caller.name)
