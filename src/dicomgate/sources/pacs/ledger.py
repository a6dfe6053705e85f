"""Ledgers for a retrieve: the plain in-memory one the CLI uses, and the request log table."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from dicomgate.dicom.remote import RetrieveCounts
from dicomgate.intake.receive import ReceiveResult
from dicomgate.sources.pacs.models import RetrieveRequest


def add_request(
    session: Session, job_id: str | None, node: str, series_uid: str, counts: RetrieveCounts
) -> None:
    """Add one retrieve request with its counts to the request log (caller commits)."""
    session.add(
        RetrieveRequest(
            job_id=job_id,
            node=node,
            method=counts.method,
            level=counts.level,
            series_uid=series_uid or None,
            status=f"0x{counts.status:04X}",
            completed=counts.completed,
            failed=counts.failed,
            warning=counts.warning,
            remaining=counts.remaining,
            error=counts.error[:1000],
        )
    )


@dataclass
class MemoryLedger:
    """A ledger kept in memory (CLI runs without the job engine)."""

    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    requests: list[tuple[str, RetrieveCounts]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def expect(self, keys: Iterable[str]) -> None:
        """Declare expected keys; repeated keys are ignored."""
        known = set(self.expected)
        for key in keys:
            if key not in known:
                self.expected.append(key)
                known.add(key)

    def pending(self) -> list[str]:
        """Return expected keys without an outcome."""
        return [key for key in self.expected if key not in self.outcomes]

    def record_receives(self, results: Mapping[str, ReceiveResult]) -> None:
        """Record the intake outcome of arrived instances."""
        for key, result in results.items():
            self.outcomes[key] = (result.outcome.value, result.reason)

    def record_missing(self, key: str, reason: str, detail: dict[str, Any]) -> None:
        """Record an instance that did not arrive."""
        self.outcomes[key] = ("missing", reason)

    def record_request(self, series_uid: str, counts: RetrieveCounts) -> None:
        """Remember one request."""
        self.requests.append((series_uid, counts))

    def log(self, message: str) -> None:
        """Keep a log line."""
        self.lines.append(message)

    def cancelled(self) -> bool:
        """Never cancelled."""
        return False

    def counts(self) -> dict[str, int]:
        """Return how many items ended with each outcome."""
        summary: dict[str, int] = {}
        for outcome, _reason in self.outcomes.values():
            summary[outcome] = summary.get(outcome, 0) + 1
        return summary
