"""Watched folders end to end: real files, the real job engine, on SQLite and PostgreSQL.

Stability is decided on the watcher's clock, which these tests advance themselves: a drop is
claimed exactly when nothing changed for ``stable_for`` seconds of that clock.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import StagingSession
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs, JobStatus
from dicomgate.sources.config import AfterImport, NonDicom, WatchFolder
from dicomgate.sources.folder_job import KIND
from dicomgate.sources.watch import FolderWatcher
from tests.conftest import PYDICOM_FILES
from tests.integration.sources.helpers import inline_jobs, instance_count, stored_uids, write_study

STABLE = 0.5


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(tmp_path: Path, jobs: Jobs, **options: object) -> tuple[FolderWatcher, Clock]:
    with jobs.db.unit_of_work() as session:
        ensure_project(session, "P1")
    folder = WatchFolder(path=tmp_path / "inbox", project="P1", **options)  # type: ignore[arg-type]
    clock = Clock()
    watcher = FolderWatcher([folder], STABLE, lambda p: jobs.submit(KIND, p), clock)
    return watcher, clock


def _claim(watcher: FolderWatcher, clock: Clock) -> list[str]:
    assert watcher.poll() == []
    clock.now += STABLE
    return watcher.poll()


@pytest.mark.parametrize("after", [AfterImport.REMOVE, AfterImport.MOVE])
def test_two_sessions_and_a_non_dicom_file(
    intake: Intake, tmp_path: Path, after: AfterImport
) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs, after_import=after)
    drop = tmp_path / "inbox" / "folder1"
    first = write_study(drop / "session1" / "scan1", 3, "PA")
    second = write_study(drop / "session2" / "scan1" / "deeper", 2, "PB")
    (drop / "notes.txt").write_text("scanner export log")
    [job_id] = _claim(watcher, clock)
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 5, "rejected": 1}
    assert stored_uids(intake) == set(first) | set(second)
    with intake.db.reader() as session:
        staged = session.scalars(select(StagingSession)).all()
        assert sorted(s.project_id or "" for s in staged) == ["P1", "P1"]
    inbox = tmp_path / "inbox"
    assert not drop.exists() and list((inbox / "processing").iterdir()) == []
    [claim] = list((inbox / "rejected").iterdir())
    note = claim / "folder1" / "notes.txt.reason.txt"
    assert (claim / "folder1" / "notes.txt").read_text() == "scanner export log"
    assert note.read_text().startswith("not DICOM")
    done = list((inbox / "done").rglob("IM*")) if (inbox / "done").exists() else []
    assert len(done) == (5 if after is AfterImport.MOVE else 0)


def test_a_slowly_written_file_waits_until_stable(intake: Intake, tmp_path: Path) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs)
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    target = tmp_path / "inbox" / "slow.dcm"
    with target.open("wb") as out:
        for start in range(0, len(data), 4096):
            out.write(data[start : start + 4096])
            out.flush()
            assert watcher.poll() == []  # still growing: never claimed
            clock.now += STABLE * 0.9
    assert watcher.poll() == []  # the last write was seen just now
    clock.now += STABLE
    [job_id] = watcher.poll()
    assert jobs.run_inline(job_id).counts == {"stored": 1}
    assert not target.exists()


def test_links_and_fifos_are_never_followed(intake: Intake, tmp_path: Path) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs, non_dicom=NonDicom.DELETE)
    outside = tmp_path / "outside"
    secret = write_study(outside, 1)
    drop = tmp_path / "inbox" / "drop"
    write_study(drop, 1)
    (drop / "link.dcm").symlink_to(outside / "IM00000")
    (drop / "linked-folder").symlink_to(outside)
    os.mkfifo(drop / "pipe")
    (tmp_path / "inbox" / "top-link").symlink_to(outside / "IM00000")
    job_ids = _claim(watcher, clock)
    assert len(job_ids) == 2
    counts = [jobs.run_inline(job_id).counts for job_id in job_ids]
    assert {"stored": 1, "skipped": 3} in counts and {"skipped": 1} in counts
    assert secret[0] not in stored_uids(intake) and instance_count(intake) == 1
    assert (outside / "IM00000").exists()  # a link is removed, never what it points to
    assert not drop.exists()


def test_a_drop_holding_a_dicomdir_goes_through_it(intake: Intake, tmp_path: Path) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs, after_import=AfterImport.MOVE)
    cd = Path(shutil.copytree(PYDICOM_FILES / "dicomdirtests" / "TINY_ALPHA", tmp_path / "cd"))
    (cd / "PT000000" / "ST000000" / "SE000000" / "IM000009").unlink()
    shutil.move(cd, tmp_path / "inbox" / "cd")
    [job_id] = _claim(watcher, clock)
    job = jobs.run_inline(job_id)
    assert job.counts == {"stored": 49, "missing": 1}
    items = jobs.items(job_id, outcome="missing").items
    assert [i.key for i in items] == ["PT000000/ST000000/SE000000/IM000009"]
    assert "missing from the media" in items[0].reason
    [claim] = list((tmp_path / "inbox" / "done").iterdir())
    assert (claim / "cd" / "DICOMDIR").exists() and (claim / "cd" / "README").exists()


def test_retry_after_errors_settles_from_the_rejected_folder(
    intake: Intake, tmp_path: Path
) -> None:
    jobs = inline_jobs(intake)
    watcher, clock = _watch(tmp_path, jobs)
    drop = tmp_path / "inbox" / "drop"
    write_study(drop, 2)
    (drop / "notes.txt").write_text("x")
    [job_id] = _claim(watcher, clock)
    assert jobs.run_inline(job_id).counts == {"stored": 2, "rejected": 1}
    jobs.retry(job_id)
    again = jobs.run_inline(job_id)
    assert again.status is JobStatus.COMPLETED_WITH_ERRORS
    assert again.counts == {"stored": 2, "rejected": 1}
    [item] = jobs.items(job_id, outcome="rejected").items
    assert item.reason.startswith("not DICOM") and item.detail == {"in": "rejected folder"}
    assert instance_count(intake) == 2


def test_a_dropped_folder_is_noticed_once_before_it_is_stable(
    intake: Intake, tmp_path: Path
) -> None:
    jobs = inline_jobs(intake)
    with jobs.db.unit_of_work() as session:
        ensure_project(session, "P1")
    folder = WatchFolder(path=tmp_path / "inbox", project="P1")
    clock, noticed = Clock(), []
    watcher = FolderWatcher(
        [folder], STABLE, lambda p: jobs.submit(KIND, p), clock, noticed=lambda: noticed.append(1)
    )
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", tmp_path / "inbox" / "loose.dcm")
    assert watcher.poll() == [] and noticed == []  # a loose file starts no import processes
    write_study(tmp_path / "inbox" / "session", 3)
    assert watcher.poll() == [] and noticed == [1]  # seen, not stable yet: noticed at once
    write_study(tmp_path / "inbox" / "session" / "more", 2)
    assert watcher.poll() == [] and noticed == [1]  # still growing: not noticed again
    clock.now += STABLE
    claimed = watcher.poll()
    assert len(claimed) == 2 and noticed == [1]
    assert {jobs.run_inline(job).status for job in claimed} == {JobStatus.SUCCEEDED}
