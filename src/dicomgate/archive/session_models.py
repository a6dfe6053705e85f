"""Index tables of projects' contents and of the prearchive review.

- ``ProjectPolicy``: a project's archive policy (auto-archive or manual review).
- ``ArchivedSession``: one session (one DICOM study) archived in a project under a subject and a
  session label; the header values the labels came from are kept in ``original`` (PHI: never log).
  Its instances are those of the staging sessions that point at it (``StagingReview``).
- ``StagingReview``: what the checks found for one staging session (labels, target, warnings,
  RT hold) and which archived session it ended in.
- ``EquipmentSeen``: acquisition equipment that arrived for a project, so study cards can be
  written from what came in.
- ``PrearchiveAction``: one review action with its details; the change log points at it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import PK, Base, utcnow


class ProjectPolicy(Base):
    """How a project takes clean sessions: ``auto`` archives them, ``manual`` waits for review."""

    __tablename__ = "project_policies"
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    archive_policy: Mapped[str] = mapped_column(String(16), default="auto")


class ArchivedSession(Base):
    """One study archived in a project under subject and session labels."""

    __tablename__ = "archived_sessions"
    __table_args__ = (UniqueConstraint("project_id", "label"),)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    subject_label: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[str] = mapped_column(String(64))
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk"), index=True)
    original: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    proposed_project: Mapped[str | None] = mapped_column(String(64))
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    scans: Mapped[dict[str, Any]] = mapped_column(default=dict)
    frames_of_reference: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StagingReview(Base):
    """The checks' findings for one staging session, and where it was archived."""

    __tablename__ = "staging_reviews"
    staging_pk: Mapped[int] = mapped_column(ForeignKey("staging_sessions.pk"), primary_key=True)
    subject_label: Mapped[str | None] = mapped_column(String(64))
    session_label: Mapped[str | None] = mapped_column(String(64))
    labels_fixed: Mapped[bool] = mapped_column(default=False)
    project_fixed: Mapped[bool] = mapped_column(default=False)
    original: Mapped[dict[str, Any]] = mapped_column(default=dict)
    proposed_project: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    hold_until: Mapped[dt.datetime | None] = mapped_column()
    evaluated_at: Mapped[dt.datetime | None] = mapped_column()
    archived_session_pk: Mapped[int | None] = mapped_column(
        ForeignKey("archived_sessions.pk"), index=True
    )


class EquipmentSeen(Base):
    """One piece of acquisition equipment seen for a project."""

    __tablename__ = "equipment_seen"
    __table_args__ = (UniqueConstraint("project_id", "key"),)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    serial: Mapped[str | None] = mapped_column(String(64))
    station: Mapped[str | None] = mapped_column(String(64))
    field_strength: Mapped[float | None] = mapped_column(Float)
    sessions: Mapped[int] = mapped_column(Integer, default=0)
    first_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PrearchiveAction(Base):
    """One review action (archive, rename, move, merge, delete, release) and its details."""

    __tablename__ = "prearchive_actions"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    action: Mapped[str] = mapped_column(String(32), index=True)
    staging_pk: Mapped[int | None] = mapped_column(BigInteger, index=True)
    archived_session_pk: Mapped[int | None] = mapped_column(BigInteger, index=True)
    project_id: Mapped[str | None] = mapped_column(String(64))
    user: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
