"""Local users: create, list, remove, change password, grant roles, check a password.

Every function takes the session explicitly and never commits.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from dicomgate.archive.models import Project
from dicomgate.auth.models import ProjectRole, User
from dicomgate.auth.roles import Caller, Role
from dicomgate.errors import ConflictError, InvalidInputError, NotFoundError

_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_MIN_PASSWORD = 12
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Return a hash to verify against when the user does not exist.

    It keeps the time of "no such user" equal to "wrong password". Made on first use: hashing
    takes about 0.1 s, which every command and process importing this module paid.
    """
    return _hasher.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class UserOut:
    """A user as listed (never the hash)."""

    name: str
    is_admin: bool
    can_reidentify: bool
    roles: dict[str, str]


def _check_password(password: str) -> None:
    if len(password) < _MIN_PASSWORD:
        raise InvalidInputError(f"a password needs at least {_MIN_PASSWORD} characters")


def _get(session: Session, name: str) -> User:
    user = session.scalars(select(User).where(User.name == name)).first()
    if user is None:
        raise NotFoundError(f"no such user {name!r}")
    return user


def add_user(
    session: Session, name: str, password: str, *, admin: bool = False, reidentify: bool = False
) -> None:
    """Create a local user.

    Raises
    ------
    InvalidInputError
        When the name or password is not acceptable.
    ConflictError
        When the name is taken.
    """
    if not _NAME.match(name):
        raise InvalidInputError("a user name is 1-64 letters, digits or _ . @ -")
    _check_password(password)
    if session.scalars(select(User.pk).where(User.name == name)).first() is not None:
        raise ConflictError(f"user {name!r} exists")
    hashed = _hasher.hash(password)
    session.add(User(name=name, password_hash=hashed, is_admin=admin, can_reidentify=reidentify))
    session.flush()


def remove_user(session: Session, name: str) -> None:
    """Remove a user with their roles, tokens and sessions."""
    user = _get(session, name)
    session.delete(user)
    session.flush()


def set_password(session: Session, name: str, password: str) -> None:
    """Replace a user's password."""
    _check_password(password)
    _get(session, name).password_hash = _hasher.hash(password)


def grant(session: Session, name: str, project: str, role: Role | None) -> None:
    """Give ``name`` a role in ``project``, or take it away when ``role`` is None."""
    user = _get(session, name)
    if session.get(Project, project) is None:
        raise NotFoundError(f"no such project {project!r}")
    session.execute(
        delete(ProjectRole).where(ProjectRole.user_pk == user.pk, ProjectRole.project_id == project)
    )
    if role is not None:
        session.add(ProjectRole(user_pk=user.pk, project_id=project, role=role.value))
    session.flush()


def list_users(session: Session) -> list[UserOut]:
    """Return every user with their roles."""
    roles: dict[int, dict[str, str]] = {}
    for row in session.scalars(select(ProjectRole)):
        roles.setdefault(row.user_pk, {})[row.project_id] = row.role
    return [
        UserOut(u.name, u.is_admin, u.can_reidentify, roles.get(u.pk, {}))
        for u in session.scalars(select(User).order_by(User.name))
    ]


def authenticate(session: Session, name: str, password: str) -> User | None:
    """Return the user when the password matches, else None (constant-time either way)."""
    user = session.scalars(select(User).where(User.name == name)).first()
    try:
        _hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    return user


def caller_for(session: Session, user: User, via: str) -> Caller:
    """Return the caller a local user acts as (their full rights)."""
    rows = session.scalars(select(ProjectRole).where(ProjectRole.user_pk == user.pk))
    return Caller(
        name=user.name,
        is_admin=user.is_admin,
        roles={row.project_id: Role(row.role) for row in rows},
        can_reidentify=user.can_reidentify,
        via=via,
    )


def ensure_admin(session: Session, password: str | None) -> str | None:
    """Create the ``admin`` user when no user exists.

    Returns
    -------
    str or None
        The generated password (to print once) when one was generated, else None.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    generated = None if password else secrets.token_urlsafe(18)
    add_user(session, "admin", password or generated or "", admin=True)
    return generated
