"""A watched-folder import killed mid-way (SIGKILL) and resumed: nothing twice, nothing lost."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import Instance, StagingSession
from dicomgate.intake.receive import Intake
from dicomgate.jobs import JobStatus
from dicomgate.sources.config import AfterImport, WatchFolder
from dicomgate.sources.folder_job import KIND
from dicomgate.sources.watch import FolderWatcher
from tests.integration.sources.helpers import inline_jobs, stored_uids, write_study

COUNT = 60
RUN_ONE_JOB = """
import sys
from pathlib import Path
from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.sources import folder_job, import_processes
url, data, job_id, processes = sys.argv[1:]
import_processes.configure(int(processes), 10)
intake = Intake(Database(url), FilesystemBlobStore(Path(data) / "blobs"),
                FilesystemBlobStore(Path(data) / "set-aside"))
Jobs(intake, JobsConfig(lease_seconds=0.5)).run_inline(job_id)
"""


def _interrupted_run(intake: Intake, job_id: str, data: Path, processes: int) -> int:
    """Run the job in a child process and SIGKILL it after some items; return items done.

    With ``processes`` > 1 the child's import processes store the batches; they must end
    with the child.
    """
    jobs = inline_jobs(intake)
    args = [sys.executable, "-c", RUN_ONE_JOB, intake.db.url, str(data), job_id, str(processes)]
    child = subprocess.Popen(args)
    try:
        deadline = time.monotonic() + 120
        while jobs.get(job_id).done < 8 and time.monotonic() < deadline:
            assert child.poll() is None, "the child ended before it was interrupted"
            time.sleep(0.01)
        workers = _children(child.pid)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert len(workers) == (processes if processes > 1 else 0)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.monotonic() < deadline, "an import process outlived the killed job"
        time.sleep(0.05)
    job = jobs.get(job_id)
    assert job.status is JobStatus.RUNNING and job.done < COUNT
    _reported_is_durable(intake, job_id)
    return job.done


def _children(parent: int) -> set[int]:
    """Return the spawned import processes of ``parent``."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = stat.read_text().rsplit(")", 1)[1].split()[1]
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == str(parent) and b"spawn_main" in cmdline:
            pids.add(int(stat.parent.name))
    return pids


def _reported_is_durable(intake: Intake, job_id: str) -> None:
    """Every item reported stored when the worker died is indexed, with its whole blob."""
    reported = [
        item.detail["sop_instance_uid"]
        for item in inline_jobs(intake).items(job_id, limit=1000).items
        if item.outcome == "stored"
    ]
    assert reported
    with intake.db.reader() as session:
        query = select(Instance.blob_key, Instance.sha256).where(
            Instance.sop_instance_uid.in_(reported)
        )
        rows = session.execute(query).all()
    assert len(rows) == len(reported)
    for key, digest in rows:
        assert hashlib.sha256(intake.blobs.read(key)[128:]).hexdigest() == digest


@pytest.mark.parametrize("processes", [1, 2], ids=["in-process", "import-processes"])
def test_killed_import_resumes_without_duplicates_or_loss(
    intake: Intake, tmp_path: Path, processes: int
) -> None:
    with intake.db.unit_of_work() as session:
        ensure_project(session, "P1")
    folder = WatchFolder(path=tmp_path / "inbox", project="P1", after_import=AfterImport.MOVE)
    now = [0.0]
    jobs = inline_jobs(intake, lease=0.5)
    watcher = FolderWatcher([folder], 1.0, lambda p: jobs.submit(KIND, p), lambda: now[0])
    uids = write_study(tmp_path / "inbox" / "big" / "series", COUNT)
    watcher.poll()
    now[0] += 1.0
    [job_id] = watcher.poll()
    done_before = _interrupted_run(intake, job_id, tmp_path, processes)
    time.sleep(0.6)  # the dead worker's lease runs out; this is no assertion on speed
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert job.counts == {"stored": COUNT}
    assert stored_uids(intake) == set(uids)
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == COUNT
        staged = session.scalars(select(StagingSession.instance_count)).all()
    assert sum(staged) == COUNT  # no instance was counted twice in staging either
    moved = list((tmp_path / "inbox" / "done").rglob("IM*"))
    assert len(moved) == COUNT and 0 < done_before < COUNT
    assert list((tmp_path / "inbox" / "processing").iterdir()) == []
    runs = [line for line in jobs.log_lines(job_id) if line.message.startswith("run started")]
    assert len(runs) == 2


@pytest.mark.parametrize("stage", ["before-rename", "after-rename"])
def test_a_crash_while_claiming_loses_nothing(intake: Intake, tmp_path: Path, stage: str) -> None:
    with intake.db.unit_of_work() as session:
        ensure_project(session, "P1")
    jobs = inline_jobs(intake)
    folder = WatchFolder(path=tmp_path / "inbox", project="P1")
    uids = write_study(tmp_path / "inbox" / "drop" / "s", 2)
    claim = folder.processing / "20260101T000000-crashed"
    claim.mkdir(parents=True)
    (claim / "claim.json").write_text('{"name": "drop", "job_id": null}')
    if stage == "after-rename":
        (tmp_path / "inbox" / "drop").rename(claim / "drop")
    now = [0.0]
    watcher = FolderWatcher([folder], 1.0, lambda p: jobs.submit(KIND, p), lambda: now[0])
    ids = watcher.poll()
    now[0] += 1.0
    ids += watcher.poll()
    [job_id] = ids
    assert jobs.run_inline(job_id).counts == {"stored": 2}
    assert stored_uids(intake) == set(uids)
