"""``dicomgate serve`` as a real process with an inbox and projects, for the jobs tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve import ServeProcess, corpus

__all__ = ["JobServer", "corpus", "events"]


class JobServer(ServeProcess):
    """One ``dicomgate serve`` on free ports, SQLite index, inbox at ``<tmp>/inbox``."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.inbox = tmp / "inbox"
        for project in ("P1", "P2"):
            (self.inbox / project).mkdir(parents=True, exist_ok=True)
        lines = [
            "stable_after: 3600",
            "log_level: WARNING",
            "projects: [{id: P1}, {id: P2}]",
            "jobs:",
            f"  inbox_root: {self.inbox}",
            *extra,
        ]
        super().__init__(tmp, lines)

    def wait_final(self, url: str, deadline: float = 120.0) -> dict[str, Any]:
        """Poll a job's URL until it ends (a guard against hanging, not a timing assertion)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            job: dict[str, Any] = httpx.get(self.url(url)).json()
            if job["status"] in ("SUCCEEDED", "COMPLETED_WITH_ERRORS", "FAILED", "CANCELLED"):
                return job
            time.sleep(0.05)
        pytest.fail(f"job {url} did not end")

    def job_count(self) -> int:
        return int(httpx.get(self.url("/api/jobs")).json()["total"])


def events(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into (event name, JSON data) pairs."""
    name, data = "message", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""
