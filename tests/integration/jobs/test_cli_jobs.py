"""``dicomgate import`` leaves a job; ``dicomgate jobs list|show|retry|cancel`` act on it."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive.models import Instance, SetAside
from dicomgate.db import Database
from dicomgate.jobs.models import Job
from tests.integration.jobs.conftest import copy_files
from tests.integration.jobs.serve import corpus

COUNT = 100
KILL_AT = 10


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args],
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


def test_killed_cli_import_resumes_with_jobs_run(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\njobs:\n  lease_seconds: 1\n")
    uids = set(corpus(tmp_path / "in", COUNT))
    cmd = [sys.executable, "-m", "dicomgate", "import", str(tmp_path / "in"), "-c", str(config)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = tmp_path / "data" / "index.sqlite3"
    deadline = time.monotonic() + 120
    while _done(index) < KILL_AT:
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the import did not get going")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    db = Database(f"sqlite:///{index}")
    try:
        with db.reader() as session:
            job = session.scalars(select(Job)).one()
        assert job.status == "RUNNING" and job.done < COUNT  # really killed mid-job
        resumed = _run("jobs", "run", job.id, "-c", str(config), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "SUCCEEDED" in resumed.stdout and f"stored: {COUNT}" in resumed.stdout
        with db.reader() as session:
            assert set(session.scalars(select(Instance.sop_instance_uid))) == uids
            assert set(session.scalars(select(SetAside.reason))) <= {"unindexed_blob"}
    finally:
        db.dispose()
    again = _run("jobs", "run", job.id, "-c", str(config), cwd=tmp_path)
    assert again.returncode == 1 and "already ended" in again.stderr


def _done(index: Path) -> int:
    if not index.exists():
        return 0
    with sqlite3.connect(index, timeout=30) as conn:
        try:
            row = conn.execute("select max(done) from jobs").fetchone()
        except sqlite3.OperationalError:
            return 0  # not migrated yet
    return int(row[0] or 0)
