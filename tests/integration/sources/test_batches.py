"""Folder imports in batches: each file keeps its own outcome, a failed batch loses nothing."""

from __future__ import annotations

import hashlib
from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import delete, func, select

from dicomgate.archive.models import Instance, Series
from dicomgate.intake.batch import receive_batch
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, ReceiveResult, prepare
from dicomgate.jobs import JobStatus
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from tests.conftest import PYDICOM_FILES
from tests.integration.sources.helpers import inline_jobs, instance_count, write_study


def _items(intake: Intake, job_id: str) -> dict[str, tuple[str, str]]:
    jobs = inline_jobs(intake)
    return {Path(i.key).name: (i.outcome, i.reason) for i in jobs.items(job_id).items}


def _blob_count(intake: Intake) -> int:
    return len(list(intake.blobs.iter_keys()))


def test_every_file_of_a_batch_gets_its_own_outcome(intake: Intake, tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    write_study(folder, 4)
    (folder / "notes.txt").write_text("not DICOM at all\n")
    whole = (folder / "IM00000").read_bytes()
    (folder / "cut").write_bytes(whole[: len(whole) - 100])  # cut short in its pixel data
    (folder / "same").write_bytes((folder / "IM00001").read_bytes())
    other = dcmread(folder / "IM00002")
    other.InstanceNumber = 99  # same SOP Instance UID, other content
    other.save_as(folder / "zother")
    jobs = inline_jobs(intake)
    job = jobs.run_inline(jobs.submit("import_files", {"paths": [str(folder)]}))
    items = _items(intake, job.id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert {items[f"IM{n:05d}"][0] for n in range(4)} == {"stored"}
    assert items["same"][0] == "already_stored"
    assert items["zother"][0] == "conflicting"
    assert items["notes.txt"][0] == "rejected" and items["notes.txt"][1].startswith("malformed:")
    assert items["cut"][0] == "rejected" and "incomplete" in items["cut"][1]
    assert instance_count(intake) == 4 and _blob_count(intake) == 4


def test_importing_again_stores_nothing_twice(intake: Intake, tmp_path: Path) -> None:
    write_study(tmp_path / "drop", 30)
    jobs = inline_jobs(intake)
    first = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]}))
    again = jobs.run_inline(jobs.submit("import_files", {"paths": [str(tmp_path / "drop")]}))
    assert first.counts == {"stored": 30}
    assert again.counts == {"already_stored": 30} and again.status is JobStatus.SUCCEEDED
    assert instance_count(intake) == 30 and _blob_count(intake) == 30


def _encoded(count: int, series_uid: str, study_uid: str) -> list[bytes]:
    """Return ``count`` new instances of one series, encoded as Part-10 files."""
    ds = dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
    out = []
    for n in range(count):
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = n + 1
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def test_a_failed_batch_is_received_one_by_one(intake: Intake) -> None:
    origin = Origin(kind=OriginKind.IMPORT, job_id="b" * 32)
    study, series = generate_uid(), generate_uid()
    # A later series keeps the highest pk, so SQLite does not hand the deleted pk out again.
    encoded = _encoded(2, series, study) + _encoded(1, generate_uid(), study)
    first = receive_batch(intake, [prepare(d, origin) for d in encoded])
    assert all(isinstance(r, ReceiveResult) and r.outcome is Outcome.STORED for r in first)
    with intake.db.unit_of_work() as session:  # the series goes (a prearchive delete does so)
        series_pk = session.scalar(select(Series.pk).where(Series.series_uid == series))
        session.execute(delete(Instance).where(Instance.series_pk == series_pk))
        session.execute(delete(Series).where(Series.pk == series_pk))
    kept = set(intake.blobs.iter_keys())
    # This process still remembers the series: the batch's insert fails on its foreign key,
    # and every instance of the batch, of that series or not, is then received on its own.
    batch = _encoded(3, series, study) + _encoded(2, generate_uid(), study)
    results = receive_batch(intake, [prepare(d, origin) for d in batch])
    assert [r.outcome for r in results if isinstance(r, ReceiveResult)] == [Outcome.STORED] * 5
    with intake.db.reader() as session:
        rows = session.execute(select(Instance.blob_key, Instance.sha256)).all()
        assert session.scalar(select(func.count()).select_from(Series)) == 3
    keys = {k for k, _ in rows}
    assert len(rows) == 6 and set(intake.blobs.iter_keys()) - kept == keys - kept
    for key, digest in rows:  # no blob of the failed batch is left, each row has its own
        assert hashlib.sha256(intake.blobs.read(key)[128:]).hexdigest() == digest
