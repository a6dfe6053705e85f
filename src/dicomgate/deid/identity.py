"""The identity check: an operator-confirmed identity against the headers, both values kept.

ShanoirUploader verifies the identity of an import and then silently overwrites the headers;
dicomgate instead reports every field that disagrees, with the confirmed and the header
value, so that the caller can hold the session (reason ``identity_mismatch``) for a person to
decide. These functions are pure; the values they return are PHI and belong only in the
staging record and the vault, never in logs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from dicomgate.deid.dates import parse_da
from dicomgate.deid.errors import IdentityError
from dicomgate.deid.pseudonyms import Identity, normalise

IDENTITY_MISMATCH = "identity_mismatch"
CONFIRMED_FIELDS = ("first_name", "last_name", "birth_name", "birth_date", "sex")
_SEXES = frozenset({"", "M", "F", "O"})


class IdentityResolution(enum.StrEnum):
    """What a person decided about a session held with ``identity_mismatch``."""

    HEADERS = "headers"  # the headers are right: the confirmed identity was mistaken
    CONFIRMED = "confirmed"  # the confirmed identity is right: the headers are mistaken
    SUBJECT = "subject"  # the session belongs to another, named subject of the project
    REJECT = "reject"  # the data is not this patient's: delete the staging session


@dataclass(frozen=True, slots=True)
class IdentityDifference:
    """One field where the headers contradict the confirmed identity (values are PHI)."""

    field: str
    confirmed: str
    headers: str


def confirmed_identity(data: Mapping[str, Any]) -> Identity:
    """Validate an operator-confirmed identity carried by an import (origin or job params).

    Parameters
    ----------
    data
        ``first_name``, ``last_name``, ``birth_name``, ``birth_date`` (``YYYYMMDD`` or
        ``YYYY-MM-DD``), ``sex`` (``M``, ``F``, ``O``); at least one name is required.

    Returns
    -------
    Identity
        The identity with the birth date as ``YYYYMMDD`` and the sex upper-cased.

    Raises
    ------
    IdentityError
        When a key is unknown, a value is not text, or a value is malformed.
    """
    unknown = sorted(set(data) - set(CONFIRMED_FIELDS))
    if unknown:
        raise IdentityError(f"identity.{unknown[0]}: unknown field")
    values: dict[str, str] = {}
    for name in CONFIRMED_FIELDS:
        value = data.get(name) or ""
        if not isinstance(value, str) or len(value) > 64 or "\\" in value:
            raise IdentityError(f"identity.{name}: expected text of at most 64 characters")
        values[name] = value.strip()
    birth = values["birth_date"].replace("-", "")
    if birth and parse_da(birth) is None:
        raise IdentityError("identity.birth_date: expected a valid YYYYMMDD or YYYY-MM-DD date")
    sex = values["sex"].upper()
    if sex not in _SEXES:
        raise IdentityError("identity.sex: expected M, F or O")
    if not (normalise(values["first_name"]) or normalise(values["last_name"])):
        raise IdentityError("identity.last_name: a first or last name is required")
    return Identity(**{**values, "birth_date": birth, "sex": sex})


def header_identity(ds: Dataset) -> Identity:
    """Return the identity the headers carry (Patient's Name, Birth Name, Birth Date, Sex)."""
    name = str(ds.get("PatientName", "") or "").split("^")
    birth_name = str(ds.get("PatientBirthName", "") or "").split("^")
    return Identity(
        first_name=name[1].strip() if len(name) > 1 else "",
        last_name=name[0].strip(),
        birth_name=birth_name[0].strip(),
        birth_date=str(ds.get("PatientBirthDate", "") or "").strip(),
        sex=str(ds.get("PatientSex", "") or "").strip().upper(),
    )


def identity_differences(confirmed: Identity, headers: Identity) -> list[IdentityDifference]:
    """List the fields the confirmed identity fills and the headers contradict.

    A field left empty in the confirmed identity is not compared; a field the confirmed
    identity fills and the headers leave empty is a difference. Names compare after
    :func:`~dicomgate.deid.pseudonyms.normalise` (case, accents, spacing).
    """
    found = []
    for name in CONFIRMED_FIELDS:
        expected, actual = getattr(confirmed, name), getattr(headers, name)
        if expected.strip() and normalise(expected) != normalise(actual):
            found.append(IdentityDifference(name, expected, actual))
    return found


def check_session_identity(
    confirmed: Identity, datasets: Iterable[Dataset]
) -> list[IdentityDifference]:
    """Compare every distinct header identity of a session with the confirmed one.

    Returns
    -------
    list of IdentityDifference
        Every difference, once per distinct header value; empty when all instances agree.
    """
    seen: set[Identity] = set()
    found: list[IdentityDifference] = []
    for ds in datasets:
        headers = header_identity(ds)
        if headers not in seen:
            seen.add(headers)
            found.extend(d for d in identity_differences(confirmed, headers) if d not in found)
    return found


def mismatch_reason(differences: Iterable[IdentityDifference]) -> dict[str, Any]:
    """Return the staging reason of a held session: code, message, details with both values.

    The shape is that of ``intake.reasons.Reason.to_json``; the message names the fields only.
    """
    items = [
        {"field": d.field, "confirmed": d.confirmed, "headers": d.headers} for d in differences
    ]
    fields = ", ".join(sorted({i["field"] for i in items}))
    return {
        "code": IDENTITY_MISMATCH,
        "message": f"the headers contradict the confirmed identity ({fields})",
        "details": {"fields": items},
    }


def resolved_identity(confirmed: Identity, headers: Identity) -> Identity:
    """Return the identity a person confirmed, completed by the headers where it is empty.

    Used when a data manager decides that the confirmed identity is right and the headers are
    mistaken: the subject is then found (or created) by this identity in the vault.
    """
    values = {
        name: getattr(confirmed, name).strip() or getattr(headers, name)
        for name in CONFIRMED_FIELDS
    }
    return Identity(**values)
