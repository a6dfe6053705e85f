"""Index tables: the DICOM hierarchy, projects, staging sessions, set-aside items, change log.

Patient-level attributes are repeated on the study row so that a QIDO-RS study search reads
one table; the patient table serves patient-level queries.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)
# BigInteger autoincrement is INTEGER PRIMARY KEY on SQLite (rowid) and BIGSERIAL on PostgreSQL.
PK = BigInteger().with_variant(Integer(), "sqlite")
# Intake remembers these pks by UID across transactions and processes (``KnownRows``): SQLite
# must not hand a deleted last row's pk to the next insert (migration 0109).
NEVER_REUSE_PKS: dict[str, Any] = {"sqlite_autoincrement": True}


def utcnow() -> dt.datetime:
    """Return the current time in UTC (all stored times are UTC)."""
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with the shared metadata."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Project(Base):
    """The unit of access and of de-identification."""

    __tablename__ = "projects"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Patient(Base):
    """A patient as the DICOM hierarchy knows it (Patient ID + issuer)."""

    __tablename__ = "patients"
    __table_args__ = (UniqueConstraint("patient_id", "issuer"), NEVER_REUSE_PKS)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(64), default="")
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    birth_date: Mapped[str] = mapped_column(String(16), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Study(Base):
    """One study; patient attributes are repeated for one-table QIDO searches."""

    __tablename__ = "studies"
    __table_args__ = (NEVER_REUSE_PKS,)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    patient_pk: Mapped[int] = mapped_column(ForeignKey("patients.pk"), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    patient_name: Mapped[str] = mapped_column(String(324), default="")
    patient_birth_date: Mapped[str] = mapped_column(String(16), default="")
    patient_sex: Mapped[str] = mapped_column(String(16), default="")
    study_date: Mapped[str] = mapped_column(String(16), default="", index=True)
    study_time: Mapped[str] = mapped_column(String(32), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_id: Mapped[str] = mapped_column(String(64), default="")
    study_description: Mapped[str] = mapped_column(String(256), default="")
    referring_physician_name: Mapped[str] = mapped_column(String(324), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Series(Base):
    """One series of a study."""

    __tablename__ = "series"
    __table_args__ = (NEVER_REUSE_PKS,)
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    series_uid: Mapped[str] = mapped_column(UID, unique=True)
    study_pk: Mapped[int] = mapped_column(ForeignKey("studies.pk"), index=True)
    modality: Mapped[str] = mapped_column(String(16), default="", index=True)
    series_number: Mapped[int | None] = mapped_column(Integer)
    series_description: Mapped[str] = mapped_column(String(256), default="")
    body_part_examined: Mapped[str] = mapped_column(String(64), default="")
    series_date: Mapped[str] = mapped_column(String(16), default="")
    series_time: Mapped[str] = mapped_column(String(32), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Instance(Base):
    """One stored instance and where its bytes are."""

    __tablename__ = "instances"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    # Indexed by ix_instances_series_pk_instance_number (migration 0005), series_pk first.
    series_pk: Mapped[int] = mapped_column(ForeignKey("series.pk"))
    staging_pk: Mapped[int | None] = mapped_column(ForeignKey("staging_sessions.pk"), index=True)
    sop_class_uid: Mapped[str] = mapped_column(UID)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    number_of_frames: Mapped[int | None] = mapped_column(Integer)
    blob_key: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StagingSession(Base):
    """The raw instances of one study from one source, on their way to the archive."""

    __tablename__ = "staging_sessions"
    __table_args__ = (
        Index("ix_staging_sessions_source_study", "source_key", "study_uid"),
        NEVER_REUSE_PKS,
    )
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    source_key: Mapped[str] = mapped_column(String(256))
    study_uid: Mapped[str] = mapped_column(UID)
    status: Mapped[str] = mapped_column(String(16), index=True)
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id"))
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SetAside(Base):
    """An item intake did not store in the archive: rejected or a conflicting duplicate."""

    __tablename__ = "set_aside"
    pk: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(String(64), index=True)
    message: Mapped[str] = mapped_column(Text)
    sop_instance_uid: Mapped[str | None] = mapped_column(String(128), index=True)
    blob_key: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    origin: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The staging session a conflicting duplicate arrived with (migration 0003).
    staging_pk: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Change(Base):
    """Append-only change log; consumers resume with ``since=<seq>``."""

    __tablename__ = "changes"
    seq: Mapped[int] = mapped_column(PK, primary_key=True, autoincrement=True)
    change_type: Mapped[str] = mapped_column(String(32))
    resource_type: Mapped[str] = mapped_column(String(16))
    resource_pk: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
