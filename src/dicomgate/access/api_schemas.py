"""Pydantic response schemas of the access API, kept apart from the SQLAlchemy models."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from pydantic import BaseModel


class StagingStatus(enum.StrEnum):
    """The states a staging session can be in."""

    RECEIVING = "RECEIVING"
    READY = "READY"
    ARCHIVING = "ARCHIVING"
    ARCHIVED = "ARCHIVED"
    CONFLICT = "CONFLICT"
    ERROR = "ERROR"


class HealthOut(BaseModel):
    """Liveness of the service and of its index database."""

    status: str
    database: str


class StudyOut(BaseModel):
    """One study with counts and the modalities of its series."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    study_description: str
    accession_number: str
    modalities: list[str]
    series_count: int
    instance_count: int
    project_id: str | None


class StudyPage(BaseModel):
    """One page of a study search."""

    total: int
    limit: int
    offset: int
    studies: list[StudyOut]


class SeriesOut(BaseModel):
    """One series of a study."""

    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    instance_count: int


class StudyDetail(StudyOut):
    """A study and its series."""

    series: list[SeriesOut]


class StagingOut(BaseModel):
    """One staging session."""

    id: int
    status: str
    study_uid: str
    source_key: str
    project_id: str | None
    instance_count: int
    created_at: dt.datetime
    last_received_at: dt.datetime
    reasons: list[dict[str, Any]]


class StagingPage(BaseModel):
    """One page of staging sessions."""

    total: int
    limit: int
    offset: int
    sessions: list[StagingOut]
