"""``receive()``: the only way into dicomgate.

Parse the header once (never pixels), zero the preamble, check the UIDs, detect duplicates,
write the blob durably, then index it in one transaction. Nothing is reported as stored before
the commit returned; whatever is refused is kept aside with its reason, never dropped.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass

from pydicom import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dicomgate.archive import index
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.models import Instance, SetAside
from dicomgate.db import Database
from dicomgate.dicom.part10 import NotDicomError, Part10, parse_any, parse_dataset
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.intake.origin import Origin
from dicomgate.settings import DuplicatePolicy

_REQUIRED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class Outcome(enum.StrEnum):
    """What intake did with one instance."""

    STORED = "stored"
    ALREADY_STORED = "already_stored"
    CONFLICTING = "conflicting"
    REPLACED = "replaced"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ReceiveResult:
    """The explicit result of ``receive()``.

    Parameters
    ----------
    outcome
        What happened.
    sop_instance_uid
        The instance's UID when it could be read.
    instance_pk
        The index row of the stored instance (stored, already stored, replaced, conflicting).
    staging_pk
        The staging session the instance joined.
    reason
        Why it was refused or set aside (no PHI).
    """

    outcome: Outcome
    sop_instance_uid: str | None = None
    instance_pk: int | None = None
    staging_pk: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Return True when the instance is safely in the archive (acknowledge it)."""
        return self.outcome in (Outcome.STORED, Outcome.ALREADY_STORED, Outcome.REPLACED)


@dataclass(frozen=True, slots=True)
class Intake:
    """What ``receive()`` writes to: the index, the blob store, the set-aside area, the policy."""

    db: Database
    blobs: FilesystemBlobStore
    set_aside: FilesystemBlobStore
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST


def receive(
    intake: Intake, data: bytes, origin: Origin, transfer_syntax: str | None = None
) -> ReceiveResult:
    """Take one instance in: a Part-10 file, or a bare dataset with its transfer syntax.

    Parameters
    ----------
    intake
        The stores to write to.
    data
        The bytes as received.
    origin
        Where they came from.
    transfer_syntax
        For a bare dataset (C-STORE, STOW part without meta): its transfer syntax UID.
    """
    try:
        parsed = _parse(data, origin, transfer_syntax)
        _check_uids(parsed.header)
    except NotDicomError as exc:
        return _keep_aside(intake, data, origin, "malformed", str(exc), None)
    digest = hashlib.sha256(memoryview(parsed.data)[128:]).hexdigest()
    existing = _existing(intake, str(parsed.header.SOPInstanceUID))
    if existing is not None:
        return _duplicate(intake, parsed, origin, digest, existing)
    return _store_new(intake, parsed, origin, digest)


def _parse(data: bytes, origin: Origin, transfer_syntax: str | None) -> Part10:
    if transfer_syntax:
        return parse_dataset(data, transfer_syntax, origin.remote_ae or "")
    return parse_any(data)


def _check_uids(header: Dataset) -> None:
    for keyword in _REQUIRED_UIDS:
        value = header.get(keyword)
        if value is None:
            raise NotDicomError(f"required attribute {keyword} is missing")
        if not is_valid_uid(str(value)):
            raise NotDicomError(f"{keyword} is not a valid UID")


def _existing(intake: Intake, sop_uid: str) -> tuple[int, str, str] | None:
    with intake.db.reader() as session:
        query = select(Instance.pk, Instance.sha256, Instance.blob_key).where(
            Instance.sop_instance_uid == sop_uid
        )
        row = session.execute(query).first()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def _store_new(intake: Intake, parsed: Part10, origin: Origin, digest: str) -> ReceiveResult:
    key = intake.blobs.create(parsed.data)
    header = parsed.header
    try:
        with intake.db.unit_of_work() as session:
            staging_pk, instance_pk = _index(session, parsed, origin, digest, key)
    except IntegrityError:
        # Another association stored the same SOP Instance UID between our check and commit.
        intake.blobs.remove(key)
        existing = _existing(intake, str(header.SOPInstanceUID))
        if existing is None:
            raise
        return _duplicate(intake, parsed, origin, digest, existing)
    except BaseException:
        intake.blobs.remove(key)
        raise
    return ReceiveResult(Outcome.STORED, str(header.SOPInstanceUID), instance_pk, staging_pk)


