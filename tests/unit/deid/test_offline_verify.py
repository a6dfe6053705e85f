from __future__ import annotations

from pathlib import Path

from deid_builders import SECRET_A, ct_slice, rt_chain
from pydicom import dcmread
from pydicom.dataset import Dataset

from dicomgate.deid import DeidKeys, Profile, verify_dataset
from dicomgate.deid.offline import deid_folder, verify_path, write_dataset


def _keys(ds: Dataset) -> DeidKeys:
    return DeidKeys(SECRET_A, "SUBJ-0001", date_offset_days=-3)


def _write_inputs(folder: Path) -> None:
    folder.mkdir()
    for i, ds in enumerate(rt_chain()):
        write_dataset(ds, folder / f"ZQXDOE_{i}.dcm")
    (folder / "notes.txt").write_text("not dicom")
    us = ct_slice(5)
    us.Modality = "US"
    write_dataset(us, folder / "us.dcm")


def test_deid_folder_then_verify_is_clean(tmp_path: Path, basic: Profile) -> None:
    _write_inputs(tmp_path / "in")
    summary = deid_folder(tmp_path / "in", tmp_path / "out", basic, _keys)
    assert (summary.processed, summary.written) == (8, 6)
    assert [q[0] for q in summary.quarantined] == ["us.dcm"]
    assert [f[0] for f in summary.failed] == ["notes.txt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir())[0] == "000001.dcm"
    assert verify_path(tmp_path / "out", basic) == []
    for path in (tmp_path / "out").iterdir():
        assert b"ZQX" not in path.read_bytes()


def test_verify_catches_planted_leaks(tmp_path: Path, basic: Profile) -> None:
    _write_inputs(tmp_path / "in")
    deid_folder(tmp_path / "in", tmp_path / "out", basic, _keys)
    target = tmp_path / "out" / "000001.dcm"
    ds = dcmread(target)
    ds.PatientName = "ZQXDOE^ZQXJOHN"
    ds.InstitutionName = "ZQXGENERAL"
    ds.AccessionNumber = "ACCQ4455"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.9999.1.2"
    ds.private_block(0x0029, "ZQX LEAK", create=True).add_new(0x10, "LO", "x")
    del ds.PatientIdentityRemoved
    ds.save_as(target)
    rules = {(v.path, v.rule) for v in verify_path(target, basic)}
    assert rules == {
        ("PatientName", "name-not-pseudonym"),
        ("InstitutionName", "removed-present"),
        ("AccessionNumber", "empty-not-empty"),
        ("SeriesInstanceUID", "uid-not-remapped"),
        ("(0029,0010)", "private-not-safe"),
        ("(0029,1010)", "private-not-safe"),
        ("PatientIdentityRemoved", "identity-not-removed"),
    }


def test_verify_flags_source_data(basic: Profile) -> None:
    rules = {v.rule for v in verify_dataset(ct_slice(0), basic)}
    assert {
        "removed-present",
        "uid-not-remapped",
        "private-not-safe",
        "identity-not-removed",
    } <= rules
