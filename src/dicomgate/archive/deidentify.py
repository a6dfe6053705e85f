"""Archive a staging session de-identified: the glue between the pure engine and the index.

``pipeline.archive_session`` calls :func:`archive_deidentified` for a target project whose
settings carry a ``deid`` block. In order:

1. read the staged headers; check the operator-confirmed identity (``identity_mismatch``
   holds the session in CONFLICT with both values instead of overwriting anything) or
   follow a person's resolution of that hold (``archive.deid_subject``);
2. in the identity vault: the project secret, the subject's pseudonym and date offset (the
   same patient keeps them across imports and sources; another project gets others);
3. de-identify every instance (``deid.apply``) and write the new blobs; an instance with
   suspected burned-in text (not allowed, no pixel mask) sends the whole *original* session
   to QUARANTINE with the reason instead (a release out of QUARANTINE is refused);
4. check that every reference that resolved in the session still resolves after the UIDs
   were replaced (RT Structure Set -> images, Plan -> Structure Set, Dose -> Plan);
5. in the vault: original <-> new UIDs and the import's nominative data; then one index
   transaction stores the copy into the project and either archives the original into
   ``deid.identified_project`` or purges it (its blobs are removed after the commit).

Whatever fails removes the blobs it wrote; nothing is half-archived.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.deid_index import Copy, store_deidentified
from dicomgate.archive.deid_subject import (
    SubjectChoice,
    choose_subject,
    chosen_keys,
    held,
    with_candidates,
)
from dicomgate.archive.models import Instance
from dicomgate.archive.projects import QUARANTINE
from dicomgate.archive.sessions import archived_lookup
from dicomgate.deid import TABLE_EDITION, DeidKeys, apply, check_references, remap_uid
from dicomgate.deid.config import ProjectDeid, open_vault
from dicomgate.deid.identity import IDENTITY_MISMATCH
from dicomgate.deid.plan import compile_plan
from dicomgate.deid.pseudonyms import Identity
from dicomgate.deid.subjects import uid_pairs
from dicomgate.deid.table import Option
from dicomgate.dicom.encode import encode_part10
from dicomgate.errors import ConflictError, HeldForReviewError, StorageError
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.prearchive.context import Review
from dicomgate.prearchive.store import require_staging, store_session
from dicomgate.prearchive.target import ArchiveTarget
from dicomgate.rules.rt_links import ArchivedLookup, RefKind

log = logging.getLogger(__name__)


class QuarantineError(Exception):
    """An instance may carry burned-in text: the session goes to QUARANTINE."""


@dataclass(frozen=True)
class Staged:
    """Instances to de-identify: their origin JSON, blob keys and headers (no pixel data)."""

    origin: dict[str, Any]
    blob_keys: list[str]
    headers: list[Dataset]


def project_deid(review: Review, project: str) -> ProjectDeid | None:
    """Return the de-identification block of ``project``, or None (identified project)."""
    for config in review.settings.projects:
        if config.id == project:
            return config.deid
    return None


def deid_archived_lookup(review: Review, session: Session, project: str) -> ArchivedLookup:
    """Return the RT-link lookup of ``project`` for the prearchive checks.

    A de-identified project holds only replaced UIDs, so an incoming RT object that names
    the original UIDs of images archived earlier is looked up under their replacements too.
    The project secret is read from the vault on the first lookup only (sessions without RT
    references never open it); other projects get the plain lookup.
    """
    base = archived_lookup(session, project)
    config = project_deid(review, project)
    if config is None or Option.RETAIN_UIDS in config.effective_profile.effective_options:
        return base
    secrets: list[bytes] = []

    def lookup(kind: RefKind, uid: str) -> bool:
        if base(kind, uid):
            return True
        if not secrets:
            settings = review.settings
            with open_vault(settings.deid, settings.data_dir) as vault:
                secrets.append(vault.project_secret(project))
        return base(kind, remap_uid(secrets[0], uid))

    return lookup


def deid_equipment(
    review: Review, project: str | None, equipment: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Return the equipment to record for ``project``: as its profile leaves it.

    A de-identified project must not learn a device's identity (serial number, station
    name) from its equipment list unless its profile retains it; a value the profile would
    remove, empty or replace is recorded as ``None``.
    """
    config = project_deid(review, project) if project else None
    if config is None:
        return equipment
    plan = compile_plan(config.effective_profile)

    def kept(keyword: str) -> bool:
        tag = tag_for_keyword(keyword)
        return tag is None or plan.action_for(tag) in (None, "K")

    return [{k: (v if kept(k) else None) for k, v in e.items()} for e in equipment]


