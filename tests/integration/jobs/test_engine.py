"""The job engine: reconciliation, retries, deferral, cancel and retry of failed items."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import Instance, StagingSession, utcnow
from dicomgate.errors import ConflictError, NotFoundError
from dicomgate.jobs import JobContext, Jobs, JobStatus
from dicomgate.jobs.models import Job
from tests.conftest import PYDICOM_FILES
from tests.integration.jobs.conftest import copy_files
from tests.integration.jobs.handlers import calls as _calls
from tests.integration.jobs.handlers import facade


def test_folder_import_reports_every_entry(jobs: Jobs, tmp_path: Path) -> None:
    source = tmp_path / "in"
    copy_files(source / "a", "CT_small.dcm", "MR_small.dcm")
    copy_files(source / "b", "MR_truncated.dcm")
    (source / "notes.txt").write_text("not DICOM")
    os.symlink(PYDICOM_FILES / "rtplan.dcm", source / "link.dcm")
    os.mkfifo(source / "fifo")
    job_id = jobs.submit("import_files", {"paths": [str(source)]})
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 2, "rejected": 2, "skipped": 2}
    assert (job.total, job.done, job.errors) == (6, 6, 2)
    items = {Path(i.key).name: i for i in jobs.items(job_id).items}
    assert items["MR_truncated.dcm"].outcome == "rejected"
    assert "incomplete" in items["MR_truncated.dcm"].reason
    assert items["link.dcm"].reason == "symbolic link, not followed"
    assert items["CT_small.dcm"].detail["intake"] == "stored"


def test_all_ok_succeeds_and_again_is_already_stored(jobs: Jobs, tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm", "MR_small.dcm")
    first = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "in")]}))
    assert first.status is JobStatus.SUCCEEDED and first.counts == {"stored": 2}
    again = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "in")]}))
    assert again.status is JobStatus.SUCCEEDED and again.counts == {"already_stored": 2}


def test_labels_and_job_travel_on_the_staging_origin(jobs: Jobs, tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm")
    with jobs.db.unit_of_work() as session:
        ensure_project(session, "DEFAULT")
    params = {"paths": [str(tmp_path / "in")], "project": "DEFAULT", "subject": "S1"}
    job_id = jobs.submit("import_files", {**params, "session": "S1_MR1", "origin": "inbox"})
    jobs.run_inline(job_id)
    with jobs.db.reader() as session:
        staging = session.scalars(select(StagingSession)).one()
    assert staging.source_key == f"inbox:job:{job_id}"
    assert staging.origin["subject_label"] == "S1" and staging.origin["session_label"] == "S1_MR1"
    assert staging.project_id == "DEFAULT"


def test_items_left_without_outcome_are_missing(jobs: Jobs) -> None:
    job = jobs.run_inline(jobs.submit("test_forgetful", {}))
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 1, "skipped": 1, "missing": 1}


def test_retriable_error_is_retried_then_succeeds(jobs: Jobs) -> None:
    job_id = jobs.submit("test_flaky", {"succeed_on": 3})
    job = jobs.run_inline(job_id, wait=lambda _s: None)
    assert job.status is JobStatus.SUCCEEDED
    assert _calls[job_id] == 3 and job.attempts == 2
    assert any("retrying" in line.message for line in jobs.log_lines(job_id))


def test_retries_are_exhausted(jobs: Jobs) -> None:
    job_id = jobs.submit("test_flaky", {"succeed_on": 99})
    job = jobs.run_inline(job_id, wait=lambda _s: None)
    assert job.status is JobStatus.FAILED and _calls[job_id] == 3
    assert job.message.startswith("gave up after 3 attempts")


def test_permanent_error_is_not_retried(jobs: Jobs) -> None:
    job_id = jobs.submit("test_permanent", {})
    job = jobs.run_inline(job_id, wait=lambda _s: None)
    assert job.status is JobStatus.FAILED and job.message == "no such peer"
    assert _calls[job_id] == 1


def test_deferred_job_waits_with_resume_time(jobs: Jobs) -> None:
    job_id = jobs.submit("test_deferred", {})
    jobs.engine.run(job_id)
    job = jobs.get(job_id)
    assert job.status is JobStatus.WAITING and job.resume_at is not None
    assert job.message == "outside the PACS window"
    jobs.engine.run(job_id)  # too early: not claimed
    assert jobs.get(job_id).status is JobStatus.WAITING
    assert jobs.cancel(job_id).status is JobStatus.CANCELLED


def test_cancel_and_retry_refuse_wrong_states(jobs: Jobs, tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm")
    job_id = jobs.submit("import_files", {"paths": [str(tmp_path / "in")]})
    with pytest.raises(ConflictError):
        jobs.retry(job_id)
    jobs.run_inline(job_id)
    with pytest.raises(ConflictError):
        jobs.cancel(job_id)
    with pytest.raises(ConflictError):
        jobs.retry(job_id)
    with pytest.raises(NotFoundError):
        jobs.get("0" * 32)
    with pytest.raises(NotFoundError):
        jobs.submit("no_such_kind", {})


def test_cancel_pending_never_runs(jobs: Jobs, tmp_path: Path) -> None:
    copy_files(tmp_path / "in", "CT_small.dcm")
    job_id = jobs.submit("import_files", {"paths": [str(tmp_path / "in")]})
    assert jobs.cancel(job_id).status is JobStatus.CANCELLED
    assert jobs.run_inline(job_id).status is JobStatus.CANCELLED
    with jobs.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 0


def test_retry_reads_only_the_failed_items(jobs: Jobs, tmp_path: Path) -> None:
    source = tmp_path / "in"
    copy_files(source, "CT_small.dcm", "MR_truncated.dcm")
    job_id = jobs.submit("import_files", {"paths": [str(source)]})
    assert jobs.run_inline(job_id).status is JobStatus.COMPLETED_WITH_ERRORS
    before = {i.key: i for i in jobs.items(job_id).items}
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", source / "MR_truncated.dcm")  # fixed by hand
    (source / "new.dcm").write_bytes(b"appeared later; not part of this job")
    assert jobs.retry(job_id).status is JobStatus.PENDING
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.SUCCEEDED and job.counts == {"stored": 2}
    after = {i.key: i for i in jobs.items(job_id).items}
    ct = str(source / "CT_small.dcm")
    assert after[ct].updated_at == before[ct].updated_at  # untouched by the retry
    assert set(after) == set(before)


def test_cancel_while_running_stops_at_the_next_item(
    jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(JobContext, "cancel_poll_seconds", 0.0)
    facade["jobs"] = jobs
    job_id = jobs.submit("test_cancelling", {})
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.counts == {"stored": 2, "pending": 2}  # left pending, not called missing
    assert jobs.retry(job_id).status is JobStatus.PENDING


def _set_heartbeat(jobs: Jobs, job_id: str, age: float) -> None:
    with jobs.db.unit_of_work() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status="RUNNING", heartbeat_at=utcnow() - dt.timedelta(seconds=age))
        )


def test_running_job_is_taken_over_only_when_its_lease_expired(jobs: Jobs) -> None:
    job_id = jobs.submit("test_forgetful", {})
    _set_heartbeat(jobs, job_id, age=1)  # another worker holds it
    jobs.engine.run(job_id)
    assert jobs.get(job_id).status is JobStatus.RUNNING
    assert jobs.engine.recover(include_pending=False) == []
    _set_heartbeat(jobs, job_id, age=jobs.engine.lease + 1)  # that worker died
    assert jobs.engine.recover(include_pending=False) == [job_id]
    jobs.engine.run(job_id)
    assert jobs.get(job_id).status is JobStatus.COMPLETED_WITH_ERRORS
