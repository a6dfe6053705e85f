"""The DICOMDIR reader against pydicom's media (dicomdirtests/, TINY_ALPHA/) and damaged copies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from tests.conftest import PYDICOM_FILES

from dicomgate.sources.dicomdir import (
    MISSING,
    MediaError,
    disagreements,
    find_dicomdir,
    read_header,
    read_media,
    summary,
)
from dicomgate.sources.scan import FileKind

MEDIA = PYDICOM_FILES / "dicomdirtests"
TINY = MEDIA / "TINY_ALPHA"


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    return Path(shutil.copytree(TINY, tmp_path / "cd"))


def test_tiny_alpha_tree_and_counts() -> None:
    media = read_media(TINY)
    [patient] = media.patients
    [study] = patient.studies.values()
    [series] = study.series.values()
    assert len(series.files) == 50 and series.modality == "CT"
    assert study.description == "Testing File-set"
    assert all(f.path is not None and not f.problem for f in media.files())
    assert [f.key for f in media.unlisted] == []  # README is the File-set descriptor
    assert media.problems == []


def test_three_patient_media_and_its_variants(tmp_path: Path) -> None:
    media = read_media(MEDIA)
    assert len(media.files()) == 31 and len(media.patients) == 2
    study_uids = [uid for p in media.patients for uid in p.studies]
    assert len(study_uids) == 6
    first = study_uids[0]
    assert 0 < len(media.files(study=first)) < 31
    series_uid = next(iter(media.patients[0].studies[first].series))
    assert len(media.files(series=series_uid)) == len(media.files(first, series_uid))
    copy = Path(shutil.copytree(MEDIA, tmp_path / "m"))
    for variant in ("DICOMDIR-reordered", "DICOMDIR-nooffset", "DICOMDIR-bigEnd"):
        shutil.copy(MEDIA / variant, copy / "DICOMDIR")
        again = read_media(copy)
        assert sorted(f.key for f in again.files()) == sorted(f.key for f in media.files())
        assert len([u for p in again.patients for u in p.studies]) == 6, variant


def test_missing_and_extra_files_are_each_reported(tiny: Path) -> None:
    series_dir = tiny / "PT000000" / "ST000000" / "SE000000"
    (series_dir / "IM000003").unlink()
    (series_dir / "IM000004").unlink()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", series_dir / "EXTRA1")
    (tiny / "notes.txt").write_text("burned by the hospital")
    media = read_media(tiny)
    missing = sorted(f.key for f in media.files() if f.problem == MISSING)
    assert missing == ["PT000000/ST000000/SE000000/IM000003", "PT000000/ST000000/SE000000/IM000004"]
    unlisted = {f.key: f.kind for f in media.unlisted}
    assert unlisted == {
        "PT000000/ST000000/SE000000/EXTRA1": FileKind.DICOM,
        "notes.txt": FileKind.OTHER,
    }
    lines = list(summary(media))
    assert len(lines) == 4 and any("not listed" in line for line in lines)


def test_file_ids_escaping_the_root_are_refused(tiny: Path) -> None:
    ds = dcmread(tiny / "DICOMDIR")
    image = next(r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE")
    image.ReferencedFileID = [".."] * 9 + ["ETCPASSWD"]  # same length: offsets stay valid
    ds.save_as(tiny / "DICOMDIR")
    (tiny / "PT000000" / "ST000000" / "SE000000" / "IM000001").unlink()
    (tiny / "PT000000" / "ST000000" / "SE000000" / "IM000001").symlink_to("/etc/passwd")
    media = read_media(tiny)
    problems = {f.key: f.problem for f in media.files() if f.problem}
    assert problems["/".join([".."] * 9 + ["ETCPASSWD"])].startswith("refused: ")
    assert "symbolic link" in problems["PT000000/ST000000/SE000000/IM000001"]
    assert len(problems) == 2
    assert all(f.path is None for f in media.files() if f.problem)
    # the file whose record was pointed elsewhere is now present but unlisted
    assert {f.key: f.kind for f in media.unlisted} == {
        "PT000000/ST000000/SE000000/IM000000": FileKind.DICOM
    }


def test_record_and_header_disagreement(tiny: Path) -> None:
    path = tiny / "PT000000" / "ST000000" / "SE000000" / "IM000007"
    ds = dcmread(path)
    ds.SOPInstanceUID = "1.2.3.4"
    ds.StudyInstanceUID = "1.2.3.5"
    ds.save_as(path)
    media = read_media(tiny)
    by_key = {f.key: f for f in media.files()}
    listed = by_key["PT000000/ST000000/SE000000/IM000007"]
    assert disagreements(listed, read_header(path)) == ["SOPInstanceUID", "StudyInstanceUID"]
    other = by_key["PT000000/ST000000/SE000000/IM000008"]
    assert other.path is not None
    assert disagreements(other, read_header(other.path)) == []


def test_record_loops_are_cut_and_unlinked_records_kept(tiny: Path) -> None:
    ds = dcmread(tiny / "DICOMDIR")
    records = ds.DirectoryRecordSequence
    images = [r for r in records if r.DirectoryRecordType == "IMAGE"]
    images[10].OffsetOfTheNextDirectoryRecord = images[3].seq_item_tell  # back: a loop
    ds.save_as(tiny / "DICOMDIR")
    media = read_media(tiny)
    assert any("loop" in p for p in media.problems)
    assert len(media.files()) == 50  # records past the loop are still listed


def test_case_and_iso9660_version_suffixes_are_matched(tiny: Path) -> None:
    series_dir = tiny / "PT000000" / "ST000000" / "SE000000"
    (series_dir / "IM000002").rename(series_dir / "im000002;1")
    media = read_media(tiny)
    listed = next(f for f in media.files() if f.key.endswith("IM000002"))
    assert listed.path == series_dir / "im000002;1" and not listed.problem
    assert media.unlisted == []


def test_no_or_broken_dicomdir(tmp_path: Path) -> None:
    assert find_dicomdir(tmp_path) is None
    with pytest.raises(MediaError, match="no DICOMDIR"):
        read_media(tmp_path)
    (tmp_path / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 20)
    with pytest.raises(MediaError, match=r"cannot be read|no Directory Record"):
        read_media(tmp_path)
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", tmp_path / "DICOMDIR")
    with pytest.raises(MediaError, match="no Directory Record Sequence"):
        read_media(tmp_path)
