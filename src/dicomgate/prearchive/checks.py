"""The checks of one staging session: ``rules.decide`` plus what only the index knows.

``assess`` returns a ``Verdict``: the state the session goes to, its typed reasons and the
``ArchiveTarget`` to archive it with. Index checks (CONFLICT): mixed_patients,
conflicting_duplicate, uid_conflict (the study is archived under another patient or in another
project), label_conflict (the session label is taken in the target project, or the study is
already archived there: ``merge`` adds to it). Rules (``decide``): missing_required_header,
equipment_not_compatible, rt_references_missing, rule_quarantine, no_rule_matched, rule_reject.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from pydicom.dataset import Dataset
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dicomgate.archive.deidentify import deid_archived_lookup, deid_equipment
from dicomgate.archive.models import Project, SetAside, StagingSession, Study
from dicomgate.archive.projects import QUARANTINE
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.archive.sessions import find_session, session_of_study
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.reasons import Reason, ReasonCode
from dicomgate.prearchive.context import Review
from dicomgate.prearchive.target import ArchiveTarget
from dicomgate.rules import (
    Action,
    Decision,
    LabelMapping,
    decide,
    labels_for,
    load_protocol,
    sanitize_label,
)
from dicomgate.rules.protocol import SortingProtocol
from dicomgate.rules.study_cards import equipment_of

READY, CONFLICT, ERROR = "READY", "CONFLICT", "ERROR"
QUARANTINED, REJECTED = "QUARANTINED", "REJECTED"


@dataclass(frozen=True)
class Verdict:
    """What the checks found for one staging session.

    ``outcome`` is READY (clean), CONFLICT, ERROR (RT hold or rejected), QUARANTINED (to be
    archived into QUARANTINE) or REJECTED (held in ERROR, never archived).
    """

    outcome: str
    reasons: tuple[Reason, ...]
    target: ArchiveTarget | None
    decision: dict[str, Any] = field(default_factory=dict)
    equipment: list[dict[str, Any]] = field(default_factory=list)
    hold_until: dt.datetime | None = None

    @property
    def status(self) -> str:
        """The staging status this verdict puts the session in."""
        return {QUARANTINED: READY, REJECTED: ERROR}.get(self.outcome, self.outcome)

    def reasons_json(self) -> list[dict[str, Any]]:
        """Return the reasons in JSON form."""
        return [dict(r.to_json()) for r in self.reasons]


def origin_of(staging: StagingSession) -> Origin:
    """Rebuild the typed Origin from a staging session's JSON (unknown keys ignored)."""
    data = staging.origin or {}
    known = {k: data.get(k) for k in Origin.__dataclass_fields__ if k != "kind"}
    try:
        kind = OriginKind(data.get("kind", "import"))
    except ValueError:
        kind = OriginKind.IMPORT
    fields: dict[str, Any] = {k: v for k, v in known.items() if isinstance(v, str)}
    return Origin(kind, **fields)


def _protocol_for(
    review: Review,
    session: Session,
    staging: StagingSession,
    header: Dataset,
    project: str | None,
) -> SortingProtocol:
    if project is None and review.protocol is not None:
        return review.protocol
    target = project or staging.project_id
    if target is None:  # the origin named no project: XNAT-style comments may name one
        named = _comments_project(review, session, header)
        target = named[0] if named else review.settings.default_project
    return load_protocol({"rules": [{"name": "target-project", "archive": target}]})


def _comments_project(
    review: Review, session: Session, header: Dataset
) -> tuple[str, LabelMapping] | None:
    """Return the project XNAT-style comments name (``Project: X``) and the mapping that read it.

    Only when no sorting protocol is configured (a protocol is the routing authority; its
    conditions can read the comments) and the default project's label mapping reads
    comments. X must exist and not be QUARANTINE (quarantine is the checks' decision).
    """
    mapping = review.labels.get(review.settings.default_project)
    if review.protocol is not None or mapping is None or mapping.comments is None:
        return None
    named = labels_for(header, mapping).project
    if named is None or named == QUARANTINE or session.get(Project, named) is None:
        return None
    return named, mapping


