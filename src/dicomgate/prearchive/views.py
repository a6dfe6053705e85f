"""Read views of the prearchive and of projects, shared by the REST API and the CLI.

Label originals (header values, PHI) are shown to API/CLI callers, never logged.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance, Series, SetAside, StagingSession
from dicomgate.archive.projects import QUARANTINE, require_project
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.archive.sessions import require_session, scans_of, sessions_of
from dicomgate.errors import NotFoundError
from dicomgate.prearchive.store import require_staging, staging_project


def staging_summary(staging: StagingSession, row: StagingReview | None) -> dict[str, Any]:
    """Return the list form of one staging session."""
    return {
        "id": staging.pk,
        "status": staging.status,
        "study_uid": staging.study_uid,
        "source_key": staging.source_key,
        "project_id": staging.project_id,
        "quarantined": staging.status == "ARCHIVED" and staging.project_id == QUARANTINE,
        "target_project": row.proposed_project if row else None,
        "subject": row.subject_label if row else None,
        "session": row.session_label if row else None,
        "instance_count": staging.instance_count,
        "reasons": list(staging.reasons or ()),
        "created_at": staging.created_at,
        "last_received_at": staging.last_received_at,
    }


def list_staging(
    session: Session,
    status: str | None = None,
    limit: int = 1000,
    offset: int = 0,
    projects: frozenset[str] | None = None,
) -> list[dict[str, Any]]:
    """Return one page of staging sessions (optionally in one status), newest first.

    Only sessions whose target is in ``projects`` (the caller's; ``None``: all) are listed.
    """
    query = select(StagingSession, StagingReview).outerjoin(
        StagingReview, StagingReview.staging_pk == StagingSession.pk
    )
    if projects is not None:
        owner = func.coalesce(StagingSession.project_id, StagingReview.proposed_project)
        query = query.where(owner.in_(sorted(projects)))
    if status is not None:
        query = query.where(StagingSession.status == status)
    query = query.order_by(StagingSession.pk.desc()).limit(limit).offset(offset)
    rows = session.execute(query).all()
    return [staging_summary(staging, row) for staging, row in rows]


def show_staging(
    session: Session, staging_pk: int, projects: frozenset[str] | None = None
) -> dict[str, Any]:
    """Return one staging session with its checks' findings and its series.

    A session whose target is not in ``projects`` (``None``: all) answers like a missing one.
    """
    staging = require_staging(session, staging_pk)
    if projects is not None and staging_project(session, staging) not in projects:
        raise NotFoundError(f"no staging session {staging_pk}")
    row = session.get(StagingReview, staging_pk)
    out = staging_summary(staging, row)
    decision = (row.decision if row else {}) or {}
    series = session.execute(
        select(Series, func.count(Instance.pk))
        .join(Instance, Instance.series_pk == Series.pk)
        .where(Instance.staging_pk == staging_pk)
        .group_by(Series.pk)
        .order_by(Series.series_number, Series.series_uid)
    ).all()
    out.update(
        origin=dict(staging.origin or {}),
        labels_original=(row.original if row else {}),
        rule=decision.get("rule"),
        why=decision.get("why", ""),
        warnings=list(row.warnings or ()) if row else [],
        hold_until=row.hold_until if row else None,
        archived_session=_archived_ref(session, row),
        set_aside=session.scalar(
            select(func.count(SetAside.pk)).where(SetAside.staging_pk == staging_pk)
        ),
        scans=[
            {
                "series_uid": s.series_uid,
                "series_number": s.series_number,
                "modality": s.modality,
                "series_description": s.series_description,
                "instance_count": int(n),
            }
            for s, n in series
        ],
    )
    return out


def _archived_ref(session: Session, row: StagingReview | None) -> dict[str, Any] | None:
    if row is None or row.archived_session_pk is None:
        return None
    archived = session.get(ArchivedSession, row.archived_session_pk)
    return None if archived is None else {"project": archived.project_id, "label": archived.label}


def session_summary(row: ArchivedSession) -> dict[str, Any]:
    """Return the list form of one archived session."""
    return {
        "project": row.project_id,
        "subject": row.subject_label,
        "label": row.label,
        "reasons": list(row.reasons or ()),
        "proposed_project": row.proposed_project,
        "warnings": list(row.warnings or ()),
        "created_at": row.created_at,
    }


def session_detail(session: Session, project: str, label: str) -> dict[str, Any]:
    """Return one archived session with its scans and counts."""
    require_project(session, project)
    row = require_session(session, project, label)
    scans = scans_of(session, row)
    return {
        **session_summary(row),
        "labels_original": row.original,
        "scans": scans,
        "scan_count": len(scans),
        "instance_count": sum(s["instance_count"] for s in scans),
    }


def quarantine(session: Session, projects: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """Return the quarantined sessions with their reasons.

    With ``projects`` (the caller's): all of them when QUARANTINE is one, else only those
    meant for one of ``projects``.
    """
    rows = sessions_of(session, QUARANTINE, None)
    if projects is not None and QUARANTINE not in projects:
        rows = [row for row in rows if row.proposed_project in projects]
    return [session_summary(row) for row in rows]
