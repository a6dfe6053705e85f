"""Who a staging session's subject is in the vault: the identity check and its resolution.

Without a confirmed identity, or when it agrees with the headers, the subject is the one the
headers name. When they disagree the session is held (``identity_mismatch``) until a person
decides (``prearchive.identity.resolve_identity``), which is written into the staging
origin as ``identity_resolution``:

* ``headers``: the headers are right, the subject is the one they name;
* ``confirmed``: the confirmed identity is right (completed by the headers where it is
  empty); the headers' identity is linked to that subject in the vault;
* ``subject``: the session belongs to the named subject (a pseudonym of the project); the
  headers' identity is linked to it, so that its follow-up exams join it too.

A link is only made for an identity the vault does not know yet. A held session's reason
lists ``candidates``: the project's subjects sharing a component (first, last, birth name,
birth date) with the confirmed or the headers' identity, found by their keyed hashes, with
the names of the matching components (record linkage, so a person can pick the subject).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dicomgate.deid import DeidKeys
from dicomgate.deid.config import ProjectDeid
from dicomgate.deid.errors import DeidError, PseudonymError
from dicomgate.deid.identity import (
    IdentityResolution,
    check_session_identity,
    confirmed_identity,
    mismatch_reason,
    resolved_identity,
)
from dicomgate.deid.pseudonyms import Identity, keyed_pseudonym
from dicomgate.deid.subjects import subject_identity, subject_keys
from dicomgate.deid.vault import IdentityVault
from dicomgate.errors import HeldForReviewError
from dicomgate.intake.reasons import Reason, ReasonCode

RESOLUTION_KEY = "identity_resolution"


@dataclass(frozen=True)
class SubjectChoice:
    """How to find the subject's keys: by identity, or a pseudonym a person assigned."""

    identity: Identity
    assigned: str | None = None
    link: Identity | None = None  # an identity to link to the subject once its keys are known


def held(status: str, code: ReasonCode, message: str, **details: object) -> HeldForReviewError:
    """Return the error that holds a session in ``status`` with one reason."""
    return HeldForReviewError(status, dict(Reason(code, message, dict(details)).to_json()))


def choose_subject(
    config: ProjectDeid, origin: Mapping[str, Any], headers: Sequence[Dataset]
) -> SubjectChoice:
    """Return the session's subject, after the identity check or a person's resolution.

    Raises
    ------
    HeldForReviewError
        The confirmed identity is malformed or contradicts the headers (CONFLICT).
    """
    found = subject_identity(headers[0])
    resolution = origin.get(RESOLUTION_KEY)
    if isinstance(resolution, Mapping):
        return _resolved(resolution, origin, found)
    raw = origin.get("confirmed_identity")
    if raw and config.identity_check.value == "hold":
        try:
            confirmed = confirmed_identity(raw)
        except DeidError as exc:
            raise held("CONFLICT", ReasonCode.IDENTITY_MISMATCH, str(exc)) from None
        differences = check_session_identity(confirmed, headers)
        if differences:
            raise HeldForReviewError("CONFLICT", mismatch_reason(differences))
    return SubjectChoice(found)


def _resolved(
    resolution: Mapping[str, Any], origin: Mapping[str, Any], found: Identity
) -> SubjectChoice:
    use = resolution.get("use")
    if use == IdentityResolution.SUBJECT and isinstance(resolution.get("subject"), str):
        return SubjectChoice(found, assigned=resolution["subject"], link=found)
    if use == IdentityResolution.CONFIRMED:
        try:
            confirmed = confirmed_identity(origin.get("confirmed_identity") or {})
        except DeidError as exc:
            raise held("CONFLICT", ReasonCode.IDENTITY_MISMATCH, str(exc)) from None
        return SubjectChoice(resolved_identity(confirmed, found), link=found)
    return SubjectChoice(found)


def chosen_keys(
    vault: IdentityVault, project: str, config: ProjectDeid, choice: SubjectChoice, header: Dataset
) -> DeidKeys:
    """Return the keys of the chosen subject; link the headers' identity when asked.

    Raises
    ------
    HeldForReviewError
        No pseudonym for the subject (mapping scheme), or the assigned one does not exist.
    """
    try:
        if choice.assigned is not None:
            found = vault.subject_by_pseudonym(project, choice.assigned)
            if found is None:
                raise PseudonymError(f"no subject {choice.assigned} in the vault of {project}")
            keys = DeidKeys(vault.project_secret(project), *found)
        else:
            keys = subject_keys(vault, project, config.pseudonym, choice.identity, header)
        if choice.link is not None:
            vault.link_identity(project, choice.link, keys.subject_id)
    except DeidError as exc:
        raise held("ERROR", ReasonCode.PSEUDONYM_UNAVAILABLE, str(exc)) from None
    return keys


def with_candidates(
    vault: IdentityVault,
    project: str,
    origin: Mapping[str, Any],
    headers: Sequence[Dataset],
    reason: dict[str, Any],
) -> dict[str, Any]:
    """Return an ``identity_mismatch`` reason with the subjects it may belong to.

    Each candidate is ``{"subject", "matches_confirmed", "matches_headers"}`` (component
    names only); the vault is searched by keyed hashes, nothing is decrypted.
    """
    try:
        confirmed = confirmed_identity(origin.get("confirmed_identity") or {})
    except DeidError:
        return reason
    secret = vault.project_secret(project)
    found = subject_identity(headers[0])
    identities = {
        "matches_confirmed": resolved_identity(confirmed, found),
        "matches_headers": found,
    }
    candidates: dict[str, dict[str, Any]] = {}
    for key, identity in identities.items():
        hashes = keyed_pseudonym(secret, identity).component_hashes
        for pseudonym, components in vault.linked_subjects(project, hashes).items():
            entry = candidates.setdefault(
                pseudonym, {"subject": pseudonym, "matches_confirmed": [], "matches_headers": []}
            )
            entry[key] = components
    details = {
        **reason.get("details", {}),
        "candidates": sorted(candidates.values(), key=lambda c: c["subject"]),
    }
    return {**reason, "details": details}
