"""Index queries of the access API: small functions that take the session explicitly.

Every value from a request reaches SQL as a bound parameter; wildcard characters of a
pattern language the caller did not ask for are escaped.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select, text
from sqlalchemy.orm import Session

from dicomgate.access.api_schemas import SeriesOut, StagingOut, StudyDetail, StudyOut
from dicomgate.access.visibility import Visible, can_see, visible
from dicomgate.archive.models import Instance, Series, StagingSession, Study
from dicomgate.errors import InvalidInputError, NotFoundError


@dataclass(frozen=True, slots=True)
class StudyFilter:
    """Validated study search criteria (``None`` means no constraint)."""

    patient_id: str | None = None
    date_from: str | None = None
    date_to: str | None = None
    modality: str | None = None


def _check_date(value: str, name: str) -> str:
    try:
        dt.datetime.strptime(value, "%Y%m%d")
    except ValueError:
        raise InvalidInputError(f"{name} must be YYYYMMDD or YYYYMMDD-YYYYMMDD") from None
    if len(value) != 8:
        raise InvalidInputError(f"{name} must be YYYYMMDD or YYYYMMDD-YYYYMMDD")
    return value


def parse_date_range(value: str, name: str = "StudyDate") -> tuple[str | None, str | None]:
    """Parse ``YYYYMMDD``, ``YYYYMMDD-YYYYMMDD``, ``YYYYMMDD-`` or ``-YYYYMMDD``.

    Parameters
    ----------
    value
        The query value.
    name
        The parameter name used in the error message.

    Returns
    -------
    tuple
        The inclusive lower and upper bounds, ``None`` for an open end.

    Raises
    ------
    InvalidInputError
        When the value is not a date or a date range.
    """
    if "-" not in value:
        day = _check_date(value, name)
        return day, day
    start, _, end = value.partition("-")
    if not start and not end:
        raise InvalidInputError(f"{name} must be YYYYMMDD or YYYYMMDD-YYYYMMDD")
    low = _check_date(start, name) if start else None
    high = _check_date(end, name) if end else None
    if low and high and low > high:
        raise InvalidInputError(f"{name} range starts after it ends")
    return low, high


def _patient_match(session: Session, value: str) -> ColumnElement[bool]:
    if "*" not in value and "?" not in value:
        return Study.patient_id == value
    if session.get_bind().dialect.name == "sqlite":
        # GLOB is case-sensitive like DICOM matching; only '[' needs escaping.
        return Study.patient_id.op("GLOB")(value.replace("[", "[[]"))
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return Study.patient_id.like(escaped.replace("*", "%").replace("?", "_"), escape="\\")


def _study_conditions(session: Session, flt: StudyFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if flt.patient_id is not None:
        conditions.append(_patient_match(session, flt.patient_id))
    if flt.date_from is not None or flt.date_to is not None:
        conditions.append(Study.study_date != "")
    if flt.date_from is not None:
        conditions.append(Study.study_date >= flt.date_from)
    if flt.date_to is not None:
        conditions.append(Study.study_date <= flt.date_to)
    if flt.modality is not None:
        has_modality = (Series.study_pk == Study.pk) & (Series.modality == flt.modality)
        conditions.append(exists().where(has_modality))
    return conditions


def _study_outs(session: Session, studies: list[Study]) -> list[StudyOut]:
    pks = [s.pk for s in studies]
    modalities: dict[int, set[str]] = defaultdict(set)
    series_count: dict[int, int] = defaultdict(int)
    for study_pk, modality in session.execute(
        select(Series.study_pk, Series.modality).where(Series.study_pk.in_(pks))
    ):
        series_count[study_pk] += 1
        if modality:
            modalities[study_pk].add(modality)
    counted = (
        select(Series.study_pk, func.count(Instance.pk))
        .join(Instance, Instance.series_pk == Series.pk)
        .where(Series.study_pk.in_(pks))
        .group_by(Series.study_pk)
    )
    instances = {int(pk): int(n) for pk, n in session.execute(counted)}
    return [
        StudyOut(
            study_uid=s.study_uid,
            patient_id=s.patient_id,
            patient_name=s.patient_name,
            study_date=s.study_date,
            study_description=s.study_description,
            accession_number=s.accession_number,
            modalities=sorted(modalities[s.pk]),
            series_count=series_count[s.pk],
            instance_count=instances.get(s.pk, 0),
            project_id=s.project_id,
        )
        for s in studies
    ]


def _count(session: Session, query: Select[Any]) -> int:
    return int(
        session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    )


def search_studies(
    session: Session, flt: StudyFilter, limit: int, offset: int, *, projects: Visible
) -> tuple[int, list[StudyOut]]:
    """Return the number of matching studies and one page of them, oldest index row first.

    Only studies in ``projects`` (the caller's visible projects; ``None``: all) are searched.
    """
    conditions = [*_study_conditions(session, flt), visible(Study.project_id, projects)]
    query = select(Study).where(*conditions).order_by(Study.pk)
    page = list(session.scalars(query.limit(limit).offset(offset)))
    return _count(session, query), _study_outs(session, page)


def get_study(session: Session, study_uid: str, *, projects: Visible) -> StudyDetail:
    """Return one study with its series.

    Raises
    ------
    NotFoundError
        When no study has this UID, or it is in a project the caller may not read.
    """
    study = session.scalars(select(Study).where(Study.study_uid == study_uid)).first()
    if study is None or not can_see(study.project_id, projects):
        raise NotFoundError("no such study")
    count = select(func.count(Instance.pk)).where(Instance.series_pk == Series.pk).scalar_subquery()
    rows = session.execute(
        select(Series, count).where(Series.study_pk == study.pk).order_by(Series.pk)
    )
    series = [
        SeriesOut(
            series_uid=row.series_uid,
            modality=row.modality,
            series_number=row.series_number,
            series_description=row.series_description,
            instance_count=int(n),
        )
        for row, n in rows
    ]
    summary = _study_outs(session, [study])[0]
    return StudyDetail(**summary.model_dump(), series=series)


def instance_blob_key(session: Session, sop_instance_uid: str, *, projects: Visible) -> str:
    """Return the blob key of a stored instance.

    Raises
    ------
    NotFoundError
        When no instance has this UID, or it is in a project the caller may not read.
    """
    key = session.scalar(
        select(Instance.blob_key)
        .join(Series, Instance.series_pk == Series.pk)
        .join(Study, Series.study_pk == Study.pk)
        .where(Instance.sop_instance_uid == sop_instance_uid, visible(Study.project_id, projects))
    )
    if key is None:
        raise NotFoundError("no such instance")
    return key


def list_staging(
    session: Session, status: str | None, limit: int, offset: int, *, projects: Visible
) -> tuple[int, list[StagingOut]]:
    """Return the number of staging sessions (in ``status``, if given) and one page of them.

    Only sessions whose target project is in ``projects`` are listed (``None``: all).
    """
    query = (
        select(StagingSession)
        .where(visible(StagingSession.project_id, projects))
        .order_by(StagingSession.pk)
    )
    if status is not None:
        query = query.where(StagingSession.status == status)
    sessions = [
        StagingOut(
            id=row.pk,
            status=row.status,
            study_uid=row.study_uid,
            source_key=row.source_key,
            project_id=row.project_id,
            instance_count=row.instance_count,
            created_at=row.created_at,
            last_received_at=row.last_received_at,
            reasons=list(row.reasons or []),
        )
        for row in session.scalars(query.limit(limit).offset(offset))
    ]
    return _count(session, query), sessions


def ping(session: Session) -> None:
    """Run ``SELECT 1``; raises the driver's error when the database does not answer."""
    session.execute(text("SELECT 1"))