def _index(
    session: Session, parsed: Part10, origin: Origin, digest: str, key: str
) -> tuple[int, int]:
    header = parsed.header
    patient_pk = index.upsert_patient(session, header)
    study_pk = index.upsert_study(session, header, patient_pk)
    series_pk = index.upsert_series(session, header, study_pk)
    origin_json = {k: v for k, v in asdict(origin).items() if v is not None}
    staging_pk = index.staging_session_for(
        session, origin.source_key, str(header.StudyInstanceUID), origin_json
    )
    instance_pk = index.add_instance(
        session,
        header,
        {
            "series_pk": series_pk,
            "staging_pk": staging_pk,
            "transfer_syntax_uid": parsed.transfer_syntax,
            "blob_key": key,
            "size": len(parsed.data),
            "sha256": digest,
        },
    )
    index.log_change(session, "new_instance", "instance", instance_pk)
    return staging_pk, instance_pk


def _duplicate(
    intake: Intake,
    parsed: Part10,
    origin: Origin,
    digest: str,
    existing: tuple[int, str, str],
) -> ReceiveResult:
    instance_pk, stored_digest, old_key = existing
    sop_uid = str(parsed.header.SOPInstanceUID)
    if stored_digest == digest:
        return ReceiveResult(Outcome.ALREADY_STORED, sop_uid, instance_pk)
    if intake.duplicate_policy is DuplicatePolicy.REPLACE:
        return _replace(intake, parsed, digest, instance_pk, old_key)
    message = "same SOP Instance UID as a stored instance, different content"
    result = _keep_aside(
        intake, parsed.data, origin, "conflicting_duplicate", message, sop_uid, parsed.header
    )
    if intake.duplicate_policy is DuplicatePolicy.REJECT:
        return result
    return ReceiveResult(Outcome.CONFLICTING, sop_uid, instance_pk, reason=message)


def _replace(
    intake: Intake, parsed: Part10, digest: str, instance_pk: int, old_key: str
) -> ReceiveResult:
    key = intake.blobs.create(parsed.data)
    try:
        with intake.db.unit_of_work() as session:
            row = session.get_one(Instance, instance_pk)
            row.blob_key, row.sha256, row.size = key, digest, len(parsed.data)
            row.transfer_syntax_uid = parsed.transfer_syntax
            index.log_change(session, "replaced_instance", "instance", instance_pk)
    except BaseException:
        intake.blobs.remove(key)
        raise
    intake.blobs.remove(old_key)
    sop_uid = str(parsed.header.SOPInstanceUID)
    return ReceiveResult(Outcome.REPLACED, sop_uid, instance_pk)


def _keep_aside(
    intake: Intake,
    data: bytes,
    origin: Origin,
    reason: str,
    message: str,
    sop_uid: str | None,
    header: Dataset | None = None,
) -> ReceiveResult:
    key = intake.set_aside.create(data)
    origin_json = {k: v for k, v in asdict(origin).items() if v is not None}
    with intake.db.unit_of_work() as session:
        staging_pk = None
        if header is not None:  # the prearchive shows the session it arrived with
            study_uid = str(header.StudyInstanceUID)
            staging_pk = index.staging_session_for(
                session, origin.source_key, study_uid, origin_json, counted=False
            )
        row = SetAside(
            reason=reason,
            message=message,
            sop_instance_uid=sop_uid,
            blob_key=key,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            origin=origin_json,
            staging_pk=staging_pk,
        )
        session.add(row)
        session.flush()
        index.log_change(session, reason, "set_aside", int(row.pk))
    return ReceiveResult(Outcome.REJECTED, sop_uid, reason=f"{reason}: {message}")
