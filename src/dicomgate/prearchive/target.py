"""The ArchiveTarget handoff: where one staging session is archived, under which labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchiveTarget:
    """Where and how one staging session is archived.

    Parameters
    ----------
    project
        The project (``QUARANTINE`` for quarantined data).
    subject, session
        Sanitised labels.
    original
        The header values the labels came from and their sources (PHI: never log).
    reasons
        For QUARANTINE: why (JSON form of ``Reason``).
    proposed_project
        For QUARANTINE: the project the protocol chose before a check failed.
    warnings
        Non-blocking findings (RT objects sharing a series UID or number).
    scans
        Scan metadata from the project's study cards, by Series Instance UID.
    frames_of_reference
        Frame of Reference UIDs the session's instances declare (for later RT checks).
    merge_into
        An archived session (pk) of the same study to add the instances to, only when asked.
    replaces
        A quarantined session (pk) this archive releases: it is removed in the transaction
        that stores the session, so a release that fails leaves it in QUARANTINE untouched.
    """

    project: str
    subject: str
    session: str
    original: dict[str, Any] = field(default_factory=dict)
    reasons: list[dict[str, Any]] = field(default_factory=list)
    proposed_project: str | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)
    scans: dict[str, Any] = field(default_factory=dict)
    frames_of_reference: list[str] = field(default_factory=list)
    merge_into: int | None = None
    replaces: int | None = None
