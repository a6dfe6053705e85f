"""``dicomgate serve`` as a real process with an inbox and projects, for the jobs tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import PYDICOM_FILES, _free_port


class JobServer:
    """One ``dicomgate serve`` on free ports, SQLite index, inbox at ``<tmp>/inbox``."""

    def __init__(self, tmp: Path, *extra: str) -> None:
        self.tmp = tmp
        self.http, self.dicom = _free_port(), _free_port()
        self.inbox = tmp / "inbox"
        for project in ("P1", "P2"):
            (self.inbox / project).mkdir(parents=True, exist_ok=True)
        self.config = tmp / "config.yaml"
        lines = [
            f"data_dir: {tmp / 'data'}",
            f"http_port: {self.http}",
            f"dicom_port: {self.dicom}",
            "stable_after: 3600",
            "log_level: WARNING",
            "projects: [{id: P1}, {id: P2}]",
            "jobs:",
            f"  inbox_root: {self.inbox}",
            *extra,
        ]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "dicomgate.cli", "serve", "--config", str(self.config)]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/api/health"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail("dicomgate serve did not answer on /api/health")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

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


def corpus(folder: Path, count: int) -> list[str]:
    """Write ``count`` CT instances of one new study into ``folder``; return their UIDs."""
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    folder.mkdir(parents=True, exist_ok=True)
    template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
    uids = []
    for number in range(count):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
        uids.append(str(template.SOPInstanceUID))
    return uids
