"""Review actions on staging sessions: archive, rename, move, merge, delete (REST and CLI).

Each action is atomic (one transaction, or ``pipeline.archive_session`` which restores the
previous state when it fails), recorded in the change log (``prearchive_actions`` rows) and
refused with ``ConflictError`` naming the state or the reasons when the state does not allow it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.models import StagingSession, Study, utcnow
from dicomgate.archive.projects import QUARANTINE, require_project
from dicomgate.archive.session_models import StagingReview
from dicomgate.archive.sessions import record_action, require_session
from dicomgate.auth.guard import require
from dicomgate.auth.roles import Caller, Permission
from dicomgate.errors import ConflictError, InvalidInputError
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.pipeline import archive_session
from dicomgate.prearchive.checks import READY, Verdict, assess
from dicomgate.prearchive.context import Review, staged_headers
from dicomgate.prearchive.spine import apply_verdict
from dicomgate.prearchive.store import (
    REVIEWABLE,
    drop_staging,
    purge_instances,
    require_staging,
    review_row,
    staging_project,
)
from dicomgate.prearchive.target import ArchiveTarget
from dicomgate.rules import sanitize_label


def _headers(review: Review, staging_pk: int) -> list[Dataset]:
    with review.intake.db.reader() as session:
        return staged_headers(review.intake, session, staging_pk)


def writable(caller: Caller, session: Session, staging: StagingSession) -> None:
    """Refuse unless ``caller`` may write the session's project (404 when it cannot see it)."""
    # A staging session with neither target nor proposal belongs to no project: admins only.
    project = staging_project(session, staging)
    require(caller, project, Permission.WRITE, f"no staging session {staging.pk}")


def _reviewable(staging: StagingSession, action: str) -> None:
    if staging.status not in REVIEWABLE:
        hint = {
            "RECEIVING": "it is still receiving; wait until it is READY",
            "ARCHIVING": "it is being archived",
            "ARCHIVED": "it is archived already (quarantined data: use quarantine release)",
        }.get(staging.status, "")
        raise ConflictError(f"cannot {action} staging session {staging.pk}: {hint}")


def refuse(action: str, verdict: Verdict) -> ConflictError:
    """Return the error refusing ``action`` because of the verdict's reasons."""
    listed = "; ".join(f"{r.code.value}: {r.message}" for r in verdict.reasons)
    return ConflictError(f"cannot {action}: {listed or verdict.outcome}")


