"""Job tables: one row per job, one per expected item, one per log line.

They live in the index database (same ``Base`` as the archive tables) so that recording an
item's outcome is one committed transaction next to the data it describes.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dicomgate.archive.models import PK, Base, utcnow


class Job(Base):
    """A durable job: kind, parameters, owner, status, progress, message, timestamps."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_kind", "status", "kind"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    status: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    # Progress: expected items, items with an outcome, items with an error outcome.
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    planned: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    worker: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column()
    resume_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobItem(Base):
    """One expected item of a job and, once known, its outcome (NULL while pending)."""

    __tablename__ = "job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "key_hash"),
        Index("ix_job_items_job_id_outcome", "job_id", "outcome"),
    )
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # Keys may be long file paths: uniqueness is on their SHA-256.
    key_hash: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobLog(Base):
    """One line of a job's log (no PHI)."""

    __tablename__ = "job_logs"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
