"""Which jobs a caller may see and change: those they started, and those of their projects.

A job's projects are the ones its parameters name (``project`` for imports and retrieves,
``source_project`` and ``target_project`` for a share). A caller sees a job they own or one
naming a project they may read; they may cancel or retry one they own or one naming a project
they may write. A job naming no project is visible to its owner and site admins only. A job
the caller may not see answers like a missing one.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, false, or_, true

from dicomgate.auth.roles import Caller, Permission
from dicomgate.errors import ForbiddenError, NotFoundError
from dicomgate.jobs.models import Job

PROJECT_KEYS = ("project", "source_project", "target_project")


def job_projects(job: Job) -> list[str]:
    """Return the projects a job's parameters name."""
    params = job.params or {}
    return [str(params[key]) for key in PROJECT_KEYS if isinstance(params.get(key), str)]


def visible_jobs(caller: Caller | None) -> ColumnElement[bool]:
    """Return the SQL condition "the caller may see this job" (``None``: no restriction)."""
    if caller is None:
        return true()
    projects = caller.visible_projects()
    if projects is None:
        return true()
    owned = Job.owner == caller.name
    if caller.scope_projects is not None:
        owned = false()  # a scoped token sees its projects' jobs, owned or not
    if not projects:
        return owned
    named = [Job.params[key].as_string().in_(sorted(projects)) for key in PROJECT_KEYS]
    return or_(owned, *named)


def _owns(caller: Caller, job: Job, permission: Permission) -> bool:
    # A token narrowed to other projects or to fewer permissions does not carry ownership.
    if job.owner is None or job.owner != caller.name:
        return False
    scope = caller.scope_permissions
    if scope is not None and permission not in scope:
        return False
    projects = caller.scope_projects
    return projects is None or any(p in projects for p in job_projects(job))


def can_see(caller: Caller, job: Job) -> bool:
    """Return True when the caller may see ``job``."""
    if _owns(caller, job, Permission.READ):
        return True
    projects = caller.visible_projects()
    return projects is None or any(p in projects for p in job_projects(job))


def require_visible(caller: Caller | None, job: Job) -> None:
    """Raise ``NotFoundError`` (as for a missing job) unless the caller may see ``job``."""
    if caller is not None and not can_see(caller, job):
        raise NotFoundError("no such job")


def require_writable(caller: Caller | None, job: Job) -> None:
    """Raise unless the caller may cancel or retry ``job`` (404 when they may not see it).

    Raises
    ------
    NotFoundError
        When the caller may not see the job.
    ForbiddenError
        When they may see it but neither own it nor write in one of its projects.
    """
    if caller is None:
        return
    require_visible(caller, job)
    if _owns(caller, job, Permission.WRITE):
        return
    if caller.visible_projects() is None and caller.allows(Permission.WRITE, None):
        return
    if not any(caller.allows(Permission.WRITE, p) for p in job_projects(job)):
        raise ForbiddenError("only its owner or a writer of its project may change this job")
