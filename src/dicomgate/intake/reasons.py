"""Typed reasons that hold a staging session back or send data to quarantine."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ReasonCode(enum.StrEnum):
    """Why a staging session is not on the happy path."""

    LABEL_CONFLICT = "label_conflict"
    UID_CONFLICT = "uid_conflict"
    CONFLICTING_DUPLICATE = "conflicting_duplicate"
    MIXED_PATIENTS = "mixed_patients"
    MISSING_REQUIRED_HEADER = "missing_required_header"
    RT_REFERENCES_MISSING = "rt_references_missing"
    EQUIPMENT_NOT_COMPATIBLE = "equipment_not_compatible"
    RULE_QUARANTINE = "rule_quarantine"
    RULE_REJECT = "rule_reject"
    NO_RULE_MATCHED = "no_rule_matched"
    IDENTITY_MISMATCH = "identity_mismatch"
    BURNED_IN_ANNOTATION = "burned_in_annotation"
    PSEUDONYM_UNAVAILABLE = "pseudonym_unavailable"
    DEID_REFERENCES_BROKEN = "deid_references_broken"
    DEIDENTIFIED = "deidentified"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Reason:
    """One typed reason with a human-readable message and structured details.

    Parameters
    ----------
    code
        The machine-readable reason.
    message
        A sentence for the data manager; never contains PHI.
    details
        Structured data (UIDs, rule names, missing references).
    """

    code: ReasonCode
    message: str
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Return a JSON-serialisable form."""
        return {"code": self.code.value, "message": self.message, "details": self.details}
