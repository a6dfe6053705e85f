"""API tokens and browser sessions: random secrets handed out once, stored as digests.

A token reads ``dg_<43 url-safe characters>`` so it is recognisable in a leaked log or a
secret scanner and never confused with an OIDC JWT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets as _random
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dicomgate.archive.models import utcnow
from dicomgate.auth.models import ApiToken, User, WebSession
from dicomgate.auth.roles import Caller, Permission
from dicomgate.auth.users import caller_for
from dicomgate.errors import InvalidInputError, NotFoundError

TOKEN_PREFIX = "dg_"


def digest(secret: str) -> str:
    """Return the stored form of a secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite hands back naive datetimes for timezone-aware columns; all stored times are UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class TokenOut:
    """A token as listed (never the secret)."""

    id: int
    label: str
    projects: list[str] | None
    permissions: list[str] | None
    expires_at: dt.datetime | None
    revoked: bool


def create_token(
    session: Session,
    user_name: str,
    *,
    label: str = "",
    projects: list[str] | None = None,
    permissions: list[Permission] | None = None,
    expires_at: dt.datetime | None = None,
) -> str:
    """Create an API token for ``user_name``; return the secret (shown once)."""
    user = session.scalars(select(User).where(User.name == user_name)).first()
    if user is None:
        raise NotFoundError(f"no such user {user_name!r}")
    if expires_at is not None and _aware(expires_at) <= utcnow():
        raise InvalidInputError("the expiry lies in the past")
    secret = TOKEN_PREFIX + _random.token_urlsafe(32)
    session.add(
        ApiToken(
            user_pk=user.pk,
            digest=digest(secret),
            label=label[:128],
            projects=sorted(set(projects)) if projects is not None else None,
            permissions=sorted({p.value for p in permissions}) if permissions else None,
            expires_at=expires_at,
        )
    )
    session.flush()
    return secret


def revoke_token(session: Session, user_name: str, token_id: int) -> None:
    """Revoke one of ``user_name``'s tokens."""
    row = session.get(ApiToken, token_id)
    owner = session.get(User, row.user_pk) if row else None
    if row is None or owner is None or owner.name != user_name:
        raise NotFoundError("no such token")
    row.revoked_at = row.revoked_at or utcnow()


def list_tokens(session: Session, user_name: str) -> list[TokenOut]:
    """Return ``user_name``'s tokens."""
    query = select(ApiToken).join(User).where(User.name == user_name).order_by(ApiToken.pk)
    return [
        TokenOut(t.pk, t.label, t.projects, t.permissions, t.expires_at, t.revoked_at is not None)
        for t in session.scalars(query)
    ]


def caller_from_token(session: Session, secret: str, now: dt.datetime | None = None) -> Caller:
    """Return the caller a token acts as: the user's rights narrowed to the token's scope.

    Raises
    ------
    NotFoundError
        When the token is unknown, revoked or expired (the caller turns this into a 401).
    """
    row = session.scalars(select(ApiToken).where(ApiToken.digest == digest(secret))).first()
    now = now or utcnow()
    if row is None or row.revoked_at is not None:
        raise NotFoundError("unknown or revoked token")
    if row.expires_at is not None and _aware(row.expires_at) <= now:
        raise NotFoundError("expired token")
    base = caller_for(session, session.get_one(User, row.user_pk), "token")
    return Caller(
        name=base.name,
        is_admin=base.is_admin,
        roles=base.roles,
        can_reidentify=base.can_reidentify,
        scope_projects=frozenset(row.projects) if row.projects is not None else None,
        scope_permissions=(
            frozenset(Permission(p) for p in row.permissions) if row.permissions else None
        ),
        via="token",
    )


def open_web_session(session: Session, user: User, ttl: dt.timedelta) -> str:
    """Start a browser session for ``user``; return the cookie value."""
    secret = _random.token_urlsafe(32)
    session.add(WebSession(user_pk=user.pk, digest=digest(secret), expires_at=utcnow() + ttl))
    session.flush()
    return secret


def caller_from_web_session(session: Session, secret: str) -> Caller:
    """Return the caller of a live browser session, or raise NotFoundError."""
    row = session.scalars(select(WebSession).where(WebSession.digest == digest(secret))).first()
    if row is None or _aware(row.expires_at) <= utcnow():
        raise NotFoundError("unknown or expired session")
    return caller_for(session, session.get_one(User, row.user_pk), "session")


def close_web_session(session: Session, secret: str) -> None:
    """End a browser session (logout); unknown ones are ignored."""
    session.execute(delete(WebSession).where(WebSession.digest == digest(secret)))
