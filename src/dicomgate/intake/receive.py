"""``receive()``: the only way into dicomgate.

Parse the header once (never pixels), zero the preamble, check the UIDs, detect duplicates,
write the blob durably, then index it in one transaction. Nothing is reported as stored before
the commit returned; whatever is refused is kept aside with its reason, never dropped.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import asdict, dataclass, field
from functools import partial

from pydicom import Dataset
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, configure_mappers

from dicomgate.archive import index
from dicomgate.archive.blobstore import FilesystemBlobStore, TakenFile
from dicomgate.archive.models import Instance, SetAside
from dicomgate.db import CommitNotDurableError, Database
from dicomgate.dicom.header_values import uid_value, value_text
from dicomgate.dicom.part10 import NotDicomError, Part10, parse_any, parse_dataset
from dicomgate.dicom.uids import is_valid_uid
from dicomgate.duplicate_policy import DuplicatePolicy
from dicomgate.group_commit import GroupCommit
from dicomgate.intake.known_rows import KnownRows
from dicomgate.intake.origin import Origin

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
    """What ``receive()`` writes to: the index, the blob store, the set-aside area, the policy.

    ``writer`` commits the index writes of concurrent ``receive()`` calls together (one
    transaction and one commit per group); ``known`` remembers committed series and staging rows.
    """

    db: Database
    blobs: FilesystemBlobStore
    set_aside: FilesystemBlobStore
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    writer: GroupCommit = field(init=False, repr=False, compare=False)
    known: KnownRows = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "writer", GroupCommit(self.db))
        object.__setattr__(self, "known", KnownRows())
        # Done on first use otherwise: inside the first store, which in a serving process
        # (every model imported) then waited 70-150 ms with the writer's lock held.
        configure_mappers()


@dataclass(frozen=True, slots=True)
class Prepared:
    """One instance read once: parsed, checked and hashed, ready to be stored.

    ``prepare`` does no I/O and may run on any thread; ``receive_prepared`` (one instance) and
    ``intake.batch.receive_batch`` (many) store what it returns without parsing it again.

    Parameters
    ----------
    data
        The bytes as received.
    origin
        Where they came from.
    parsed
        The Part-10 file and its header, or None when the bytes cannot be read as DICOM.
    digest
        SHA-256 of ``parsed.data`` after the preamble.
    error
        Why the bytes cannot be read (when ``parsed`` is None).
    source
        The file ``parsed.data`` was read from, byte for byte, when its source removes it once
        imported: a batch may link it into the blob store instead of writing a copy.
    """

    data: bytes
    origin: Origin
    parsed: Part10 | None
    digest: str = ""
    error: str = ""
    source: TakenFile | None = None


def prepare(data: bytes, origin: Origin, transfer_syntax: str | None = None) -> Prepared:
    """Parse and check the header (never pixels) and hash the instance; nothing is stored."""
    try:
        parsed = _parse(data, origin, transfer_syntax)
        check_uids(parsed.header)
    except NotDicomError as exc:
        return Prepared(data, origin, None, error=str(exc))
    return Prepared(data, origin, parsed, digest_of(parsed))


def digest_of(parsed: Part10) -> str:
    """Return the content digest duplicates are told apart by (the preamble left out)."""
    return hashlib.sha256(memoryview(parsed.data)[128:]).hexdigest()


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
    return receive_prepared(intake, prepare(data, origin, transfer_syntax))


def receive_prepared(intake: Intake, item: Prepared) -> ReceiveResult:
    """Take in one instance that ``prepare`` read: store it, or keep it aside with the reason."""
    if item.parsed is None:
        return _keep_aside(intake, item.data, item.origin, "malformed", item.error, None)
    return _store_new(intake, item.parsed, item.origin, item.digest)


def _parse(data: bytes, origin: Origin, transfer_syntax: str | None) -> Part10:
    if transfer_syntax:
        return parse_dataset(data, transfer_syntax, origin.remote_ae or "")
    return parse_any(data)


def check_uids(header: Dataset) -> None:
    """Raise NotDicomError when a UID the index keys on is missing or not a valid UID."""
    for keyword in _REQUIRED_UIDS:
        try:
            value = value_text(header, keyword)
        except Exception as exc:  # pydicom could not read the value
            raise NotDicomError(f"{keyword} cannot be read") from exc
        if value is None:
            raise NotDicomError(f"required attribute {keyword} is missing")
        if not is_valid_uid(value):
            raise NotDicomError(f"{keyword} is not a valid UID")


def _existing(intake: Intake, sop_uid: str) -> tuple[int, str, str] | None:
    with intake.db.reader() as session:
        query = select(Instance.pk, Instance.sha256, Instance.blob_key).where(
            Instance.sop_instance_uid == sop_uid
        )
        row = session.execute(query).first()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


def _store_new(intake: Intake, parsed: Part10, origin: Origin, digest: str) -> ReceiveResult:
    # No duplicate check before: the unique SOP Instance UID refuses a known instance inside the
    # write itself, which costs a resend one blob write but every new instance a transaction.
    key = intake.blobs.create(parsed.data)
    header = parsed.header
    work = partial(_index, parsed=parsed, origin=origin, digest=digest, key=key, known=intake.known)
    for attempt in (1, 2):
        try:
            series_pk, staging_pk, instance_pk = intake.writer.run(work)
            break
        except IntegrityError:
            existing = _existing(intake, uid_value(header, "SOPInstanceUID"))
            if existing is not None:
                intake.blobs.remove(key)
                return duplicate(intake, parsed, origin, digest, existing)
            # A remembered row may be gone (a deleted session, a purged original): forget
            # them all and write once more, looking every row up again.
            intake.known.forget()
            if attempt == 2:
                intake.blobs.remove(key)
                raise
        except CommitNotDurableError:
            raise  # the row may stand: its blob stays, and the sender is told of a failure
        except BaseException:
            intake.blobs.remove(key)
            raise
    staging = (origin.source_key, uid_value(header, "StudyInstanceUID"))
    intake.known.remember(uid_value(header, "SeriesInstanceUID"), series_pk, staging, staging_pk)
    return ReceiveResult(
        Outcome.STORED, uid_value(header, "SOPInstanceUID"), instance_pk, staging_pk
    )


def series_pk_for(session: Session, header: Dataset, known: KnownRows) -> int:
    """Return the series' pk (remembered, else upserting patient, study and series)."""
    series_pk = known.series.get(uid_value(header, "SeriesInstanceUID"))
    if series_pk is not None:
        return series_pk
    patient_pk = index.upsert_patient(session, header)
    study_pk = index.upsert_study(session, header, patient_pk)
    return index.upsert_series(session, header, study_pk)


