"""Quarantined sessions (archived into QUARANTINE): release into a project, or delete.

``release`` runs the target project's checks first and is refused with the reasons when they
fail; ``delete`` removes the data and records what was removed. Study cards are re-applied to
archived sessions by ``apply_study_cards`` (no re-import).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance, StagingSession, Study, utcnow
from dicomgate.archive.projects import QUARANTINE, require_project
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.archive.sessions import (
    instances_query,
    record_action,
    require_session,
    sessions_of,
)
from dicomgate.auth.guard import require, require_one_of
from dicomgate.auth.roles import Caller, Permission
from dicomgate.errors import ConflictError, InvalidInputError
from dicomgate.prearchive.actions import refuse
from dicomgate.prearchive.checks import READY, assess
from dicomgate.prearchive.context import Review, read_header
from dicomgate.prearchive.store import drop_empty_study, drop_staging, purge_instances
from dicomgate.rules import apply_cards


def _stagings(session: Session, archived_pk: int) -> list[StagingSession]:
    query = (
        select(StagingSession)
        .join(StagingReview, StagingReview.staging_pk == StagingSession.pk)
        .where(StagingReview.archived_session_pk == archived_pk)
        .order_by(StagingSession.pk)
    )
    return list(session.scalars(query))


def _writable(caller: Caller, archived: ArchivedSession) -> None:
    # A data manager of QUARANTINE, or a writer of the project the session was meant for.
    missing = f"no session {archived.label} in project {QUARANTINE}"
    require_one_of(caller, [QUARANTINE, archived.proposed_project], Permission.WRITE, missing)


def release(
    review: Review,
    label: str,
    project: str,
    subject: str | None = None,
    session_label: str | None = None,
    *,
    caller: Caller,
) -> str:
    """Move a quarantined session into ``project`` after that project's checks.

    The caller needs ``write`` in QUARANTINE (or in the project the session was meant for)
    and in ``project``. Returns the session label in ``project``.
    """
    if project == QUARANTINE:
        raise InvalidInputError("release moves a session out of QUARANTINE: name a project")
    with review.intake.db.reader() as session:
        found = require_session(session, QUARANTINE, label)
        _writable(caller, found)
        require(caller, project, Permission.WRITE)
        keys = [i.blob_key for i in _instances(session, found)]
    headers = [read_header(review.intake, key) for key in keys]
    with review.intake.db.unit_of_work() as session:
        archived = require_session(session, QUARANTINE, label)
        _writable(caller, archived)
        require_project(session, project)
        stagings = _stagings(session, archived.pk)
        verdict = assess(
            review,
            session,
            stagings[0],
            headers,
            project=project,
            now=utcnow(),
            ignore_archived=archived.pk,
            labels=(subject, session_label),
        )
        if verdict.outcome != READY or verdict.target is None:
            raise refuse(f"release {label} into {project}", verdict)
        target = verdict.target
        reasons = archived.reasons
        archived.project_id, archived.subject_label, archived.label = (
            project,
            target.subject,
            target.session,
        )
        archived.reasons, archived.proposed_project, archived.scans = [], None, target.scans
        archived.updated_at = utcnow()
        session.get_one(Study, archived.study_pk).project_id = project
        for staging in stagings:
            staging.project_id = project
        try:
            session.flush()
        except Exception as exc:  # the unique (project, label) constraint
            raise ConflictError(f"session label {target.session} is taken in {project}") from exc
        details = {"from": label, "to": target.session, "reasons": [r["code"] for r in reasons]}
        record_action(
            session,
            "released",
            archived_pk=archived.pk,
            project=project,
            user=caller.name,
            details=details,
        )
        return target.session


def _instances(session: Session, archived: ArchivedSession) -> list[Instance]:
    return list(session.scalars(instances_query(archived.pk)))


def delete_quarantined(review: Review, label: str, *, caller: Caller) -> int:
    """Delete a quarantined session and its instances (recorded); return instances removed."""
    with review.intake.db.unit_of_work() as session:
        archived = require_session(session, QUARANTINE, label)
        _writable(caller, archived)
        stagings = [s.pk for s in _stagings(session, archived.pk)]
        details = {
            "session": label,
            "study_pk": archived.study_pk,
            "reasons": [r.get("code") for r in archived.reasons or ()],
        }
        keys = purge_instances(session, stagings)
        drop_staging(session, stagings)
        study_pk = archived.study_pk
        session.delete(archived)
        session.flush()
        drop_empty_study(session, study_pk)
        record_action(
            session,
            "quarantine_deleted",
            archived_pk=archived.pk,
            project=QUARANTINE,
            user=caller.name,
            details={**details, "instances": len(keys)},
        )
    for key in keys:
        review.intake.blobs.remove(key)
    return len(keys)


def apply_study_cards(review: Review, project: str, *, caller: Caller) -> int:
    """Re-apply a project's study cards to its archived sessions; return sessions updated."""
    require(caller, project, Permission.WRITE)
    cards = review.cards.get(project)
    if cards is None:
        raise InvalidInputError(f"project {project} has no study cards")
    with review.intake.db.unit_of_work() as session:
        require_project(session, project)
        archived = sessions_of(session, project, None)
        for row in archived:
            firsts = {i.series_pk: i for i in session.scalars(instances_query(row.pk))}
            headers = [read_header(review.intake, i.blob_key) for i in firsts.values()]
            assigned = apply_cards(cards, headers)
            row.scans = {uid: {**dict(a.metadata), "card": a.card} for uid, a in assigned.items()}
            row.updated_at = utcnow()
        record_action(
            session,
            "cards_applied",
            project=project,
            user=caller.name,
            details={"sessions": len(archived)},
        )
    return len(archived)