def assess(
    review: Review,
    session: Session,
    staging: StagingSession,
    headers: Sequence[Dataset],
    *,
    project: str | None = None,
    now: dt.datetime,
    ignore_archived: int | None = None,
    labels: tuple[str | None, str | None] = (None, None),
) -> Verdict:
    """Run every check for one staging session.

    Parameters
    ----------
    review
        Protocol, required headers, study cards, label mappings.
    session
        An index session (read only here).
    staging
        The staging session.
    headers
        Its instance headers.
    project
        An explicit target (a review action): the protocol is not consulted, only that
        project's checks run.
    now
        The current time (RT hold).
    ignore_archived
        An archived session the checks must not count as a conflict (release, merge).
    labels
        Subject and session labels asked for by a review action (sanitised here).
    """
    row = session.get(StagingReview, staging.pk)
    if project is None and row is not None and row.project_fixed:
        project = staging.project_id
    conflicts = _duplicates(session, staging.pk) + _mixed_patients(headers)
    if not headers:
        return Verdict(CONFLICT, tuple(conflicts), None)
    protocol = _protocol_for(review, session, staging, headers[0], project)
    decision = decide(
        headers,
        origin_of(staging),
        protocol,
        required=review.required,
        study_cards=review.cards,
        archived=lambda p: deid_archived_lookup(review, session, p),  # de-identified UIDs too
    )
    target = _target(review, session, staging, headers, decision, protocol, labels)
    if decision.action is Action.ARCHIVE:
        conflicts += _archive_conflicts(session, staging, headers, target, ignore_archived)
    elif decision.action is Action.QUARANTINE:
        conflicts += _quarantine_conflicts(session, staging, headers, target, ignore_archived)
    recorded_in = target.proposed_project or target.project  # where apply_verdict counts it
    equipment = deid_equipment(review, recorded_in, equipment_json(headers))
    base = {"decision": decision.to_json(), "equipment": equipment}
    return _verdict(review, session, staging, decision, target, conflicts, now, base)


def _verdict(
    review: Review,
    session: Session,
    staging: StagingSession,
    decision: Decision,
    target: ArchiveTarget,
    conflicts: list[Reason],
    now: dt.datetime,
    base: dict[str, Any],
) -> Verdict:
    reasons = tuple(conflicts) + decision.reasons
    if conflicts:
        return Verdict(CONFLICT, reasons, target, **base)
    if decision.action is Action.REJECT:
        return Verdict(REJECTED, reasons, None, **base)
    if decision.action is Action.ARCHIVE:
        return Verdict(READY, (), target, **base)
    hold = _hold_until(session, staging, decision, review, now)
    if hold is not None:
        return Verdict(ERROR, reasons, target, hold_until=hold, **base)
    quarantine = ArchiveTarget(
        **{**asdict(target), "project": QUARANTINE, "reasons": [r.to_json() for r in reasons]},
    )
    return Verdict(QUARANTINED, reasons, quarantine, **base)


def _hold_until(
    session: Session, staging: StagingSession, decision: Decision, review: Review, now: dt.datetime
) -> dt.datetime | None:
    codes = {r.code for r in decision.reasons}
    if ReasonCode.RT_REFERENCES_MISSING not in codes or decision.proposed_project is None:
        return None
    row = session.get(StagingReview, staging.pk)
    until = row.hold_until if row and row.hold_until else now + dt.timedelta(seconds=review.rt_hold)
    if until.tzinfo is None:
        until = until.replace(tzinfo=dt.UTC)
    return until if now < until else None


def _target(
    review: Review,
    session: Session,
    staging: StagingSession,
    headers: Sequence[Dataset],
    decision: Decision,
    protocol: SortingProtocol,
    asked: tuple[str | None, str | None],
) -> ArchiveTarget:
    project = decision.project if decision.action is Action.ARCHIVE else decision.proposed_project
    labels = decision.labels
    rule = protocol.match(headers[0], origin_of(staging))
    mapping = review.labels.get(project or "")
    named = _comments_project(review, session, headers[0])
    if named is not None and named[0] == project:
        mapping = named[1]  # the comments that name this project name its labels too
    if mapping is not None and (rule is None or rule.then.labels is None):
        labels = labels_for(headers[0], mapping)
    if labels is None:
        labels = labels_for(headers[0], protocol.labels)
    subject, label = labels.subject, labels.session
    original: dict[str, Any] = {"values": dict(labels.original), "sources": dict(labels.sources)}
    subject, label = _overrides(session, staging, subject, label, original)
    if asked[0]:
        subject, original["sources"]["subject"] = sanitize_label(asked[0]), "review"
    if asked[1]:
        label, original["sources"]["session"] = sanitize_label(asked[1]), "review"
    frames = sorted({str(h.get("FrameOfReferenceUID", "") or "") for h in headers} - {""})
    return ArchiveTarget(
        project=project or QUARANTINE,
        subject=subject,
        session=label,
        original=original,
        proposed_project=decision.proposed_project,
        warnings=[w.to_json() for w in decision.warnings],
        scans={uid: dict(meta) for uid, meta in decision.scans.items()},
        frames_of_reference=frames,
    )


