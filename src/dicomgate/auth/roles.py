"""Roles, permissions and the ``Caller``: who is asking, and what they may do in which project.

A caller's rights are the intersection of what their user holds (site admin, project roles,
the separate ``reidentify`` permission) and, for an API token, what the token was scoped to.
The two refusal rules live here so every service applies them alike: a project the caller
cannot read answers as if it did not exist (404); one they can read but not write answers 403.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from dicomgate.errors import ForbiddenError, NotFoundError


class Role(enum.StrEnum):
    """A user's role in one project."""

    OWNER = "owner"
    MEMBER = "member"
    COLLABORATOR = "collaborator"


class Permission(enum.StrEnum):
    """What an action needs."""

    READ = "read"
    WRITE = "write"  # import, review, archive
    MANAGE = "manage"  # members and project settings
    REIDENTIFY = "reidentify"  # the identity vault, never implied by a project role
    ADMIN = "admin"  # site administration


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OWNER: frozenset({Permission.READ, Permission.WRITE, Permission.MANAGE}),
    Role.MEMBER: frozenset({Permission.READ, Permission.WRITE}),
    Role.COLLABORATOR: frozenset({Permission.READ}),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller.

    Parameters
    ----------
    name
        The user name (local user, or the OIDC subject / preferred name).
    is_admin
        Site administrator: every permission in every project except ``reidentify``.
    roles
        Project id -> role.
    can_reidentify
        Holds the separate ``reidentify`` permission.
    scope_projects
        For an API token: the projects it was limited to (``None``: the user's projects).
    scope_permissions
        For an API token: the permissions it was limited to (``None``: the user's).
    via
        How the caller authenticated (``token``, ``oidc``, ``session``, ``basic``, ``open``).
    """

    name: str
    is_admin: bool = False
    roles: Mapping[str, Role] = field(default_factory=dict)
    can_reidentify: bool = False
    scope_projects: frozenset[str] | None = None
    scope_permissions: frozenset[Permission] | None = None
    via: str = "token"

    def _scoped(self, permission: Permission, project: str | None) -> bool:
        if self.scope_permissions is not None and permission not in self.scope_permissions:
            return False
        return self.scope_projects is None or project is None or project in self.scope_projects

    def allows(self, permission: Permission, project: str | None = None) -> bool:
        """Return True when the caller holds ``permission`` (in ``project`` when given)."""
        if not self._scoped(permission, project):
            return False
        if permission is Permission.REIDENTIFY:
            return self.can_reidentify
        if self.is_admin:
            return True
        if permission is Permission.ADMIN or project is None:
            return False
        role = self.roles.get(project)
        return role is not None and permission in ROLE_PERMISSIONS[role]

    def visible_projects(self) -> frozenset[str] | None:
        """Return the projects the caller may read; ``None`` means every project."""
        if self.is_admin:
            return self.scope_projects
        mine = frozenset(self.roles)
        return mine if self.scope_projects is None else mine & self.scope_projects

    def require(self, permission: Permission, project: str | None = None) -> None:
        """Raise unless the caller holds ``permission`` in ``project``.

        Raises
        ------
        NotFoundError
            When the caller may not even read the project (it must look absent).
        ForbiddenError
            When the caller may read the project but not do this.
        """
        if self.allows(permission, project):
            return
        if project is not None and not self.allows(Permission.READ, project):
            raise NotFoundError(f"no such project {project!r}")
        raise ForbiddenError(f"this needs the {permission.value!r} permission")


OPEN_CALLER = Caller(name="anonymous", is_admin=True, can_reidentify=False, via="open")
"""The caller of a service run with authentication disabled (loopback only)."""
