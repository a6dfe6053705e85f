"""Quarantined sessions (archived into QUARANTINE): release into a project, or delete.

``release`` runs the target project's checks, then archives the session through
``pipeline.archive_session`` like any archive into that project (de-identification
included); when either refuses, the release is refused with the reasons and the session
stays in QUARANTINE. ``delete`` removes the data and records what was removed. Study cards
are re-applied to archived sessions by ``apply_study_cards`` (no re-import).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dicomgate.archive.deidentify import project_deid
from dicomgate.archive.models import Instance, StagingSession, utcnow
from dicomgate.archive.projects import QUARANTINE, require_project
from dicomgate.archive.session_models import ArchivedSession, PrearchiveAction, StagingReview
from dicomgate.archive.sessions import (
    instances_query,
    record_action,
    require_session,
    sessions_of,
)
from dicomgate.auth.guard import require, require_one_of
from dicomgate.auth.roles import Caller, Permission
from dicomgate.errors import ConflictError, HeldForReviewError, InvalidInputError
from dicomgate.pipeline import archive_session
from dicomgate.prearchive.actions import refuse
from dicomgate.prearchive.checks import READY, assess
from dicomgate.prearchive.context import Review, read_header
from dicomgate.prearchive.spine import absorb
from dicomgate.prearchive.store import (
    REVIEWABLE,
    drop_empty_study,
    drop_staging,
    purge_instances,
    set_state,
)
from dicomgate.prearchive.target import ArchiveTarget
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
    """Archive a quarantined session into ``project`` the way any archive into it goes.

    The project's checks run first; then ``pipeline.archive_session`` stores the session with
    the project's de-identification, identity vault and scrub, as for a session that was
    never quarantined. The quarantined session is removed in the transaction that stores the
    released one, so when the checks or the archive path refuse it (burned-in text, a hold,
    a taken label) the release is refused with the reason and it stays in QUARANTINE as it
    was. The caller needs ``write`` in QUARANTINE (or in the project the session was meant
    for) and in ``project``. Returns the session label in ``project``.

    Raises
    ------
    ConflictError
        When the project's checks or its archive path refuse the session.
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
        staging_pk = _gather(session, label, stagings)
        held = Quarantined(archived.pk, label, list(archived.reasons or ()))
    target = replace(verdict.target, replaces=held.pk)
    released_pk = _archive(review, staging_pk, target, held, caller.name)
    return _record_release(review, staging_pk, released_pk, held, caller.name)


@dataclass(frozen=True)
class Quarantined:
    """The quarantined session a release takes out: its pk, label and reasons."""

    pk: int
    label: str
    reasons: list[dict[str, Any]]


def _gather(session: Session, label: str, stagings: list[StagingSession]) -> int:
    """Absorb the other staging sessions of a quarantined session into the first; return it.

    The archive path archives one staging session; the quarantined session may hold several
    (imports of the same study merged into QUARANTINE).
    """
    if any(s.status != "ARCHIVED" for s in stagings):
        raise ConflictError(f"cannot release {label}: it is being released or archived")
    first = stagings[0]
    for other in stagings[1:]:
        # Its record follows its instances, so a de-identified release scrubs it too.
        session.execute(
            update(PrearchiveAction)
            .where(PrearchiveAction.staging_pk == other.pk)
            .values(staging_pk=first.pk)
        )
        absorb(session, other, first, "absorbed")
    return int(first.pk)


def _archive(
    review: Review, staging_pk: int, target: ArchiveTarget, held: Quarantined, user: str | None
) -> int:
    """Archive the released staging session; when that fails it goes back to QUARANTINE."""
    try:
        return archive_session(review, staging_pk, target, user)
    except HeldForReviewError as exc:
        _back_in_quarantine(review, staging_pk, held)
        why = f"{exc.reason.get('code')}: {exc}"  # the details may name the patient: not sent
        raise ConflictError(f"cannot release {held.label} into {target.project}: {why}") from exc
    except ConflictError as exc:
        _back_in_quarantine(review, staging_pk, held)
        raise ConflictError(f"cannot release {held.label} into {target.project}: {exc}") from exc
    except BaseException:
        _back_in_quarantine(review, staging_pk, held)
        raise


def _back_in_quarantine(review: Review, staging_pk: int, held: Quarantined) -> None:
    """Put a staging session that the archive path held back to ARCHIVED in QUARANTINE.

    ``archive_session`` already restores ARCHIVED after a failure; a hold leaves the status
    and reason of the hold instead. A staging session that no longer belongs to the
    quarantined session (a concurrent release stored it) is left alone.
    """
    with review.intake.db.unit_of_work() as session:
        staging = session.get(StagingSession, staging_pk)
        row = session.get(StagingReview, staging_pk)
        if staging is None or row is None or row.archived_session_pk != held.pk:
            return
        if staging.status in REVIEWABLE:
            set_state(session, staging_pk, "ARCHIVED", held.reasons)


def _record_release(
    review: Review, staging_pk: int, released_pk: int, held: Quarantined, user: str | None
) -> str:
    """Record the release; return the session's label in its project."""
    with review.intake.db.unit_of_work() as session:
        released = session.get_one(ArchivedSession, released_pk)
        project = released.project_id
        codes = list(dict.fromkeys(str(r.get("code")) for r in held.reasons))
        details: dict[str, Any] = {"reasons": codes}
        if project_deid(review, project) is None:
            # The quarantine label may come from a Patient ID: a de-identified project's
            # record must not name it.
            details.update({"from": held.label, "to": released.label})
        record_action(
            session, "released", staging_pk=staging_pk, archived_pk=released_pk,
            project=project, user=user, details=details,
        )  # fmt: skip
        return released.label


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
