"""Durable jobs: rows with status, progress and per-item outcomes, run by a Huey queue.

Handlers register for a kind with ``@register("kind")`` and receive a ``JobContext``; the app
builds one ``Jobs`` facade. See ``docs/jobs.md``.

The names are imported lazily so that ``dicomgate.settings`` can import ``jobs.config``
without pulling in intake (which imports the settings).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dicomgate.jobs.context import JobContext
    from dicomgate.jobs.registry import register
    from dicomgate.jobs.schemas import ItemOut, ItemPage, JobOut, JobPage
    from dicomgate.jobs.service import Jobs
    from dicomgate.jobs.statuses import ItemOutcome, JobStatus

_EXPORTS = {
    "ItemOut": "dicomgate.jobs.schemas",
    "ItemOutcome": "dicomgate.jobs.statuses",
    "ItemPage": "dicomgate.jobs.schemas",
    "JobContext": "dicomgate.jobs.context",
    "JobOut": "dicomgate.jobs.schemas",
    "JobPage": "dicomgate.jobs.schemas",
    "JobStatus": "dicomgate.jobs.statuses",
    "Jobs": "dicomgate.jobs.service",
    "register": "dicomgate.jobs.registry",
}

__all__ = [
    "ItemOut",
    "ItemOutcome",
    "ItemPage",
    "JobContext",
    "JobOut",
    "JobPage",
    "JobStatus",
    "Jobs",
    "register",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
