"""Archived sessions: lookups for the checks, browsing, equipment seen, the action record.

An archived session's instances are those of the staging sessions archived into it
(``StagingReview.archived_session_pk``). Functions take the session explicitly, never commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dicomgate.archive.index import log_change
from dicomgate.archive.models import Instance, Series, Study, utcnow
from dicomgate.archive.session_models import (
    ArchivedSession,
    EquipmentSeen,
    PrearchiveAction,
    StagingReview,
)
from dicomgate.errors import NotFoundError
from dicomgate.rules.rt_links import RefKind


def record_action(
    session: Session,
    action: str,
    *,
    staging_pk: int | None = None,
    archived_pk: int | None = None,
    project: str | None = None,
    user: str | None = None,
    details: dict[str, Any] | None = None,
    message: str = "",
) -> int:
    """Record one review action and point the change log at it; returns the action's pk."""
    row = PrearchiveAction(
        action=action,
        staging_pk=staging_pk,
        archived_session_pk=archived_pk,
        project_id=project,
        user=user,
        details=details or {},
        message=message,
    )
    session.add(row)
    session.flush()
    log_change(session, f"prearchive_{action}", "action", int(row.pk))
    return int(row.pk)


def find_session(session: Session, project: str, label: str) -> ArchivedSession | None:
    """Return the archived session ``label`` of ``project``, or None."""
    query = select(ArchivedSession).where(
        ArchivedSession.project_id == project, ArchivedSession.label == label
    )
    return session.scalars(query).first()


def require_session(session: Session, project: str, label: str) -> ArchivedSession:
    """Return the archived session, or raise ``NotFoundError``."""
    found = find_session(session, project, label)
    if found is None:
        raise NotFoundError(f"no session {label} in project {project}")
    return found


def session_of_study(session: Session, study_uid: str) -> ArchivedSession | None:
    """Return the archived session holding the study ``study_uid``, or None."""
    query = (
        select(ArchivedSession)
        .join(Study, Study.pk == ArchivedSession.study_pk)
        .where(Study.study_uid == study_uid)
    )
    return session.scalars(query).first()


def instances_query(archived_pk: int) -> Select[Any]:
    """Return a query of the instances of one archived session."""
    stagings = select(StagingReview.staging_pk).where(
        StagingReview.archived_session_pk == archived_pk
    )
    return select(Instance).where(Instance.staging_pk.in_(stagings))


def archived_lookup(session: Session, project: str) -> Callable[[RefKind, str], bool]:
    """Return a lookup ``(kind, uid) -> bool`` telling whether a UID is archived in a project.

    Each call is one indexed query (frames of reference: one read of the project's lists,
    cached), so a session without RT objects costs nothing.
    """
    in_project = (
        select(Instance.pk)
        .join(StagingReview, StagingReview.staging_pk == Instance.staging_pk)
        .join(ArchivedSession, ArchivedSession.pk == StagingReview.archived_session_pk)
        .where(ArchivedSession.project_id == project)
    )
    frames: list[frozenset[str]] = []

    def lookup(kind: RefKind, uid: str) -> bool:
        if kind is RefKind.FRAME_OF_REFERENCE:
            if not frames:
                lists = session.scalars(
                    select(ArchivedSession.frames_of_reference).where(
                        ArchivedSession.project_id == project
                    )
                )
                frames.append(frozenset(u for f in lists for u in f or ()))
            return uid in frames[0]
        query = in_project.join(Series, Series.pk == Instance.series_pk)
        if kind is RefKind.INSTANCE:
            query = query.where(Instance.sop_instance_uid == uid)
        elif kind is RefKind.SERIES:
            query = query.where(Series.series_uid == uid)
        else:
            query = query.join(Study, Study.pk == Series.study_pk).where(Study.study_uid == uid)
        return session.scalar(query.limit(1)) is not None

    return lookup


def subjects(session: Session, project: str) -> list[dict[str, Any]]:
    """Return the subjects of a project with their session counts."""
    query = (
        select(ArchivedSession.subject_label, func.count(ArchivedSession.pk))
        .where(ArchivedSession.project_id == project)
        .group_by(ArchivedSession.subject_label)
        .order_by(ArchivedSession.subject_label)
    )
    return [{"label": row[0], "sessions": int(row[1])} for row in session.execute(query)]


def sessions_of(session: Session, project: str, subject: str | None) -> list[ArchivedSession]:
    """Return the archived sessions of a project, optionally of one subject."""
    query = select(ArchivedSession).where(ArchivedSession.project_id == project)
    if subject is not None:
        query = query.where(ArchivedSession.subject_label == subject)
    return list(session.scalars(query.order_by(ArchivedSession.label)))


def scans_of(session: Session, archived: ArchivedSession) -> list[dict[str, Any]]:
    """Return the scans (series) of an archived session with their instance counts."""
    sub = instances_query(archived.pk).subquery()
    query = (
        select(Series, func.count(sub.c.pk))
        .join(sub, sub.c.series_pk == Series.pk)
        .group_by(Series.pk)
        .order_by(Series.series_number, Series.series_uid)
    )
    return [
        {
            "series_uid": series.series_uid,
            "series_number": series.series_number,
            "modality": series.modality,
            "series_description": series.series_description,
            "instance_count": int(count),
            "metadata": dict((archived.scans or {}).get(series.series_uid, {})),
        }
        for series, count in session.execute(query)
    ]


def record_equipment(session: Session, project: str, seen: Iterable[dict[str, Any]]) -> None:
    """Count each distinct piece of equipment once more for ``project``."""
    now = utcnow()
    for equipment in {json.dumps(e, sort_keys=True): e for e in seen}.values():
        key = hashlib.sha256(json.dumps(equipment, sort_keys=True).encode()).hexdigest()
        query = select(EquipmentSeen).where(
            EquipmentSeen.project_id == project, EquipmentSeen.key == key
        )
        row = session.scalars(query).first()
        if row is None:
            row = EquipmentSeen(
                project_id=project,
                key=key,
                manufacturer=equipment.get("Manufacturer"),
                model=equipment.get("ManufacturerModelName"),
                serial=equipment.get("DeviceSerialNumber"),
                station=equipment.get("StationName"),
                field_strength=equipment.get("MagneticFieldStrength"),
                sessions=0,
                first_seen=now,
            )
            session.add(row)
        row.sessions += 1
        row.last_seen = now
    session.flush()


def equipment_seen(session: Session, project: str) -> list[dict[str, Any]]:
    """Return the equipment seen for ``project`` with session counts, most seen first."""
    query = (
        select(EquipmentSeen)
        .where(EquipmentSeen.project_id == project)
        .order_by(EquipmentSeen.sessions.desc(), EquipmentSeen.pk)
    )
    return [
        {
            "Manufacturer": row.manufacturer,
            "ManufacturerModelName": row.model,
            "DeviceSerialNumber": row.serial,
            "StationName": row.station,
            "MagneticFieldStrength": row.field_strength,
            "sessions": row.sessions,
            "first_seen": row.first_seen,
            "last_seen": row.last_seen,
        }
        for row in session.scalars(query)
    ]
