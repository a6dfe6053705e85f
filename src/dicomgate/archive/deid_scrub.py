"""Scrub what the index copied from an original before it was de-identified.

Before a staging session is de-identified the prearchive has already written header values
into the index: the review row's decision (labels from Patient's Name and ID), the actions a
data manager took on it (a rename records the labels before and after), the job that
imported it (the operator-confirmed identity in its parameters, original SOP Instance UIDs
in its item records). Once the session is de-identified into a project these rows belong to
that project, so they must hold only de-identified values: the originals are in the vault.
Every function takes the session explicitly and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.session_models import PrearchiveAction, StagingReview
from dicomgate.deid import TABLE_EDITION
from dicomgate.jobs.models import Job, JobItem
from dicomgate.jobs.statuses import FINAL_STATUSES
from dicomgate.jobs.store import append_log

_LABEL_KEYS = frozenset({"subject", "session", "study_uid", "labels", "fields"})
_LABEL_ACTIONS = frozenset({"renamed", "identity_resolved"})


def scrub_review(session: Session, staging_pk: int) -> None:
    """Drop the header-derived labels and warnings from a purged original's review row."""
    row = session.get(StagingReview, staging_pk)
    if row is None:
        return
    decision = {k: v for k, v in (row.decision or {}).items() if k not in _LABEL_KEYS}
    row.decision, row.warnings, row.original = decision, [], {}
    row.subject_label = row.session_label = None


def scrub_actions(session: Session, staging_pk: int, keep_project: str | None = None) -> None:
    """Remove labels and UIDs from the review actions taken on the original.

    Actions recorded for ``keep_project`` (the identified project the original was archived
    into) keep their details: that project holds the identity anyway.
    """
    query = select(PrearchiveAction).where(PrearchiveAction.staging_pk == staging_pk)
    for action in session.scalars(query):
        if keep_project is not None and action.project_id == keep_project:
            continue
        action.details = _scrubbed(action.action, dict(action.details or {}))


def _scrubbed(action: str, details: dict[str, Any]) -> dict[str, Any]:
    if action in _LABEL_ACTIONS:
        details = {k: v for k, v in details.items() if k not in ("from", "to")}
    clean = {k: v for k, v in details.items() if k not in _LABEL_KEYS}
    return {**clean, "scrubbed": "identifying values removed on de-identification"}


def scrub_job_items(session: Session, job_id: str | None, replaced: Mapping[str, str]) -> None:
    """Point the import job's item records at the replaced SOP Instance UIDs.

    A replaced item records the PS3.15 edition it was de-identified under (``deidentified``).
    """
    if not job_id:
        return
    for item in session.scalars(select(JobItem).where(JobItem.job_id == job_id)):
        uid = (item.detail or {}).get("sop_instance_uid")
        if isinstance(uid, str) and uid in replaced:
            new = {"sop_instance_uid": replaced[uid], "deidentified": TABLE_EDITION}
            item.detail = {**item.detail, **new}


def drop_job_identity(session: Session, job_id: str | None) -> None:
    """Drop the confirmed identity from a finished import job's parameters.

    A job that may still run keeps it (a resumed run checks its remaining files with it).
    """
    job = session.get(Job, job_id) if job_id else None
    if job is None or job.status not in FINAL_STATUSES:
        return
    if (job.params or {}).get("identity"):
        job.params = {k: v for k, v in job.params.items() if k != "identity"}
        append_log(session, job.id, "confirmed identity removed after de-identification")
