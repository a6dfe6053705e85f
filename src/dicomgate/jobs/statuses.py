"""Job statuses and per-item outcomes, and which of them are final or count as success."""

from __future__ import annotations

import enum


class JobStatus(enum.StrEnum):
    """Where a job is in its life.

    ``WAITING`` means deferred until a time (a PACS window, or a retry after backoff); the job
    row then shows ``resume_at``.
    """

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SUCCEEDED = "SUCCEEDED"
    COMPLETED_WITH_ERRORS = "COMPLETED_WITH_ERRORS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        """Return True when the job will not run again unless retried."""
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        JobStatus.SUCCEEDED,
        JobStatus.COMPLETED_WITH_ERRORS,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
)


class ItemOutcome(enum.StrEnum):
    """What became of one expected item (a file, a UID).

    ``stored`` and ``already_stored`` are the ok outcomes (intake's ``replaced`` folds into
    ``stored``); ``skipped`` is neutral (deliberately not imported, with a reason, e.g. a
    symbolic link); every other outcome makes the job COMPLETED_WITH_ERRORS.
    """

    STORED = "stored"
    ALREADY_STORED = "already_stored"
    CONFLICTING = "conflicting"
    REJECTED = "rejected"
    MISSING = "missing"
    FAILED = "failed"
    SKIPPED = "skipped"

    @property
    def ok(self) -> bool:
        """Return True when the item is safely in the archive."""
        return self in OK_OUTCOMES

    @property
    def error(self) -> bool:
        """Return True when the item makes the job end COMPLETED_WITH_ERRORS."""
        return self not in OK_OUTCOMES and self is not ItemOutcome.SKIPPED


OK_OUTCOMES = frozenset({ItemOutcome.STORED, ItemOutcome.ALREADY_STORED})
ERROR_OUTCOMES = frozenset(o for o in ItemOutcome if o.error)
