"""Index writes of a de-identified archive: the copy's rows, then the original's fate.

The copy gets its own staging session (``source_key`` ``deid:<original pk>``), its patient,
study, series and instance rows under the new UIDs, and is archived with the prearchive's
``store_session`` under the pseudonym. The original is archived into the site's identified
project when one is configured; otherwise its instances are purged (blob keys returned for
removal after the commit), its patient row dropped when nothing else uses it, and its staging
row kept as the visible record (ARCHIVED, reason ``deidentified``) with the identifying
values scrubbed. Every function takes the session explicitly and never commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicomgate.archive import index
from dicomgate.archive.deid_scrub import (
    drop_job_identity,
    scrub_actions,
    scrub_job_items,
    scrub_review,
)
from dicomgate.archive.models import Instance, Patient, StagingSession, Study, utcnow
from dicomgate.archive.sessions import record_action, session_of_study
from dicomgate.deid import DeidKeys, remap_uid
from dicomgate.errors import HeldForReviewError
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.prearchive.store import purge_instances, require_staging, review_row, store_session
from dicomgate.prearchive.target import ArchiveTarget
from dicomgate.settings import Settings

_SAFE_ORIGIN_KEYS = ("kind", "remote_ae", "called_ae", "remote_host", "user", "job_id", "project")


@dataclass(frozen=True)
class Copy:
    """One de-identified instance written to the blob store, not yet indexed."""

    header: Dataset
    blob_key: str
    size: int
    sha256: str
    transfer_syntax: str


def store_deidentified(
    session: Session,
    staging_pk: int,
    target: ArchiveTarget,
    copies: list[Copy],
    keys: DeidKeys,
    details: dict[str, Any],
    settings: Settings,
    user: str | None,
) -> tuple[int, list[str]]:
    """Index and archive the copy, then keep or purge the original.

    Returns
    -------
    tuple
        The archived session's pk, and blob keys to remove once the transaction committed.
    """
    study_uid = str(copies[0].header.StudyInstanceUID)
    replaced = _replaced_sop_uids(session, staging_pk, copies)
    copy_pk = _copy_staging(session, staging_pk, study_uid, target.project, details)
    unused = _index_copies(session, copy_pk, copies)
    copy_target = _copy_target(session, target, keys, study_uid)
    archived_pk = store_session(session, copy_pk, copy_target, user)
    details = {**details, "copy_staging": copy_pk, "instances": len(copies)}
    kept = settings.deid.identified_project
    job = (require_staging(session, staging_pk).origin or {}).get("job_id")
    job_id = job if isinstance(job, str) else None
    if kept is not None:
        _keep_original(session, staging_pk, target, kept, user)
        purged: list[str] = []
    else:  # the original leaves the index: what was written about it goes too
        purged = _purge_original(session, staging_pk, target, copy_pk, study_uid)
        scrub_review(session, staging_pk)
        scrub_job_items(session, job_id, replaced)
    scrub_actions(session, staging_pk, keep_project=kept)
    drop_job_identity(session, job_id)
    record_action(
        session,
        "deidentified",
        staging_pk=staging_pk,
        archived_pk=archived_pk,
        project=target.project,
        user=user,
        details={**details, "original_kept_in": kept},
    )
    return archived_pk, purged + unused


def _replaced_sop_uids(session: Session, staging_pk: int, copies: list[Copy]) -> dict[str, str]:
    """Return original -> replacement SOP Instance UID (copies are in the instances' order)."""
    originals = session.scalars(
        select(Instance.sop_instance_uid)
        .where(Instance.staging_pk == staging_pk)
        .order_by(Instance.pk)
    )
    return {o: str(c.header.SOPInstanceUID) for o, c in zip(originals, copies, strict=False)}


def store_shared(
    session: Session,
    copies: list[Copy],
    keys: DeidKeys,
    project: str,
    origin: dict[str, Any],
    user: str | None,
) -> tuple[int, list[str]]:
    """Index and archive a shared copy into ``project`` (the source stays where it is).

    Returns
    -------
    tuple
        The archived session's pk, and blob keys of copies that were already archived.
    """
    study_uid = str(copies[0].header.StudyInstanceUID)
    copy_pk = _new_staging(session, f"share:{origin.get('job_id', '')}", study_uid, project, origin)
    unused = _index_copies(session, copy_pk, copies)
    target = _copy_target(session, ArchiveTarget(project, "", ""), keys, study_uid)
    archived_pk = store_session(session, copy_pk, target, user)
    record_action(
        session, "shared", staging_pk=copy_pk, archived_pk=archived_pk, project=project,
        user=user, details={**origin, "instances": len(copies)},
    )  # fmt: skip
    return archived_pk, unused


def _copy_staging(
    session: Session, staging_pk: int, study_uid: str, project: str, details: dict[str, Any]
) -> int:
    original = require_staging(session, staging_pk)
    origin = {k: v for k, v in (original.origin or {}).items() if k in _SAFE_ORIGIN_KEYS}
    origin = {**origin, "deidentified_from": staging_pk, **details}
    return _new_staging(session, f"deid:{staging_pk}", study_uid, project, origin)


def _new_staging(
    session: Session, source_key: str, study_uid: str, project: str, origin: dict[str, Any]
) -> int:
    now = utcnow()
    row = StagingSession(
        source_key=source_key,
        study_uid=study_uid,
        status="ARCHIVING",
        project_id=project,
        origin=origin,
        instance_count=0,
        created_at=now,
        last_received_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return int(row.pk)


def _index_copies(session: Session, copy_pk: int, copies: list[Copy]) -> list[str]:
    """Add the copies' rows; an instance already archived identically is not added twice."""
    unused: list[str] = []
    for copy in copies:
        sop_uid = str(copy.header.SOPInstanceUID)
        stored = session.scalars(
            select(Instance.sha256).where(Instance.sop_instance_uid == sop_uid)
        ).first()
        if stored is not None:
            if stored != copy.sha256:
                raise HeldForReviewError("CONFLICT", _duplicate_reason(sop_uid))
            unused.append(copy.blob_key)
            continue
        _add(session, copy_pk, copy)
    row = session.get_one(StagingSession, copy_pk)
    row.instance_count = len(copies)
    return unused


def _add(session: Session, copy_pk: int, copy: Copy) -> None:
    header = copy.header
    patient_pk = index.upsert_patient(session, header)
    study_pk = index.upsert_study(session, header, patient_pk)
    series_pk = index.upsert_series(session, header, study_pk)
    values = {
        "series_pk": series_pk,
        "staging_pk": copy_pk,
        "transfer_syntax_uid": copy.transfer_syntax,
        "blob_key": copy.blob_key,
        "size": copy.size,
        "sha256": copy.sha256,
    }
    instance_pk = index.add_instance(session, header, values)
    index.log_change(session, "new_instance", "instance", instance_pk)


def _duplicate_reason(sop_uid: str) -> dict[str, object]:
    message = "a de-identified instance with this UID is archived with other content"
    reason = Reason(ReasonCode.CONFLICTING_DUPLICATE, message, {"sop_instance_uid": sop_uid})
    return dict(reason.to_json())


def _copy_target(
    session: Session, target: ArchiveTarget, keys: DeidKeys, study_uid: str
) -> ArchiveTarget:
    existing = session_of_study(session, study_uid)
    merge = existing.pk if existing is not None and existing.project_id == target.project else None
    secret = keys.uid_secret
    tag = hashlib.sha256(study_uid.encode()).hexdigest()[:8].upper()
    return ArchiveTarget(
        project=target.project,
        subject=keys.subject_id,
        session=f"{keys.subject_id}_{tag}"[:64],
        scans={remap_uid(secret, uid): scan for uid, scan in target.scans.items()},
        frames_of_reference=[remap_uid(secret, uid) for uid in target.frames_of_reference],
        merge_into=merge,
        replaces=target.replaces,  # a release: the quarantined original leaves with the copy
    )


def _keep_original(
    session: Session, staging_pk: int, target: ArchiveTarget, project: str, user: str | None
) -> None:
    staging = require_staging(session, staging_pk)
    existing = session_of_study(session, staging.study_uid)
    merge = existing.pk if existing is not None and existing.project_id == project else None
    # A release's quarantined session left with the copy (its pk may be the copy's now).
    kept = replace(target, project=project, merge_into=merge, proposed_project=None, replaces=None)
    store_session(session, staging_pk, kept, user)


def _purge_original(
    session: Session, staging_pk: int, target: ArchiveTarget, copy_pk: int, study_uid: str
) -> list[str]:
    staging = require_staging(session, staging_pk)
    patient_pks = set(
        session.scalars(select(Study.patient_pk).where(Study.study_uid == staging.study_uid))
    )
    keys = purge_instances(session, [staging_pk])
    for patient_pk in patient_pks:
        if not session.scalar(select(func.count(Study.pk)).where(Study.patient_pk == patient_pk)):
            patient = session.get(Patient, patient_pk)
            if patient is not None:
                session.delete(patient)
    message = f"de-identified into {target.project} (staging {copy_pk}); original not kept"
    reason = Reason(ReasonCode.DEIDENTIFIED, message, {"copy_staging": copy_pk})
    staging.status, staging.project_id, staging.updated_at = "ARCHIVED", target.project, utcnow()
    staging.study_uid = study_uid  # the original Study Instance UID is kept only in the vault
    staging.reasons = [dict(reason.to_json())]
    staging.origin = {k: v for k, v in (staging.origin or {}).items() if k in _SAFE_ORIGIN_KEYS}
    row = review_row(session, staging_pk)
    row.original, row.subject_label, row.session_label = {}, None, None
    return keys
