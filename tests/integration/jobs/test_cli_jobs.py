"""``dicomgate import`` leaves a job; ``dicomgate jobs list|show|retry|cancel`` act on it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.integration.jobs.conftest import copy_files


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DICOMGATE_DATA_DIR": str(cwd / "data"), "COLUMNS": "200"},
    )


def test_import_job_then_jobs_commands(tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm", "MR_truncated.dcm")
    (tmp_path / "in" / "link.dcm").symlink_to(tmp_path / "in" / "CT_small.dcm")
    imported = _run("import", str(tmp_path / "in"), str(tmp_path / "absent"), cwd=tmp_path)
    assert imported.returncode == 1
    assert "stored: 1" in imported.stdout and "rejected: 1" in imported.stdout
    assert "skipped (symbolic link, not followed)" in imported.stderr
    assert "skipped (not a file or folder)" in imported.stderr
    listed = _run("jobs", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "COMPLETED_WITH_ERRORS" in listed.stdout
    match = re.search(r"\b[0-9a-f]{32}\b", listed.stdout)
    assert match is not None
    job_id = match.group(0)
    shown = _run("jobs", "show", job_id, "--items", "--follow", cwd=tmp_path)
    assert shown.returncode == 0
    assert "rejected: " in shown.stdout and "MR_truncated.dcm" in shown.stdout
    assert "skipped: " in shown.stdout and "link.dcm" in shown.stdout
    retried = _run("jobs", "retry", job_id, cwd=tmp_path)
    assert retried.returncode == 0 and "PENDING" in retried.stdout
    assert "retrying 1 items" in retried.stdout
    cancelled = _run("jobs", "cancel", job_id, cwd=tmp_path)
    assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout
    again = _run("jobs", "cancel", job_id, cwd=tmp_path)
    assert again.returncode == 1 and "already ended" in again.stderr
    unknown = _run("jobs", "show", "0" * 32, cwd=tmp_path)
    assert unknown.returncode == 1 and "no such job" in unknown.stderr