@dataclass(frozen=True)
class Prepared:
    """De-identified copies written to the blob store (not indexed), with their keys."""

    copies: list[Copy]
    keys: DeidKeys
    details: dict[str, Any]


def archive_deidentified(
    review: Review, staging_pk: int, target: ArchiveTarget, config: ProjectDeid, user: str | None
) -> int:
    """De-identify an ARCHIVING staging session into ``target.project``; return the session pk.

    Raises
    ------
    HeldForReviewError
        The session must wait for a person (identity mismatch, no pseudonym, a reference that
        de-identification would break); the caller records the status and reason.
    ConflictError
        A release out of QUARANTINE (``target.replaces``) finds burned-in text: it is refused.
    """
    staged = read_staged(review, staging_pk)
    try:
        subject = choose_subject(config, staged.origin, staged.headers)
    except HeldForReviewError as exc:
        raise _with_candidates(review, target.project, staged, exc) from None
    try:
        ready = deidentify_copies(
            review, target.project, config, subject, staged, f"staging-{staging_pk}"
        )
    except QuarantineError as exc:
        if target.replaces is not None:  # a release from QUARANTINE: refused, it stays there
            code = ReasonCode.BURNED_IN_ANNOTATION.value
            raise ConflictError(f"{code}: {exc} (the session stays in {QUARANTINE})") from None
        return _quarantine(review, staging_pk, target, str(exc), user)
    with removed_on_failure(review, ready.copies), review.intake.db.unit_of_work() as session:
        archived_pk, purged = store_deidentified(
            session, staging_pk, target, ready.copies, ready.keys, ready.details,
            review.settings, user,
        )  # fmt: skip
    for key in purged:
        review.intake.blobs.remove(key)
    log.info("staging session %s de-identified into %s", staging_pk, target.project)
    return archived_pk


def deidentify_copies(
    review: Review,
    project: str,
    config: ProjectDeid,
    subject: Identity | SubjectChoice,
    staged: Staged,
    import_ref: str,
) -> Prepared:
    """De-identify ``staged`` for ``project``: vault keys, new blobs, reference check, vault.

    ``subject`` is the subject's identity, or a :class:`SubjectChoice` (a pseudonym a person
    assigned, an identity to link).

    Raises
    ------
    QuarantineError
        An instance may carry burned-in text (nothing is left written).
    HeldForReviewError
        No pseudonym, or a reference would break (nothing is left written).
    """
    profile = config.effective_profile
    settings = review.settings
    with open_vault(settings.deid, settings.data_dir) as vault:
        choice = subject if isinstance(subject, SubjectChoice) else SubjectChoice(subject)
        keys = chosen_keys(vault, project, config, choice, staged.headers[0])
        copies = _deidentify(review, staged.blob_keys, keys, config)
        with removed_on_failure(review, copies):
            references = _check_references(staged.headers, [c.header for c in copies])
            if Option.RETAIN_UIDS not in profile.effective_options:
                vault.record_uid_mappings(project, uid_pairs(staged.headers, keys))
            vault.record_import(project, keys.subject_id, import_ref, _nominative(staged))
    details = {"profile": profile.name, "table_edition": TABLE_EDITION, **references}
    return Prepared(copies, keys, details)


def _with_candidates(
    review: Review, project: str, staged: Staged, exc: HeldForReviewError
) -> HeldForReviewError:
    """Add the vault's candidate subjects to an identity mismatch (see deid_subject)."""
    if exc.reason.get("code") != IDENTITY_MISMATCH or "details" not in exc.reason:
        return exc
    settings = review.settings
    with open_vault(settings.deid, settings.data_dir) as vault:
        reason = with_candidates(vault, project, staged.origin, staged.headers, dict(exc.reason))
    return HeldForReviewError(exc.status, reason)


