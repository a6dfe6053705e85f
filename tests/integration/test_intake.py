"""receive(): stored, already stored, conflicting, replaced, rejected; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicomgate.archive.models import Instance, SetAside, StagingSession, Study
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, receive
from dicomgate.settings import DuplicatePolicy
from tests.conftest import PYDICOM_FILES

ORIGIN = Origin(OriginKind.IMPORT, user="tester")


def _file(name: str) -> bytes:
    return (PYDICOM_FILES / name).read_bytes()


def _with_uid(data: bytes, **changes: str) -> bytes:
    ds = pydicom.dcmread(BytesIO(data))
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
        if keyword == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = value
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_stored_bytes_equal_input_after_zeroed_preamble(intake: Intake) -> None:
    data = bytearray(_file("CT_small.dcm"))
    data[:128] = b"X" * 128  # a polyglot preamble must not survive
    result = receive(intake, bytes(data), ORIGIN)
    assert result.outcome is Outcome.STORED
    with intake.db.reader() as session:
        row = session.scalars(select(Instance)).one()
        staging = session.scalars(select(StagingSession)).one()
    stored = intake.blobs.read(row.blob_key)
    assert stored[:128] == bytes(128)
    assert stored[128:] == bytes(data[128:])
    assert row.sha256 == hashlib.sha256(stored[128:]).hexdigest()
    assert staging.status == "RECEIVING"
    assert staging.instance_count == 1


@pytest.mark.parametrize(
    "name",
    [
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPGExtended.dcm",
        "JPEG-lossy.dcm",
        "MR_small_bigendian.dcm",
        "image_dfl.dcm",
        "MR_small_implicit.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
    ],
)
def test_transfer_syntaxes_stored_as_received(intake: Intake, name: str) -> None:
    data = _file(name)
    assert receive(intake, data, ORIGIN).outcome is Outcome.STORED
    with intake.db.reader() as session:
        row = session.scalars(select(Instance)).one()
    assert intake.blobs.read(row.blob_key)[128:] == data[128:]


def test_bare_dataset_gets_a_meta_header(intake: Intake) -> None:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    del ds.file_meta
    ds.preamble = None
    body = BytesIO()
    pydicom.dcmwrite(body, ds, implicit_vr=True, little_endian=True)
    raw = body.getvalue()
    result = receive(intake, raw, Origin(OriginKind.DIMSE, remote_ae="CT1"), "1.2.840.10008.1.2")
    assert result.outcome is Outcome.STORED
    with intake.db.reader() as session:
        row = session.scalars(select(Instance)).one()
    stored = pydicom.dcmread(BytesIO(intake.blobs.read(row.blob_key)))
    assert stored.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert stored.file_meta.SourceApplicationEntityTitle == "CT1"
    assert intake.blobs.read(row.blob_key).endswith(raw)


def test_identical_resend_is_a_no_op(intake: Intake) -> None:
    data = _file("CT_small.dcm")
    first = receive(intake, data, ORIGIN)
    again = receive(intake, data, ORIGIN)
    assert again.outcome is Outcome.ALREADY_STORED
    assert again.ok and again.instance_pk == first.instance_pk
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 1


def _changed(data: bytes) -> bytes:
    return _with_uid(data, StudyDescription="changed content")


def test_conflict_keep_first_sets_newcomer_aside(intake: Intake) -> None:
    data = _file("CT_small.dcm")
    receive(intake, data, ORIGIN)
    result = receive(intake, _changed(data), ORIGIN)
    assert result.outcome is Outcome.CONFLICTING and not result.ok
    with intake.db.reader() as session:
        row = session.scalars(select(Instance)).one()
        aside = session.scalars(select(SetAside)).one()
    assert intake.blobs.read(row.blob_key)[128:] == data[128:]
    assert aside.reason == "conflicting_duplicate"
    assert intake.set_aside.read(str(aside.blob_key))[128:] == _changed(data)[128:]


def test_conflict_replace(intake: Intake) -> None:
    data = _file("CT_small.dcm")
    receive(intake, data, ORIGIN)
    replacing = Intake(intake.db, intake.blobs, intake.set_aside, DuplicatePolicy.REPLACE)
    new = _changed(data)
    assert receive(replacing, new, ORIGIN).outcome is Outcome.REPLACED
    with intake.db.reader() as session:
        row = session.scalars(select(Instance)).one()
    assert intake.blobs.read(row.blob_key)[128:] == new[128:]
    assert len(list(intake.blobs.iter_keys())) == 1


def test_conflict_reject(intake: Intake) -> None:
    data = _file("CT_small.dcm")
    receive(intake, data, ORIGIN)
    rejecting = Intake(intake.db, intake.blobs, intake.set_aside, DuplicatePolicy.REJECT)
    result = receive(rejecting, _changed(data), ORIGIN)
    assert result.outcome is Outcome.REJECTED
    assert "conflicting_duplicate" in result.reason


@pytest.mark.parametrize(
    ("data_factory", "reason"),
    [
        (lambda: _file("MR_truncated.dcm"), "incomplete"),
        (lambda: _file("CT_small.dcm")[:-1000], "incomplete"),
        (lambda: b"this is not DICOM at all" * 10, "not DICOM"),
        (lambda: b"", "not DICOM"),
        (lambda: _with_uid(_file("CT_small.dcm"), SOPInstanceUID="1.2.abc"), "SOPInstanceUID"),
        (lambda: _with_uid(_file("CT_small.dcm"), StudyInstanceUID="01.2"), "StudyInstanceUID"),
    ],
)
def test_malformed_is_kept_aside_with_a_reason(intake: Intake, data_factory, reason: str) -> None:
    data = data_factory()
    result = receive(intake, data, ORIGIN)
    assert result.outcome is Outcome.REJECTED
    assert reason in result.reason
    with intake.db.reader() as session:
        aside = session.scalars(select(SetAside)).one()
        assert session.scalar(select(func.count()).select_from(Instance)) == 0
    assert aside.reason == "malformed"
    assert intake.set_aside.read(str(aside.blob_key)) == data


def test_missing_required_uid(intake: Intake, tmp_path: Path) -> None:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    del ds.SeriesInstanceUID
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    result = receive(intake, out.getvalue(), ORIGIN)
    assert result.outcome is Outcome.REJECTED
    assert "SeriesInstanceUID is missing" in result.reason


def test_concurrent_senders_of_one_study_converge(intake: Intake) -> None:
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    study, series = generate_uid(), generate_uid()
    payloads = []
    for number in range(20):
        template.StudyInstanceUID, template.SeriesInstanceUID = study, series
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        out = BytesIO()
        template.save_as(out, enforce_file_format=True)
        payloads.append(out.getvalue())
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda p: receive(intake, p, ORIGIN), payloads * 2))
    assert sum(r.outcome is Outcome.STORED for r in results) == 20
    assert all(r.ok for r in results)
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Study)) == 1
        assert session.scalar(select(func.count()).select_from(Instance)) == 20


def test_a_series_deleted_after_it_was_cached_is_written_again(intake: Intake) -> None:
    # Intake remembers committed series rows; a prearchive delete or the purge of a
    # de-identified original removes them, and the next instance of that series must still land.
    from sqlalchemy import delete

    from dicomgate.archive.models import Series

    series = generate_uid()
    first = _with_uid(_file("CT_small.dcm"), SeriesInstanceUID=series)
    assert receive(intake, first, ORIGIN).outcome is Outcome.STORED
    with intake.db.unit_of_work() as session:
        session.execute(delete(Instance))
        session.execute(delete(Series).where(Series.series_uid == series))
    second = _with_uid(
        _file("CT_small.dcm"), SeriesInstanceUID=series, SOPInstanceUID=generate_uid()
    )
    result = receive(intake, second, ORIGIN)
    assert result.outcome is Outcome.STORED, result.reason
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(Series)) == 1
        assert session.scalar(select(func.count()).select_from(Instance)) == 1
