"""Resolve a session held with ``identity_mismatch``: a person decides whose data it is.

The identity check never overwrites: when the headers contradict the identity an operator
confirmed, the session waits in CONFLICT with both values. :func:`resolve_identity` is the
decision a data manager then takes (REST ``POST /api/prearchive/{id}/resolve-identity``,
CLI ``dicomgate prearchive resolve-identity``):

* ``headers``: the headers are right (the confirmed identity was mistyped);
* ``confirmed``: the confirmed identity is right (the headers are mistaken); the headers'
  identity is linked to that subject in the vault;
* ``subject``: the session belongs to another subject of the project, named by its label
  (its pseudonym); the headers' identity is linked to it;
* ``reject``: the data is not this patient's; the staging session is deleted (recorded).

Except for ``reject`` the decision is written into the staging origin (read by
``archive.deid_subject``), recorded as an ``identity_resolved`` action (field names only, no
values), the session is checked again and, when the checks find it clean, archived.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomgate.archive.deid_subject import RESOLUTION_KEY
from dicomgate.archive.models import StagingSession
from dicomgate.archive.session_models import ArchivedSession, StagingReview
from dicomgate.auth.roles import Caller
from dicomgate.deid.errors import DeidError
from dicomgate.deid.identity import IDENTITY_MISMATCH, IdentityResolution, confirmed_identity
from dicomgate.errors import ConflictError, HeldForReviewError, InvalidInputError, NotFoundError
from dicomgate.prearchive import actions
from dicomgate.prearchive.context import Review, staged_headers
from dicomgate.prearchive.store import require_staging
from dicomgate.rules import sanitize_label


def _held(session: Session, staging_pk: int) -> StagingSession:
    staging = require_staging(session, staging_pk)
    if staging.status != "CONFLICT":
        raise ConflictError(f"staging session {staging_pk} is {staging.status}, not held")
    _mismatch(staging)
    return staging


def _mismatch(staging: StagingSession) -> dict[str, Any]:
    for reason in staging.reasons or ():
        if reason.get("code") == IDENTITY_MISMATCH:
            return dict(reason)
    raise ConflictError(f"staging session {staging.pk} is not held for an identity mismatch")


def _project(session: Session, staging: StagingSession) -> str | None:
    row = session.get(StagingReview, staging.pk)
    return (row.proposed_project if row else None) or staging.project_id


def _require_subject(session: Session, project: str | None, subject: str | None) -> str:
    label = sanitize_label(subject or "", fallback="")
    if not label:
        raise InvalidInputError("resolving with 'subject' needs the subject's label")
    query = select(ArchivedSession.pk).where(
        ArchivedSession.project_id == project, ArchivedSession.subject_label == label
    )
    if session.scalars(query.limit(1)).first() is None:
        raise NotFoundError(f"no subject {label} in project {project}")
    return label


def _decision(
    session: Session, staging: StagingSession, use: IdentityResolution, subject: str | None
) -> dict[str, Any]:
    if use is IdentityResolution.SUBJECT:
        return {
            "use": use.value,
            "subject": _require_subject(session, _project(session, staging), subject),
        }
    if subject is not None:
        raise InvalidInputError("a subject label is only given with 'subject'")
    if use is IdentityResolution.CONFIRMED:
        try:
            confirmed_identity((staging.origin or {}).get("confirmed_identity") or {})
        except DeidError as exc:
            raise InvalidInputError(f"the confirmed identity cannot be used: {exc}") from None
    return {"use": use.value}


def resolve_identity(
    review: Review,
    staging_pk: int,
    use: IdentityResolution | str,
    subject: str | None = None,
    *,
    caller: Caller,
) -> str:
    """Resolve an identity mismatch; return the session's status afterwards.

    Parameters
    ----------
    review
        The intake stores and the review configuration.
    staging_pk
        A staging session held in CONFLICT with reason ``identity_mismatch``.
    use
        ``headers``, ``confirmed``, ``subject`` or ``reject`` (see the module docstring).
    subject
        With ``subject``: the label (pseudonym) of a subject archived in the project.
    caller
        Who decides: needs ``write`` in the session's project (recorded with the action).

    Returns
    -------
    str
        ``ARCHIVED`` when archived, ``DELETED`` for ``reject``, else the status the checks
        put the session in (their reasons on the session say why it waits).

    Raises
    ------
    ConflictError
        The session is not held for an identity mismatch.
    InvalidInputError
        An unknown decision, a subject label missing or given where it does not belong.
    NotFoundError
        No such staging session, or no such subject in the project.
    """
    try:
        decided = IdentityResolution(use)
    except ValueError:
        choices = ", ".join(r.value for r in IdentityResolution)
        raise InvalidInputError(f"use: expected one of {choices}") from None
    with review.intake.db.reader() as session:
        staging = require_staging(session, staging_pk)
        actions.writable(caller, session, staging)
        _held(session, staging_pk)
    if decided is IdentityResolution.REJECT:
        actions.delete(review, staging_pk, caller=caller)
        return "DELETED"
    status = _record(review, staging_pk, decided, subject, caller.name)
    if status != "READY":
        return status
    try:
        actions.archive(review, staging_pk, caller=caller)
    except HeldForReviewError as exc:
        return exc.status  # e.g. the assigned subject has no keys in the vault (recorded)
    return "ARCHIVED"


def _record(
    review: Review,
    staging_pk: int,
    decided: IdentityResolution,
    subject: str | None,
    user: str | None,
) -> str:
    with review.intake.db.reader() as session:
        headers = staged_headers(review.intake, session, staging_pk)
    with review.intake.db.unit_of_work() as session:
        staging = _held(session, staging_pk)
        fields = [f.get("field") for f in _mismatch(staging).get("details", {}).get("fields", [])]
        decision = _decision(session, staging, decided, subject)
        staging.origin = {**(staging.origin or {}), RESOLUTION_KEY: decision}
        session.flush()
        details = {**decision, "mismatched": fields}
        return actions.recheck(
            review, session, staging, headers, "identity_resolved", user, details
        )