def read_staged(review: Review, staging_pk: int) -> Staged:
    """Return the origin, blob keys and headers (no pixel data) of a staging session."""
    with review.intake.db.reader() as session:
        origin = dict(require_staging(session, staging_pk).origin or {})
        keys = list(
            session.scalars(
                select(Instance.blob_key)
                .where(Instance.staging_pk == staging_pk)
                .order_by(Instance.pk)
            )
        )
    headers = [read_blob(review, key, stop_before_pixels=True) for key in keys]
    if not headers:
        raise StorageError(f"staging session {staging_pk} has no instances to archive")
    return Staged(origin, keys, headers)


def read_blob(review: Review, blob_key: str, stop_before_pixels: bool = False) -> Dataset:
    """Read one stored instance (optionally without its pixel data)."""
    try:
        data = review.intake.blobs.read(blob_key)
        return pydicom.dcmread(BytesIO(data), stop_before_pixels=stop_before_pixels)
    except (OSError, ValueError) as exc:
        raise StorageError(f"cannot read stored blob {blob_key}") from exc


def _deidentify(
    review: Review, blob_keys: list[str], keys: DeidKeys, config: ProjectDeid
) -> list[Copy]:
    copies: list[Copy] = []
    with removed_on_failure(review, copies):
        for blob_key in blob_keys:
            result = apply(read_blob(review, blob_key), config.effective_profile, keys)
            if result.dataset is None:
                raise QuarantineError(result.quarantine_reason or "burned-in text suspected")
            copies.append(_write_copy(review, result.dataset))
    return copies


def _write_copy(review: Review, ds: Dataset) -> Copy:
    data = encode_part10(ds)
    key = review.intake.blobs.create(data)
    if "PixelData" in ds:
        del ds.PixelData  # the header is all the index needs; free the memory now
    digest = hashlib.sha256(memoryview(data)[128:]).hexdigest()
    return Copy(ds, key, len(data), digest, str(ds.file_meta.TransferSyntaxUID))


@contextmanager
def removed_on_failure(review: Review, copies: list[Copy]) -> Iterator[None]:
    """Remove the copies' blobs when the block fails."""
    try:
        yield
    except BaseException:
        for copy in copies:
            review.intake.blobs.remove(copy.blob_key)
        raise


def _check_references(before: list[Dataset], after: list[Dataset]) -> dict[str, int]:
    broken_before, broken_after = check_references(before), check_references(after)
    if len(broken_after) > len(broken_before):
        raise held(
            "ERROR",
            ReasonCode.DEID_REFERENCES_BROKEN,
            "references that resolved in the session would not resolve after de-identification",
            unresolved_after=broken_after[:20],
        )
    return {"references_unresolved_before": len(broken_before), "references_checked": 1}


def _nominative(staged: Staged) -> dict[str, str]:
    first = staged.headers[0]
    keywords = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber")
    data = {k: str(first.get(k, "") or "") for k in keywords}
    data["StudyInstanceUID"] = str(first.get("StudyInstanceUID", ""))
    data["import_path"] = str(staged.origin.get("import_path") or "")
    return data


def _quarantine(
    review: Review, staging_pk: int, target: ArchiveTarget, why: str, user: str | None
) -> int:
    reason = Reason(ReasonCode.BURNED_IN_ANNOTATION, why, {"project": target.project})
    quarantined = ArchiveTarget(
        project=QUARANTINE,
        subject=target.subject,
        session=target.session,
        original=target.original,
        reasons=[dict(reason.to_json())],
        proposed_project=target.project,
        warnings=target.warnings,
        frames_of_reference=target.frames_of_reference,
    )
    with review.intake.db.unit_of_work() as session:
        archived_pk = store_session(session, staging_pk, quarantined, user)
    log.info("staging session %s quarantined: burned-in text suspected", staging_pk)
    return archived_pk
