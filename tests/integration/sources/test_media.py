"""DICOMDIR media end to end: pydicom's dicomdirtests/ and TINY_ALPHA/, intact and damaged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomgate.intake.receive import Intake
from dicomgate.jobs import JobStatus
from dicomgate.sources.archives import ArchiveLimits
from dicomgate.sources.dicomdir import read_media
from dicomgate.sources.handlers import MEDIA, UPLOAD, media_params
from tests.conftest import PYDICOM_FILES
from tests.integration.sources.helpers import inline_jobs, instance_count, stored_uids

MEDIA_ROOT = PYDICOM_FILES / "dicomdirtests"
SERIES_DIR = Path("PT000000") / "ST000000" / "SE000000"


@pytest.fixture()
def damaged(tmp_path: Path) -> Path:
    """TINY_ALPHA with two listed files missing, one DICOM and one text file unlisted."""
    cd = Path(shutil.copytree(MEDIA_ROOT / "TINY_ALPHA", tmp_path / "cd"))
    (cd / SERIES_DIR / "IM000003").unlink()
    (cd / SERIES_DIR / "IM000004").unlink()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", cd / SERIES_DIR / "EXTRA")
    (cd / "AUTORUN.INF").write_text("[autorun]\n")
    return cd


def test_media_with_missing_and_extra_files(intake: Intake, damaged: Path) -> None:
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit(MEDIA, media_params(damaged, None)))
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"stored": 49, "missing": 2, "skipped": 1}
    missing = {i.key for i in jobs.items(job.id, outcome="missing").items}
    assert missing == {f"{SERIES_DIR.as_posix()}/IM000003", f"{SERIES_DIR.as_posix()}/IM000004"}
    [skipped] = jobs.items(job.id, outcome="skipped").items
    assert skipped.key == "AUTORUN.INF" and "not listed" in skipped.reason
    extra = dcmread(PYDICOM_FILES / "CT_small.dcm").SOPInstanceUID
    assert extra in stored_uids(intake)  # present but unlisted DICOM is imported, not lost


def test_record_header_disagreement_is_reported(intake: Intake, damaged: Path) -> None:
    path = damaged / SERIES_DIR / "IM000007"
    ds = dcmread(path)
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.save_as(path)
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit(MEDIA, media_params(damaged, None)))
    item = next(i for i in jobs.items(job.id).items if i.key.endswith("IM000007"))
    assert item.outcome == "stored" and "disagrees" in item.reason
    assert item.detail["disagrees"] == ["SOPInstanceUID"]
    assert any("disagrees" in line.message for line in jobs.log_lines(job.id))


def test_study_and_series_filters(intake: Intake) -> None:
    jobs = inline_jobs(intake)
    media = read_media(MEDIA_ROOT)
    study = next(iter(media.patients[1].studies))
    series = next(iter(media.patients[0].studies.values())).series
    one_series = next(iter(series))
    job = jobs.run_inline(jobs.submit(MEDIA, media_params(MEDIA_ROOT, None, study=study)))
    want = len(media.files(study=study))
    assert job.counts["stored"] == want and instance_count(intake) == want
    assert job.status is JobStatus.SUCCEEDED  # unlisted files are skipped, with the reason
    skipped = jobs.items(job.id, outcome="skipped", limit=1000).items
    assert skipped and all("not listed in the DICOMDIR" in i.reason for i in skipped)
    assert any("filter" in i.reason for i in skipped) and any(
        "not DICOM" in i.reason for i in skipped
    )
    again = jobs.run_inline(jobs.submit(MEDIA, media_params(MEDIA_ROOT, None, series=one_series)))
    assert again.counts.get("stored", 0) + again.counts.get("already_stored", 0) == 1


def test_file_ids_escaping_the_media_are_refused(intake: Intake, damaged: Path) -> None:
    ds = dcmread(damaged / "DICOMDIR")
    image = next(r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")
    image.ReferencedFileID = [".."] * 9 + ["ETCPASSWD"]  # same length: offsets stay valid
    ds.save_as(damaged / "DICOMDIR")
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit(MEDIA, media_params(damaged, None)))
    [rejected] = jobs.items(job.id, outcome="rejected").items
    assert rejected.key.startswith("../") and "escape the media root" in rejected.reason


def _cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "DICOMGATE_DATA_DIR": str(data), "COLUMNS": "200"},
    )


def test_cli_media_ls_and_import_through_the_dicomdir(damaged: Path, tmp_path: Path) -> None:
    listing = _cli("media", "ls", str(damaged), data=tmp_path / "data")
    assert listing.returncode == 1, listing.stderr
    assert "50 files" in listing.stdout and "2 missing" in listing.stdout
    assert "EXTRA: present on the media but not listed" in listing.stdout
    done = _cli("import", str(damaged), data=tmp_path / "data")
    assert done.returncode == 1
    assert "stored: 49" in done.stdout and "IM000003" in done.stdout
    plain = _cli("import", str(tmp_path / "data"), "--study", "1.2.3", data=tmp_path / "x")
    assert plain.returncode == 2 and "need one folder holding a DICOMDIR" in plain.stderr


def test_upload_retry_reads_only_what_is_pending(intake: Intake, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    with zipfile.ZipFile(spool / "body", "w") as zf:
        zf.write(PYDICOM_FILES / "CT_small.dcm", "a/ct.dcm")
        zf.write(PYDICOM_FILES / "MR_small.dcm", "a/mr.dcm")
        zf.writestr("a/readme.txt", "not DICOM")
    (spool / "manifest.json").write_text(json.dumps({"archive": True, "files": []}))
    jobs = inline_jobs(intake)
    params = {"spool": str(spool), "project": None, "archive": True}
    job_id = jobs.submit(UPLOAD, {**params, "limits": ArchiveLimits().model_dump()})
    assert jobs.run_inline(job_id).counts == {"stored": 2, "rejected": 1}
    assert spool.exists()  # kept while an item is not in the archive
    jobs.retry(job_id)
    again = jobs.run_inline(job_id)
    assert again.counts == {"stored": 2, "rejected": 1}
    assert instance_count(intake) == 2
    stored = jobs.items(job_id, outcome="stored").items
    assert all(i.detail.get("intake") == "stored" for i in stored)  # not received again
