"""The spine's review pass: check newly READY sessions, hold or release RT sessions.

``evaluate`` returns the sessions to archive (clean ones of auto-archive projects, and
quarantined ones); ``pipeline.archive_session`` archives them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from dicomgate.archive.models import Instance, SetAside, StagingSession, utcnow
from dicomgate.archive.projects import AUTO, archive_policy
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.archive.sessions import record_action, record_equipment
from dicomgate.prearchive.checks import QUARANTINED, READY, Verdict, assess
from dicomgate.prearchive.context import Review, staged_headers
from dicomgate.prearchive.store import aware, is_due, review_row, set_state
from dicomgate.prearchive.target import ArchiveTarget

ToArchive = list[tuple[int, ArchiveTarget]]
CHECKABLE = ("READY", "ERROR", "CONFLICT")


def apply_verdict(session: Session, staging_pk: int, verdict: Verdict, now: dt.datetime) -> None:
    """Store a verdict on the staging session and its review row."""
    set_state(session, staging_pk, verdict.status, verdict.reasons_json())
    row = review_row(session, staging_pk)
    first = row.evaluated_at is None
    row.decision, row.evaluated_at, row.hold_until = verdict.decision, now, verdict.hold_until
    target = verdict.target
    if target is None:
        return
    row.warnings, row.original = target.warnings, target.original
    row.proposed_project = target.proposed_project or target.project
    row.subject_label, row.session_label = target.subject, target.session
    if first and verdict.equipment:
        record_equipment(session, row.proposed_project, verdict.equipment)


def evaluate(review: Review, staging_pk: int, now: dt.datetime | None = None) -> ToArchive:
    """Check one staging session, store the verdict, return it when it is to be archived now.

    Headers are read before the write transaction, so receivers never wait on blob reads.
    """
    now = now or utcnow()
    db = review.intake.db
    with db.unit_of_work() as session:
        staging = session.get(StagingSession, staging_pk)
        if staging is None or staging.status not in CHECKABLE:
            return []
        held = _held_for(session, staging)
        if held is not None:
            _absorb(session, staging, held)
            staging_pk = held.pk
    with db.reader() as session:
        headers = staged_headers(review.intake, session, staging_pk)
    with db.unit_of_work() as session:
        staging = session.get(StagingSession, staging_pk)
        if staging is None or staging.status not in CHECKABLE:
            return []
        verdict = assess(review, session, staging, headers, now=now)
        apply_verdict(session, staging_pk, verdict, now)
        target = verdict.target
        auto = target is not None and archive_policy(session, target.project) == AUTO
    if target is not None and (
        verdict.outcome == QUARANTINED or (verdict.outcome == READY and auto)
    ):
        return [(staging_pk, target)]
    return []


def evaluate_ready(review: Review, now: dt.datetime | None = None) -> ToArchive:
    """Check every READY session not checked yet."""
    with review.intake.db.reader() as session:
        pks = list(
            session.scalars(
                select(StagingSession.pk)
                .outerjoin(StagingReview, StagingReview.staging_pk == StagingSession.pk)
                .where(StagingSession.status == "READY", StagingReview.evaluated_at.is_(None))
                .order_by(StagingSession.pk)
            )
        )
    return [item for pk in pks for item in evaluate(review, pk, now)]


def recheck_held(review: Review, now: dt.datetime | None = None) -> ToArchive:
    """Check held RT sessions again when their hold ran out or the target project changed."""
    now = now or utcnow()
    with review.intake.db.reader() as session:
        held = list(
            session.execute(
                select(StagingReview)
                .join(StagingSession, StagingSession.pk == StagingReview.staging_pk)
                .where(StagingSession.status == "ERROR", StagingReview.hold_until.is_not(None))
            ).scalars()
        )
        due = [r.staging_pk for r in held if is_due(r.hold_until, now) or _news(session, r)]
    return [item for pk in due for item in evaluate(review, pk, now)]


def _news(session: Session, row: StagingReview) -> bool:
    """Return whether the held session's project got new archived data since its last check."""
    if row.evaluated_at is None or row.proposed_project is None:
        return True
    newest = session.scalar(
        select(func.max(ArchivedSession.updated_at)).where(
            ArchivedSession.project_id == row.proposed_project
        )
    )
    return newest is not None and aware(newest) > aware(row.evaluated_at)


def _held_for(session: Session, staging: StagingSession) -> StagingSession | None:
    """Return a session of the same study held for its RT references, if any."""
    if staging.status != "READY":
        return None
    query = (
        select(StagingSession)
        .join(StagingReview, StagingReview.staging_pk == StagingSession.pk)
        .where(
            StagingSession.study_uid == staging.study_uid,
            StagingSession.pk != staging.pk,
            StagingSession.status == "ERROR",
            StagingReview.hold_until.is_not(None),
        )
        .order_by(StagingSession.pk)
    )
    return session.scalars(query).first()


def absorb(session: Session, source: StagingSession, into: StagingSession, action: str) -> None:
    """Move every instance (and set-aside item) of ``source`` into ``into``; drop ``source``."""
    session.execute(
        update(Instance).where(Instance.staging_pk == source.pk).values(staging_pk=into.pk)
    )
    session.execute(
        update(SetAside).where(SetAside.staging_pk == source.pk).values(staging_pk=into.pk)
    )
    into.instance_count += source.instance_count
    into.last_received_at = max(into.last_received_at, source.last_received_at)
    into.updated_at = utcnow()
    record_action(
        session, action, staging_pk=into.pk, details={"from_staging": source.pk}, project=None
    )
    session.execute(delete(StagingReview).where(StagingReview.staging_pk == source.pk))
    session.delete(source)
    session.flush()


def _absorb(session: Session, staging: StagingSession, held: StagingSession) -> None:
    absorb(session, staging, held, "absorbed")