def staging_pk_for(
    session: Session, header: Dataset, origin: Origin, known: KnownRows, count: int = 1
) -> int:
    """Return the RECEIVING staging session of ``origin`` and the study, counting ``count`` more."""
    study_uid = uid_value(header, "StudyInstanceUID")
    staging_pk = known.staging.get((origin.source_key, study_uid))
    if staging_pk is not None and index.touch_staging_session(session, staging_pk, count):
        return staging_pk
    origin_json = {k: v for k, v in asdict(origin).items() if v is not None}
    return index.staging_session_for(
        session, origin.source_key, study_uid, origin_json, count=count
    )


def _index(
    session: Session, *, parsed: Part10, origin: Origin, digest: str, key: str, known: KnownRows
) -> tuple[int, int, int]:
    header = parsed.header
    series_pk = series_pk_for(session, header, known)
    staging_pk = staging_pk_for(session, header, origin, known)
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
    return series_pk, staging_pk, instance_pk


def duplicate(
    intake: Intake,
    parsed: Part10,
    origin: Origin,
    digest: str,
    existing: tuple[int, str, str],
) -> ReceiveResult:
    """Decide about an instance whose SOP Instance UID is stored: ``existing`` (pk, hash, key).

    The same content is already stored; other content replaces it, is kept aside as a
    conflict, or is refused, as the duplicate policy says.
    """
    instance_pk, stored_digest, old_key = existing
    sop_uid = uid_value(parsed.header, "SOPInstanceUID")
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
    sop_uid = uid_value(parsed.header, "SOPInstanceUID")
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
            study_uid = uid_value(header, "StudyInstanceUID")
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


def refuse(
    intake: Intake, data: bytes, origin: Origin, reason: str, message: str, sop_uid: str | None
) -> ReceiveResult:
    """Keep ``data`` aside with ``reason`` without storing it (a source refused it up front).

    For a source that must refuse an instance before intake sees it (a STOW-RS part outside
    the target study, a part that is not ``application/dicom``): it is kept with its reason.
    """
    return _keep_aside(intake, data, origin, reason, message, sop_uid)
