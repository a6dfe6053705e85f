"""Index writes of the review: a staging session's state and review row, archiving it.

Every function takes the session explicitly and never commits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance, Series, StagingSession, Study, utcnow
from dicomgate.archive.projects import QUARANTINE
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.archive.sessions import find_session, record_action, session_of_study
from dicomgate.errors import ConflictError, NotFoundError
from dicomgate.prearchive.target import ArchiveTarget

REVIEWABLE = ("READY", "CONFLICT", "ERROR")


def review_row(session: Session, staging_pk: int) -> StagingReview:
    """Return the review row of a staging session, creating it when missing."""
    row = session.get(StagingReview, staging_pk)
    if row is None:
        row = StagingReview(staging_pk=staging_pk, original={}, decision={}, warnings=[])
        session.add(row)
        session.flush()
    return row


def require_staging(session: Session, staging_pk: int) -> StagingSession:
    """Return the staging session, or raise ``NotFoundError``."""
    row = session.get(StagingSession, staging_pk)
    if row is None:
        raise NotFoundError(f"no staging session {staging_pk}")
    return row


def staging_project(session: Session, staging: StagingSession) -> str | None:
    """Return the project a staging session belongs to: its target, else the proposed one.

    Access follows it: a READY session of LUNG is LUNG's to review before it has a target.
    """
    if staging.project_id is not None:
        return staging.project_id
    row = session.get(StagingReview, staging.pk)
    return row.proposed_project if row else None


def set_state(
    session: Session, staging_pk: int, status: str, reasons: list[dict[str, Any]]
) -> None:
    """Put a staging session in ``status`` with ``reasons``."""
    session.execute(
        update(StagingSession)
        .where(StagingSession.pk == staging_pk)
        .values(status=status, reasons=reasons, updated_at=utcnow())
    )


def begin_archiving(session: Session, staging_pk: int, releases: int | None = None) -> str:
    """Move a reviewable session to ARCHIVING; return the status it had.

    ``releases`` names the quarantined session a release takes the staging session out of:
    then an ARCHIVED staging session of that quarantined session may be archived again.

    Raises
    ------
    ConflictError
        When the session is not READY, CONFLICT or ERROR (nor released from QUARANTINE).
    """
    staging = require_staging(session, staging_pk)
    previous = staging.status
    allowed = list(REVIEWABLE)
    row = session.get(StagingReview, staging_pk)
    if releases is not None and row is not None and row.archived_session_pk == releases:
        allowed.append("ARCHIVED")
    done = session.execute(
        update(StagingSession)
        .where(StagingSession.pk == staging_pk, StagingSession.status.in_(allowed))
        .values(status="ARCHIVING", updated_at=utcnow())
    )
    if getattr(done, "rowcount", 1) != 1:
        raise ConflictError(f"staging session {staging_pk} is {previous}: it cannot be archived")
    return previous


def store_session(
    session: Session, staging_pk: int, target: ArchiveTarget, user: str | None
) -> int:
    """Write an ARCHIVING staging session into ``target``; return the archived session's pk.

    Raises
    ------
    ConflictError
        When the label is taken or the study is archived elsewhere (nothing is written).
    """
    staging = require_staging(session, staging_pk)
    if target.replaces is not None:
        _drop_released(session, target.replaces)
    study = session.scalars(select(Study).where(Study.study_uid == staging.study_uid)).one()
    archived = _archived_row(session, staging, study, target)
    if study.project_id not in (None, target.project):
        raise ConflictError(f"the study is already archived in project {study.project_id}")
    study.project_id = target.project
    row = review_row(session, staging_pk)
    row.archived_session_pk = archived.pk
    row.subject_label, row.session_label = archived.subject_label, archived.label
    staging.status, staging.project_id, staging.updated_at = "ARCHIVED", target.project, utcnow()
    staging.reasons = list(target.reasons)
    action = "merged" if target.merge_into else "archived"
    record_action(
        session,
        action,
        staging_pk=staging_pk,
        archived_pk=archived.pk,
        project=target.project,
        user=user,
        details={"session": archived.label, "subject": archived.subject_label},
    )
    return int(archived.pk)


def _drop_released(session: Session, archived_pk: int) -> None:
    """Remove the quarantined session a release archives elsewhere; its study leaves QUARANTINE.

    The staging sessions that pointed at it point at nothing until they are stored again
    (or purged, when a de-identified project does not keep the original). A session already
    removed (the copy of a de-identified release took its place first) is left alone.
    """
    row = session.get(ArchivedSession, archived_pk)
    if row is None:
        return
    if row.project_id != QUARANTINE:
        raise ConflictError(f"session {row.label} is not in {QUARANTINE}: nothing to release")
    session.execute(
        update(StagingReview)
        .where(StagingReview.archived_session_pk == archived_pk)
        .values(archived_session_pk=None)
    )
    study = session.get_one(Study, row.study_pk)
    if study.project_id == QUARANTINE:
        study.project_id = None
    session.delete(row)
    session.flush()


def _archived_row(
    session: Session, staging: StagingSession, study: Study, target: ArchiveTarget
) -> ArchivedSession:
    into = target.merge_into
    if into is None and target.project == QUARANTINE:
        existing = session_of_study(session, staging.study_uid)
        into = existing.pk if existing and existing.project_id == QUARANTINE else None
    if into is not None:
        return _merge(session, into, study, target)
    label = target.session
    if target.project == QUARANTINE and find_session(session, QUARANTINE, label) is not None:
        label = f"{label[:50]}-{staging.pk}"
    row = ArchivedSession(
        project_id=target.project,
        subject_label=target.subject,
        label=label,
        study_pk=study.pk,
        original=target.original,
        reasons=target.reasons,
        proposed_project=target.proposed_project,
        warnings=target.warnings,
        scans=target.scans,
        frames_of_reference=target.frames_of_reference,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError as exc:
        raise ConflictError(f"session label {label} is already taken in {target.project}") from exc
    return row


def _merge(session: Session, pk: int, study: Study, target: ArchiveTarget) -> ArchivedSession:
    row = session.get(ArchivedSession, pk)
    if row is None:
        raise NotFoundError("the session to merge into does not exist")
    if row.study_pk != study.pk:
        raise ConflictError(f"session {row.label} holds another study: a session is one study")
    row.scans = {**(row.scans or {}), **target.scans}
    row.frames_of_reference = sorted(
        {*(row.frames_of_reference or ()), *target.frames_of_reference}
    )
    row.warnings = [*(row.warnings or ()), *target.warnings]
    row.reasons = [*(row.reasons or ()), *target.reasons]
    row.updated_at = utcnow()
    return row


def restore_state(session: Session, staging_pk: int, status: str) -> None:
    """Put an ARCHIVING session back to ``status`` after a failed archive."""
    session.execute(
        update(StagingSession)
        .where(StagingSession.pk == staging_pk, StagingSession.status == "ARCHIVING")
        .values(status=status, updated_at=utcnow())
    )


def recover_archiving(session: Session) -> list[int]:
    """After a crash: sessions left ARCHIVING go back to READY and are checked again."""
    pks = list(
        session.scalars(select(StagingSession.pk).where(StagingSession.status == "ARCHIVING"))
    )
    for pk in pks:
        set_state(session, pk, "READY", [])
        review_row(session, pk).evaluated_at = None
    return pks


def aware(value: dt.datetime) -> dt.datetime:
    """Return a stored time as an aware UTC time (SQLite hands back naive UTC)."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def is_due(value: dt.datetime | None, now: dt.datetime) -> bool:
    """Return whether a stored time has passed."""
    return value is not None and aware(value) <= now