def _overrides(
    session: Session, staging: StagingSession, subject: str, label: str, original: dict[str, Any]
) -> tuple[str, str]:
    """Apply labels from the origin (an import's overrides) and from a rename."""
    origin = staging.origin or {}
    for part in ("subject", "session"):
        asked = _origin_label(origin, part)
        if asked is not None:
            original["sources"][part] = "origin"
            value = sanitize_label(asked)
            subject, label = (value, label) if part == "subject" else (subject, value)
    row = session.get(StagingReview, staging.pk)
    if row is not None and row.labels_fixed:
        original["sources"].update(subject="rename", session="rename")
        return row.subject_label or subject, row.session_label or label
    return subject, label


def _origin_label(origin: dict[str, Any], part: str) -> str | None:
    """Return the ``subject`` or ``session`` label an origin asks for, or None.

    Intake stores ``Origin.subject_label`` / ``session_label``; ``subject`` / ``session`` are
    read too, for staging rows written under those keys.
    """
    for key in (f"{part}_label", part):
        value = origin.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def equipment_json(headers: Sequence[Dataset]) -> list[dict[str, Any]]:
    """Return the distinct equipment of a session in JSON form."""
    return [e.to_json() for e in dict.fromkeys(equipment_of(h) for h in headers)]


def _duplicates(session: Session, staging_pk: int) -> list[Reason]:
    count = session.scalar(
        select(func.count(SetAside.pk)).where(
            SetAside.staging_pk == staging_pk, SetAside.reason == "conflicting_duplicate"
        )
    )
    if not count:
        return []
    message = (
        f"{count} instance(s) arrived again with different content; "
        "the stored copies were kept and the newcomers set aside"
    )
    uids = session.scalars(
        select(SetAside.sop_instance_uid).where(
            SetAside.staging_pk == staging_pk, SetAside.reason == "conflicting_duplicate"
        )
    )
    details: dict[str, object] = {"sop_instance_uids": sorted({u for u in uids if u})}
    return [Reason(ReasonCode.CONFLICTING_DUPLICATE, message, details)]


def _mixed_patients(headers: Sequence[Dataset]) -> list[Reason]:
    groups: dict[tuple[str, str], list[str]] = {}
    for header in headers:
        key = (str(header.get("PatientID", "") or ""), str(header.get("PatientName", "") or ""))
        groups.setdefault(key, []).append(str(header.get("SOPInstanceUID", "")))
    if len(groups) <= 1:
        return []
    details: dict[str, object] = {"groups": [sorted(uids) for uids in groups.values()]}
    message = f"the session holds instances of {len(groups)} different patients"
    return [Reason(ReasonCode.MIXED_PATIENTS, message, details)]


def _archive_conflicts(
    session: Session,
    staging: StagingSession,
    headers: Sequence[Dataset],
    target: ArchiveTarget,
    ignore: int | None,
) -> list[Reason]:
    existing = session_of_study(session, staging.study_uid)
    if existing is not None and existing.pk != ignore:
        return _study_conflict(session, existing, headers, target)
    taken = find_session(session, target.project, target.session)
    if taken is not None and taken.pk != ignore:
        message = f"session label {target.session} is already archived in {target.project}"
        details: dict[str, object] = {"project": target.project, "session": target.session}
        return [Reason(ReasonCode.LABEL_CONFLICT, message, details)]
    return []


def _quarantine_conflicts(
    session: Session,
    staging: StagingSession,
    headers: Sequence[Dataset],
    target: ArchiveTarget,
    ignore: int | None,
) -> list[Reason]:
    existing = session_of_study(session, staging.study_uid)
    if existing is None or existing.pk == ignore or existing.project_id == QUARANTINE:
        return []
    return _study_conflict(session, existing, headers, replace(target, project=QUARANTINE))


def _study_conflict(
    session: Session, existing: ArchivedSession, headers: Sequence[Dataset], target: ArchiveTarget
) -> list[Reason]:
    study = session.get_one(Study, existing.study_pk)
    where: dict[str, object] = {"project": existing.project_id, "session": existing.label}
    patients = {str(h.get("PatientID", "") or "") for h in headers}
    if patients != {study.patient_id}:
        message = f"the Study Instance UID is archived under another patient ({existing.label})"
        return [Reason(ReasonCode.UID_CONFLICT, message, where)]
    if existing.project_id != target.project:
        message = f"the study is already archived in project {existing.project_id}"
        return [Reason(ReasonCode.UID_CONFLICT, message, where)]
    message = (
        f"the study is already archived in {existing.project_id} as session {existing.label}; "
        "merge to add these instances"
    )
    return [Reason(ReasonCode.LABEL_CONFLICT, message, {**where, "same_study": True})]