def _label(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    clean = sanitize_label(value, fallback="")
    if not clean:
        raise InvalidInputError(f"{what} label {value!r} has no usable character")
    return clean


def _check(
    review: Review,
    session: Session,
    staging: StagingSession,
    project: str | None,
    labels: tuple[str | None, str | None] = (None, None),
    ignore: int | None = None,
) -> Verdict:
    headers = staged_headers(review.intake, session, staging.pk)
    return assess(
        review,
        session,
        staging,
        headers,
        project=project,
        now=utcnow(),
        ignore_archived=ignore,
        labels=labels,
    )


def archive(
    review: Review,
    staging_pk: int,
    project: str | None = None,
    subject: str | None = None,
    session_label: str | None = None,
    *,
    caller: Caller,
) -> int:
    """Archive a staging session into its target or ``project`` after that project's checks.

    Archiving into QUARANTINE is always allowed and keeps the current reasons. A session the
    protocol rejected is archived only into a project named here. The caller needs ``write``
    in the session's project and in the one it is archived into.
    """
    labels = (_label(subject, "subject"), _label(session_label, "session"))
    with review.intake.db.reader() as session:
        staging = require_staging(session, staging_pk)
        writable(caller, session, staging)
        _reviewable(staging, "archive")
        if project is None:
            _not_rejected(staging)
        row = session.get(StagingReview, staging_pk)
        chosen = project or (row.proposed_project if row else None) or staging.project_id
        chosen = chosen or review.settings.default_project
        if chosen != QUARANTINE:  # parking a session in QUARANTINE needs its own project only
            require(caller, chosen, Permission.WRITE)
        require_project(session, chosen)
        if chosen == QUARANTINE:
            target = _to_quarantine(review, session, staging, labels)
        else:
            verdict = _check(review, session, staging, chosen, labels)
            if verdict.outcome != READY or verdict.target is None:
                raise refuse(f"archive staging session {staging_pk} into {chosen}", verdict)
            target = verdict.target
    return archive_session(review, staging_pk, target, caller.name)


def _not_rejected(staging: StagingSession) -> None:
    """Refuse to archive a rejected session into a project nobody named for it.

    Without a project the archive would fall back to the source's or the default project and
    undo the protocol's reject unnoticed; naming one is a person's decision (and its checks run).
    """
    rejected = [r for r in staging.reasons or () if r.get("code") == ReasonCode.RULE_REJECT]
    if rejected:
        why = "; ".join(f"rule_reject: {r.get('message', '')}" for r in rejected)
        raise ConflictError(
            f"cannot archive staging session {staging.pk}: {why}; name a project to archive "
            "it into (its checks run), archive it into QUARANTINE, or delete it"
        )


def _to_quarantine(
    review: Review,
    session: Session,
    staging: StagingSession,
    labels: tuple[str | None, str | None],
) -> ArchiveTarget:
    verdict = _check(review, session, staging, None, labels)
    reasons = verdict.reasons_json() or [
        Reason(ReasonCode.RULE_QUARANTINE, "quarantined by a data manager").to_json()
    ]
    base = verdict.target or ArchiveTarget(QUARANTINE, "UNKNOWN", f"staging-{staging.pk}")
    proposed = base.proposed_project or (base.project if base.project != QUARANTINE else None)
    return replace(base, project=QUARANTINE, reasons=list(reasons), proposed_project=proposed)


def rename(
    review: Review,
    staging_pk: int,
    subject: str | None = None,
    session_label: str | None = None,
    *,
    caller: Caller,
) -> str:
    """Give a staging session new labels and check it again; return its new status."""
    if subject is None and session_label is None:
        raise InvalidInputError("give a subject or a session label")
    with review.intake.db.reader() as session:
        writable(caller, session, require_staging(session, staging_pk))
    headers = _headers(review, staging_pk)
    with review.intake.db.unit_of_work() as session:
        staging = require_staging(session, staging_pk)
        writable(caller, session, staging)
        _reviewable(staging, "rename")
        row = review_row(session, staging_pk)
        before = {"subject": row.subject_label, "session": row.session_label}
        row.subject_label = _label(subject, "subject") or row.subject_label
        row.session_label = _label(session_label, "session") or row.session_label
        row.labels_fixed = True
        session.flush()
        after = {"subject": row.subject_label, "session": row.session_label}
        details = {"from": before, "to": after}
        return recheck(review, session, staging, headers, "renamed", caller.name, details)


def move(review: Review, staging_pk: int, project: str, *, caller: Caller) -> str:
    """Point a staging session at another project and check it again; return its status.

    The caller needs ``write`` in both the session's current project and the new one.
    """
    with review.intake.db.reader() as session:
        writable(caller, session, require_staging(session, staging_pk))
    headers = _headers(review, staging_pk)
    with review.intake.db.unit_of_work() as session:
        staging = require_staging(session, staging_pk)
        writable(caller, session, staging)
        _reviewable(staging, "move")
        require(caller, project, Permission.WRITE)
        require_project(session, project)
        if project == QUARANTINE:
            raise InvalidInputError("to quarantine a session, archive it into QUARANTINE")
        before = staging.project_id
        staging.project_id = project
        review_row(session, staging_pk).project_fixed = True
        session.flush()
        details = {"from": before, "to": project}
        return recheck(review, session, staging, headers, "moved", caller.name, details)


def recheck(
    review: Review,
    session: Session,
    staging: StagingSession,
    headers: list[Dataset],
    action: str,
    user: str | None,
    details: dict[str, Any],
) -> str:
    """Check a staging session again after a review action, store and record it.

    Returns the status the checks put it in; the action is recorded with ``details``.
    """
    verdict = assess(review, session, staging, headers, now=utcnow())
    apply_verdict(session, staging.pk, verdict, utcnow())
    project = verdict.target.project if verdict.target else None
    record_action(
        session, action, staging_pk=staging.pk, project=project, user=user, details=details
    )
    return verdict.status


def merge(review: Review, staging_pk: int, project: str, into: str, *, caller: Caller) -> int:
    """Add a staging session to the archived session ``into`` of ``project`` (same study)."""
    with review.intake.db.reader() as session:
        staging = require_staging(session, staging_pk)
        writable(caller, session, staging)
        _reviewable(staging, "merge")
        require(caller, project, Permission.WRITE)
        require_project(session, project)
        existing = require_session(session, project, into)
        study_uid = session.scalar(
            select(StagingSession.study_uid).where(StagingSession.pk == staging_pk)
        )
        study = session.get_one(Study, existing.study_pk)
        if study.study_uid != study_uid:
            raise ConflictError(
                f"cannot merge staging session {staging_pk} into {into}: "
                "it holds another study (a session is one study)"
            )
        labels = (existing.subject_label, existing.label)
        verdict = _check(review, session, staging, project, labels, ignore=existing.pk)
        if verdict.outcome != READY or verdict.target is None:
            raise refuse(f"merge staging session {staging_pk} into {into}", verdict)
        target = replace(verdict.target, merge_into=existing.pk)
    return archive_session(review, staging_pk, target, caller.name)


def delete(review: Review, staging_pk: int, *, caller: Caller) -> int:
    """Delete a staging session and its instances (recorded); return the instances removed."""
    with review.intake.db.unit_of_work() as session:
        staging = require_staging(session, staging_pk)
        writable(caller, session, staging)
        _reviewable(staging, "delete")
        details: dict[str, Any] = {
            "study_uid": staging.study_uid,
            "status": staging.status,
            "reasons": [r.get("code") for r in staging.reasons or ()],
        }
        keys = purge_instances(session, [staging_pk])
        drop_staging(session, [staging_pk])
        details["instances"] = len(keys)
        record_action(session, "deleted", staging_pk=staging_pk, user=caller.name, details=details)
    for key in keys:
        review.intake.blobs.remove(key)
    return len(keys)
