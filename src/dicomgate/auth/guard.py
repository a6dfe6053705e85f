"""Authorising and auditing actions: ``require()`` for services, ``Gate`` for REST routers.

Services call ``require(caller, project, permission)`` before they change anything, so the
rule holds whichever edge called them: an object in a project the caller may not read is
refused with the very message its absence gives (404), one they may read but not change with
403. Routers wrap each write in ``Gate.audited(...)``, which records who, what, from where and
the outcome (refusals and failures too) in the audit trail.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from dicomgate.auth.audit import AuditEvent, AuditTrail, Outcome
from dicomgate.auth.roles import OPEN_CALLER, Caller, Permission
from dicomgate.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthenticatedError,
)

_REFUSALS = (NotFoundError, ForbiddenError, UnauthenticatedError, ConflictError, InvalidInputError)


def can_read(caller: Caller, project: str | None) -> bool:
    """Return True when the caller may read rows of ``project`` (``None``: site admins only)."""
    projects = caller.visible_projects()
    return projects is None or (project is not None and project in projects)


def require(
    caller: Caller, project: str | None, permission: Permission, missing: str | None = None
) -> None:
    """Raise unless ``caller`` holds ``permission`` in ``project``.

    Parameters
    ----------
    caller
        Who acts.
    project
        The project of the object acted on; ``None`` for an object with no project yet,
        which only site admins may see.
    permission
        What the action needs.
    missing
        The message of the ``NotFoundError`` the object's absence raises, so that an object
        the caller may not see answers exactly like a missing one (default: the project's).

    Raises
    ------
    NotFoundError
        When the caller may not read the project.
    ForbiddenError
        When they may read it but not do this.
    """
    require_one_of(caller, [project], permission, missing or f"no project {project}")


def require_one_of(
    caller: Caller, projects: Sequence[str | None], permission: Permission, missing: str
) -> None:
    """Raise unless ``caller`` holds ``permission`` in one of ``projects`` (see ``require``).

    For an object that more than one project may act on (a quarantined session: QUARANTINE
    and the project it was meant for).
    """
    if any(caller.allows(permission, project) for project in projects):
        return
    if not any(can_read(caller, project) for project in projects):
        raise NotFoundError(missing)
    named = ", ".join(p for p in projects if p)
    raise ForbiddenError(f"this needs the {permission.value!r} permission in project {named}")


def require_import(caller: Caller, project: str | None, missing: str) -> None:
    """Raise unless the caller may import into ``project`` (see ``require``).

    Without a project the sorting protocol picks one, possibly any: site admins only.
    """
    if project is None:
        if caller.visible_projects() is None and caller.allows(Permission.WRITE):
            return
        raise ForbiddenError("name the project to import into (only site admins may leave it out)")
    require(caller, project, Permission.WRITE, missing)


def require_site(caller: Caller, permission: Permission = Permission.ADMIN) -> None:
    """Raise ``ForbiddenError`` unless the caller holds ``permission`` site-wide."""
    if not caller.allows(permission):
        raise ForbiddenError(f"this needs the site {permission.value!r} permission")


def require_any(caller: Caller, permission: Permission) -> None:
    """Raise ``ForbiddenError`` unless the caller holds ``permission`` in some project."""
    projects = caller.visible_projects()
    if projects is None and caller.allows(permission):
        return
    if not any(caller.allows(permission, p) for p in projects or ()):
        raise ForbiddenError(f"this needs the {permission.value!r} permission in a project")


def local_caller() -> Caller:
    """Return the caller of a command run on the server (``dicomgate ...``): a site admin."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Caller(name=f"cli:{who}", is_admin=True, via="cli")


def outcome_of(exc: BaseException) -> Outcome:
    """Return the audit outcome of an action that raised ``exc``."""
    return Outcome.MINOR_FAILURE if isinstance(exc, _REFUSALS) else Outcome.SERIOUS_FAILURE


@dataclass
class Acting:
    """One audited action under way: its caller and the objects to record (add ids to it)."""

    caller: Caller
    objects: dict[str, Any] = field(default_factory=dict)


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


class Gate:
    """What a REST router needs to authorise and audit: the caller dependency, the trail.

    Parameters
    ----------
    current
        The dependency resolving a request's caller (``auth.http.caller_dependency``).
    audit
        The audit trail; ``None`` only for routers composed without one (nothing recorded).
    """

    def __init__(self, current: Callable[[Request], Caller], audit: AuditTrail | None) -> None:
        self.current = current
        self.audit = audit

    def caller(self, request: Request) -> Caller:
        """Return the request's caller: the one the dependency left on it, else resolved."""
        cached = getattr(request.state, "caller", None)
        return cached if isinstance(cached, Caller) else self.current(request)

    def record(
        self,
        request: Request,
        event: AuditEvent,
        action: str,
        act: Acting,
        outcome: Outcome = Outcome.SUCCESS,
        detail: str = "",
    ) -> None:
        """Append one record of ``act`` to the trail (when there is one)."""
        if self.audit is None:
            return
        self.audit.record(
            event,
            action,
            actor=act.caller.name,
            source=_client(request),
            outcome=outcome,
            objects=act.objects,
            detail=detail,
        )

    @contextmanager
    def audited(
        self,
        request: Request,
        event: AuditEvent,
        action: str,
        objects: dict[str, Any] | None = None,
    ) -> Iterator[Acting]:
        """Run one action and record it with its outcome, refused or failed ones too.

        The detail of a failure is the error's class only: messages may name labels.
        """
        act = Acting(self.caller(request), dict(objects or {}))
        try:
            yield act
        except BaseException as exc:
            self.record(request, event, action, act, outcome_of(exc), type(exc).__name__)
            raise
        self.record(request, event, action, act)


def open_gate() -> Gate:
    """Return a gate with no authentication and no trail: for routers tested on their own.

    Every request is the open caller (a site admin) unless something left a caller on it.
    ``create_app`` never uses it.
    """
    return Gate(lambda _request: OPEN_CALLER, None)
