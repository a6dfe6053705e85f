"""The spine, thin: staging sessions that went quiet become READY, READY ones are archived.

Later stages (sorting rules, de-identification) slot in between READY and ARCHIVED here.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import select, update

from dicomgate.archive.index import ensure_project, log_change
from dicomgate.archive.models import Instance, Series, StagingSession, Study, utcnow
from dicomgate.db import Database

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


def archive_ready(db: Database, default_project: str) -> list[int]:
    """Archive every READY session into its target project (the source's, else the default)."""
    with db.reader() as session:
        ready = list(
            session.scalars(select(StagingSession).where(StagingSession.status == "READY"))
        )
    for staging in ready:
        _archive(db, staging.pk, staging.project_id or default_project)
    return [staging.pk for staging in ready]


def _archive(db: Database, staging_pk: int, project: str) -> None:
    with db.unit_of_work() as session:
        ensure_project(session, project)
        study_pks = (
            select(Series.study_pk)
            .join(Instance, Instance.series_pk == Series.pk)
            .where(Instance.staging_pk == staging_pk)
        )
        session.execute(
            update(Study)
            .where(Study.pk.in_(study_pks), Study.project_id.is_(None))
            .values(project_id=project)
        )
        session.execute(
            update(StagingSession)
            .where(StagingSession.pk == staging_pk, StagingSession.status == "READY")
            .values(status="ARCHIVED", project_id=project, updated_at=utcnow())
        )
        log_change(session, "staging_archived", "staging", staging_pk)
    log.info("staging session %s archived into %s", staging_pk, project)


def advance(db: Database, stable_after: float, default_project: str) -> None:
    """Run one pass of the spine: stabilise, then archive."""
    mark_stable(db, stable_after)
    archive_ready(db, default_project)
