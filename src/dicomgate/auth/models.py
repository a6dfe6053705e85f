"""Tables of local users, their project roles, API tokens and browser sessions.

Secrets are never stored: passwords as argon2 hashes, tokens and session ids as SHA-256 of
high-entropy random values (a slow hash adds nothing for 256-bit secrets).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import PK, Base, utcnow


class User(Base):
    """A local user."""

    __tablename__ = "users"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    can_reidentify: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ProjectRole(Base):
    """One user's role in one project."""

    __tablename__ = "project_roles"
    __table_args__ = (UniqueConstraint("user_pk", "project_id"),)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))


class ApiToken(Base):
    """A token for scripts: scoped, expiring, revocable, stored hashed."""

    __tablename__ = "api_tokens"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(128), default="")
    projects: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    permissions: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebSession(Base):
    """A browser session after login (the cookie holds the secret, the row its digest)."""

    __tablename__ = "web_sessions"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    user_pk: Mapped[int] = mapped_column(ForeignKey("users.pk", ondelete="CASCADE"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
