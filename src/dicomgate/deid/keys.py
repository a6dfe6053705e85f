"""Per-subject keys handed to :func:`dicomgate.deid.engine.apply`, and keyed UID remapping."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from dicomgate.deid.errors import KeysError

STANDARD_UID_ROOT = "1.2.840.10008."
MIN_SECRET_BYTES = 16
MAX_OFFSET_DAYS = 100 * 366


@dataclass(frozen=True, slots=True)
class DeidKeys:
    """Everything secret or subject-specific that ``apply`` needs; nothing else is read.

    Parameters
    ----------
    uid_secret
        The per-project secret keying UID remapping (at least 16 bytes).
    subject_id
        The subject's pseudonym; written to Patient ID (and Patient's Name by default).
    date_offset_days
        Days added to every shifted date of this subject (negative moves into the past).
    subject_name
        Optional pseudonymous name for Patient's Name; defaults to ``subject_id``.
    """

    uid_secret: bytes
    subject_id: str
    date_offset_days: int = 0
    subject_name: str | None = None

    def __post_init__(self) -> None:
        if len(self.uid_secret) < MIN_SECRET_BYTES:
            raise KeysError(f"uid_secret: need at least {MIN_SECRET_BYTES} bytes")
        _check_label("subject_id", self.subject_id)
        if self.subject_name is not None:
            _check_label("subject_name", self.subject_name)
        if abs(self.date_offset_days) > MAX_OFFSET_DAYS:
            raise KeysError(f"date_offset_days: must be within +/-{MAX_OFFSET_DAYS}")

    @property
    def patient_name(self) -> str:
        """Return the value written to Patient's Name."""
        return self.subject_name if self.subject_name is not None else self.subject_id


def _check_label(field: str, value: str) -> None:
    # LO allows 64 characters and no backslash (it would split the value in two).
    if not value.strip() or len(value) > 64 or "\\" in value or "^" in value:
        raise KeysError(f"{field}: must be 1-64 characters without '\\' or '^'")


def is_standard_uid(uid: str) -> bool:
    """Return whether ``uid`` is a DICOM-defined UID (SOP class, transfer syntax, ...)."""
    return uid.startswith(STANDARD_UID_ROOT)


@lru_cache(maxsize=65536)
def remap_uid(secret: bytes, uid: str) -> str:
    """Return the keyed deterministic replacement of ``uid``.

    Parameters
    ----------
    secret
        The project secret; another project gets unrelated UIDs.
    uid
        The original UID (any string; junk is remapped too, which repairs it).

    Returns
    -------
    str
        ``2.25.<int>``, the int built from the first 16 bytes of HMAC-SHA-256(secret, uid);
        at most 44 characters.
    """
    digest = hmac.digest(secret, uid.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"