def purge_instances(session: Session, staging_pks: list[int]) -> list[str]:
    """Delete the instances of staging sessions and the series/studies left empty.

    Returns the blob keys to remove once the transaction committed.
    """
    rows = list(session.scalars(select(Instance).where(Instance.staging_pk.in_(staging_pks))))
    keys = [row.blob_key for row in rows]
    series_pks = {row.series_pk for row in rows}
    for row in rows:
        session.delete(row)
    session.flush()
    for series in session.scalars(select(Series).where(Series.pk.in_(series_pks))).all():
        if session.scalar(select(func.count(Instance.pk)).where(Instance.series_pk == series.pk)):
            continue
        study_pk = series.study_pk
        session.delete(series)
        session.flush()
        drop_empty_study(session, study_pk)
    return keys


def drop_empty_study(session: Session, study_pk: int) -> None:
    """Delete a study row that has no series and no archived session left."""
    if session.scalar(select(func.count(Series.pk)).where(Series.study_pk == study_pk)):
        return
    if session.scalar(
        select(func.count(ArchivedSession.pk)).where(ArchivedSession.study_pk == study_pk)
    ):
        return
    study = session.get(Study, study_pk)
    if study is not None:
        session.delete(study)
        session.flush()


def drop_staging(session: Session, staging_pks: list[int]) -> None:
    """Delete staging rows and their review rows (their instances are purged first)."""
    session.execute(delete(StagingReview).where(StagingReview.staging_pk.in_(staging_pks)))
    session.execute(delete(StagingSession).where(StagingSession.pk.in_(staging_pks)))
