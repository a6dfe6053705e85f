"""The spine, thin: staging sessions that went quiet become READY, are checked, then archived.

``advance`` runs one pass: ``mark_stable`` (RECEIVING -> READY), the review checks of
``prearchive.spine`` (READY -> READY | CONFLICT | ERROR, RT holds released or run out), then
``archive_session`` for what may go now (clean sessions of auto-archive projects, quarantined
ones). Review actions (``prearchive.actions``) call ``archive_session`` too.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update

from dicomgate.archive.deidentify import archive_deidentified, project_deid
from dicomgate.archive.index import log_change
from dicomgate.archive.models import StagingSession, utcnow
from dicomgate.db import Database
from dicomgate.errors import ConflictError, HeldForReviewError
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.prearchive import spine
from dicomgate.prearchive.context import Review
from dicomgate.prearchive.store import (
    begin_archiving,
    restore_state,
    review_row,
    set_state,
    store_session,
)
from dicomgate.prearchive.target import ArchiveTarget

log = logging.getLogger(__name__)


def mark_stable(db: Database, stable_after: float, now: dt.datetime | None = None) -> list[int]:
    """Move RECEIVING sessions with nothing new for ``stable_after`` seconds to READY."""
    cutoff = (now or utcnow()) - dt.timedelta(seconds=stable_after)
    with db.unit_of_work() as session:
        pks = list(
            session.scalars(
                select(StagingSession.pk).where(
                    StagingSession.status == "RECEIVING",
                    StagingSession.last_received_at <= cutoff,
                )
            )
        )
        if pks:
            session.execute(
                update(StagingSession)
                .where(StagingSession.pk.in_(pks), StagingSession.status == "RECEIVING")
                .values(status="READY", updated_at=utcnow())
            )
            for pk in pks:
                log_change(session, "staging_ready", "staging", pk)
    return pks


def archive_session(
    review: Review, staging_pk: int, target: ArchiveTarget, user: str | None = None
) -> int:
    """Archive one checked staging session into ``target.project``; return the session's pk.

    The staging session goes READY/CONFLICT/ERROR -> ARCHIVING (committed), then ARCHIVED with
    its archived session row, labels and the study's project in one transaction. When that
    fails it goes back to the status it had and the error is raised; nothing is half-archived.

    For a target project with a ``deid`` block, ``archive.deidentify`` stores a de-identified
    copy instead (and keeps the original only in ``deid.identified_project``). When it holds
    the session (identity mismatch, no pseudonym, references it would break), the status and
    reason are recorded and ``HeldForReviewError`` is raised. Keep this name and signature.

    A quarantine release (``target.replaces``) takes this path too, from the ARCHIVED staging
    session of the quarantined one: the quarantined session is removed only in the transaction
    that stores the released one, and a failed archive puts the staging session back to ARCHIVED.

    Parameters
    ----------
    review
        The intake stores and the review configuration (settings included).
    staging_pk
        The staging session; the caller has run the target project's checks (``assess``).
    target
        Project, labels and findings to archive with (``merge_into`` to add to a session).
    user
        Who asked (review actions), recorded in the change log.

    Raises
    ------
    ConflictError
        When the session is not in a state that may be archived, or the label is taken.
    """
    db = review.intake.db
    with db.unit_of_work() as session:
        previous = begin_archiving(session, staging_pk, target.replaces)
    try:
        deid = project_deid(review, target.project)
        if deid is not None:  # the project stores de-identified data only
            return archive_deidentified(review, staging_pk, target, deid, user)
        with db.unit_of_work() as session:
            archived_pk = store_session(session, staging_pk, target, user)
    except HeldForReviewError as held:
        with db.unit_of_work() as session:
            set_state(session, staging_pk, held.status, [held.reason])
        raise
    except BaseException:
        with db.unit_of_work() as session:
            restore_state(session, staging_pk, previous)
        raise
    log.info("staging session %s archived into %s", staging_pk, target.project)
    return archived_pk


def advance(review: Review, now: dt.datetime | None = None) -> None:
    """Run one pass of the spine: stabilise, check, archive what may go."""
    mark_stable(review.intake.db, review.settings.stable_after, now)
    for staging_pk, target in spine.evaluate_ready(review, now) + spine.recheck_held(review, now):
        try:
            archive_session(review, staging_pk, target)
        except HeldForReviewError as held:
            log.info("staging session %s held: %s", staging_pk, held.reason.get("code"))
        except ConflictError as exc:
            # Another session took the label or the study meanwhile: hold it for review.
            log.warning("staging session %s not archived: %s", staging_pk, type(exc).__name__)
            reason = Reason(ReasonCode.LABEL_CONFLICT, str(exc)).to_json()
            with review.intake.db.unit_of_work() as session:
                set_state(session, staging_pk, "CONFLICT", [dict(reason)])
        except Exception:
            # Storage trouble: check the session again at the next pass, then let it surface.
            with review.intake.db.unit_of_work() as session:
                review_row(session, staging_pk).evaluated_at = None
            raise
