"""The Decision handoff: what the rules decided for one instance or one staging session.

A Decision is one of three outcomes:

- ARCHIVE into ``project`` under the given subject/session labels;
- QUARANTINE: archived into the ``QUARANTINE`` project with the reasons, never deleted; the project
  the protocol proposed (if any) is kept in ``proposed_project`` so a data manager can release it;
- REJECT: not archived; the reasons are recorded so nothing is dropped silently.

``warnings`` carry findings that do not change the outcome (e.g. RT objects sharing a series
number with another series); ``why`` is a PHI-free sentence for dry runs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from dicomgate.intake.reasons import Reason
from dicomgate.rules.labels import Labels

QUARANTINE_PROJECT = "QUARANTINE"


class Action(enum.StrEnum):
    """The outcome of a decision."""

    ARCHIVE = "archive"
    QUARANTINE = "quarantine"
    REJECT = "reject"


class FindingCode(enum.StrEnum):
    """Why a non-blocking warning was raised."""

    RT_SHARED_SERIES_UID = "rt_shared_series_uid"
    RT_SHARED_SERIES_NUMBER = "rt_shared_series_number"


@dataclass(frozen=True, slots=True)
class Finding:
    """A non-blocking observation that a data manager should see.

    Parameters
    ----------
    code
        The machine-readable kind of finding.
    message
        A PHI-free sentence.
    details
        Structured data (UIDs, series numbers).
    """

    code: FindingCode
    message: str
    details: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """Return a JSON-serialisable form."""
        return {"code": self.code.value, "message": self.message, "details": self.details}


@dataclass(frozen=True, slots=True)
class RuleRef:
    """Which protocol rule produced a decision.

    Parameters
    ----------
    index
        Zero-based position of the rule in the protocol.
    name
        The rule's ``name``, when it has one.
    """

    index: int
    name: str | None = None

    def __str__(self) -> str:
        return f"rule '{self.name}' (rules[{self.index}])" if self.name else f"rules[{self.index}]"


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to an instance or a staging session.

    Parameters
    ----------
    action
        ARCHIVE, QUARANTINE or REJECT.
    project
        Where the data goes: the target project for ARCHIVE, ``QUARANTINE`` for QUARANTINE,
        None for REJECT.
    labels
        Subject/session labels (with the original header values), when a rule archived.
    reasons
        Why the data is quarantined or rejected; empty for ARCHIVE.
    warnings
        Non-blocking findings.
    rule
        The protocol rule that matched, if one did.
    why
        A PHI-free explanation for dry runs.
    proposed_project
        For QUARANTINE: the project the protocol chose before a later check failed.
    scans
        Scan metadata assigned by study cards, keyed by Series Instance UID.
    """

    action: Action
    project: str | None
    labels: Labels | None = None
    reasons: tuple[Reason, ...] = ()
    warnings: tuple[Finding, ...] = ()
    rule: RuleRef | None = None
    why: str = ""
    proposed_project: str | None = None
    scans: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action is Action.ARCHIVE and (not self.project or self.reasons):
            raise ValueError("an ARCHIVE decision needs a project and no reasons")
        if self.action is not Action.ARCHIVE and not self.reasons:
            raise ValueError(f"a {self.action.value} decision needs at least one reason")

    @classmethod
    def archive(
        cls, project: str, labels: Labels | None, *, rule: RuleRef | None = None, why: str = ""
    ) -> Decision:
        """Archive into ``project`` under ``labels``."""
        return cls(Action.ARCHIVE, project, labels, rule=rule, why=why)

    @classmethod
    def quarantine(
        cls, reasons: Iterable[Reason], *, rule: RuleRef | None = None, why: str = ""
    ) -> Decision:
        """Archive into the ``QUARANTINE`` project with ``reasons``."""
        return cls(
            Action.QUARANTINE, QUARANTINE_PROJECT, reasons=tuple(reasons), rule=rule, why=why
        )

    @classmethod
    def reject(
        cls, reasons: Iterable[Reason], *, rule: RuleRef | None = None, why: str = ""
    ) -> Decision:
        """Do not archive; record ``reasons``."""
        return cls(Action.REJECT, None, reasons=tuple(reasons), rule=rule, why=why)

    def held_back(self, reasons: Iterable[Reason], why: str) -> Decision:
        """Return this decision with extra blocking ``reasons`` from a later check.

        An ARCHIVE becomes a QUARANTINE that remembers the proposed project and labels; a
        QUARANTINE or REJECT keeps its outcome and gains the reasons.
        """
        extra = tuple(reasons)
        if not extra:
            return self
        why = f"{self.why}; {why}" if self.why else why
        if self.action is not Action.ARCHIVE:
            return replace(self, reasons=self.reasons + extra, why=why)
        return replace(
            self,
            action=Action.QUARANTINE,
            project=QUARANTINE_PROJECT,
            proposed_project=self.project,
            reasons=extra,
            why=why,
        )

    def to_json(self) -> dict[str, object]:
        """Return a JSON-serialisable form (labels without the original header values)."""
        return {
            "action": self.action.value,
            "project": self.project,
            "proposed_project": self.proposed_project,
            "subject": self.labels.subject if self.labels else None,
            "session": self.labels.session if self.labels else None,
            "reasons": [r.to_json() for r in self.reasons],
            "warnings": [w.to_json() for w in self.warnings],
            "rule": {"index": self.rule.index, "name": self.rule.name} if self.rule else None,
            "why": self.why,
            "scans": {uid: dict(meta) for uid, meta in self.scans.items()},
        }
