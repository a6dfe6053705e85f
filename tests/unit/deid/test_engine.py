from __future__ import annotations

from collections.abc import Callable

import pytest
from deid_builders import SECRET_A, SECRET_B, ct_slice, item, roundtrip, to_bytes
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage

from dicomgate.deid import DeidKeys, Profile, apply, remap_uid
from dicomgate.deid.table import TABLE_EDITION


def _deid(ds: Dataset, profile: Profile, keys: DeidKeys) -> Dataset:
    result = apply(ds, profile, keys)
    assert result.dataset is not None
    return result.dataset


def test_apply_does_not_modify_the_source(basic: Profile, keys: DeidKeys) -> None:
    ds = ct_slice(0)
    before = to_bytes(ds)
    _deid(ds, basic, keys)
    assert to_bytes(ds) == before


def test_identity_replaced_and_method_stamped(basic: Profile, keys: DeidKeys) -> None:
    out = _deid(ct_slice(0), basic, keys)
    assert (str(out.PatientName), out.PatientID) == ("SUBJ-0001", "SUBJ-0001")
    assert out.PatientIdentityRemoved == "YES"
    assert TABLE_EDITION in out.DeidentificationMethod[0]
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100"]
    assert out.DeidentificationMethodCodeSequence[0].CodingSchemeDesignator == "DCM"


def test_options_are_listed_in_method_and_codes(
    make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    out = _deid(ct_slice(0), make_profile(options=["retain_uids"], dates="shift"), keys)
    codes = {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107", "113110"}
    assert "Retain UIDs Option" in out.DeidentificationMethod


def test_uids_remapped_consistently_including_sequences_and_meta(
    basic: Profile, keys: DeidKeys
) -> None:
    src = ct_slice(0)
    out = _deid(src, basic, keys)
    assert out.SOPInstanceUID == remap_uid(SECRET_A, src.SOPInstanceUID)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == remap_uid(
        SECRET_A, f"{src.ReferencedImageSequence[0].ReferencedSOPInstanceUID}"
    )
    assert ref.ReferencedSOPClassUID == CTImageStorage
    assert out.SOPClassUID == CTImageStorage
    assert len(out.SOPInstanceUID) <= 64 and out.SOPInstanceUID.startswith("2.25.")


def test_same_uid_differs_between_projects(basic: Profile) -> None:
    a = _deid(ct_slice(0), basic, DeidKeys(SECRET_A, "S1"))
    b = _deid(ct_slice(0), basic, DeidKeys(SECRET_B, "S1"))
    again = _deid(ct_slice(0), basic, DeidKeys(SECRET_A, "S1"))
    assert a.StudyInstanceUID != b.StudyInstanceUID
    assert a.StudyInstanceUID == again.StudyInstanceUID


def _private_safe(ds: Dataset) -> None:
    ds.private_block(0x0019, "SIEMENS MR HEADER", create=True).add_new(0x0C, "IS", "1000")


def _safe_value(ds: Dataset) -> object:
    try:
        return ds.private_block(0x0019, "SIEMENS MR HEADER")[0x0C].value
    except KeyError:
        return False


def _overlay(ds: Dataset) -> None:
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)
    ds.add_new(0x60000010, "US", 4)


def _content(ds: Dataset) -> None:
    ds.ContentSequence = Sequence([item(ValueType="TEXT", TextValue="fine")])


OPTION_CASES: list[
    tuple[str, dict[str, object], Callable[[Dataset], None], Callable[[Dataset], object]]
] = [
    (
        "retain_safe_private",
        {"options": ["retain_safe_private"]},
        _private_safe,
        _safe_value,
    ),
    ("retain_uids", {"options": ["retain_uids"]}, lambda d: None, lambda d: d.SOPInstanceUID),
    (
        "retain_device_identity",
        {"options": ["retain_device_identity"]},
        lambda d: None,
        lambda d: d.DeviceSerialNumber,
    ),
    (
        "retain_institution_identity",
        {"options": ["retain_institution_identity"]},
        lambda d: None,
        lambda d: d.get("InstitutionName"),
    ),
    (
        "retain_patient_characteristics",
        {"options": ["retain_patient_characteristics"]},
        lambda d: None,
        lambda d: d.PatientSex,
    ),
    ("retain_longitudinal_full_dates", {"dates": "keep"}, lambda d: None, lambda d: d.StudyDate),
    (
        "retain_longitudinal_modified_dates",
        {"dates": "shift"},
        lambda d: None,
        lambda d: d.StudyDate,
    ),
    (
        "clean_descriptors",
        {"options": ["clean_descriptors"]},
        lambda d: None,
        lambda d: d.get("StudyDescription"),
    ),
    (
        "clean_structured_content",
        {"options": ["clean_structured_content"]},
        _content,
        lambda d: len(d.ContentSequence),
    ),
    ("clean_graphics", {"options": ["clean_graphics"]}, _overlay, lambda d: 0x60003000 in d),
]


@pytest.mark.parametrize(
    ("name", "mapping", "setup", "probe"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES]
)
def test_each_option_changes_its_attributes(
    name: str,
    mapping: dict[str, object],
    setup: Callable[[Dataset], None],
    probe: Callable[[Dataset], object],
    make_profile: Callable[..., Profile],
    keys: DeidKeys,
) -> None:
    src = ct_slice(0)
    setup(src)
    without = probe(_deid(src, make_profile(), keys))
    with_option = probe(_deid(src, make_profile(**mapping), keys))
    expected = {
        "retain_safe_private": (False, 1000),
        "retain_uids": (remap_uid(SECRET_A, src.SOPInstanceUID), src.SOPInstanceUID),
        "retain_device_identity": ("ANONYMIZED", "SNQ998877"),
        "retain_institution_identity": (None, "ZQXGENERAL HOSPITAL"),
        "retain_patient_characteristics": ("", "M"),
        "retain_longitudinal_full_dates": ("", "20240312"),
        "retain_longitudinal_modified_dates": ("", "20240302"),
        "clean_descriptors": (None, "CT follow-up"),
        "clean_structured_content": (0, 1),
        "clean_graphics": (False, True),
    }[name]
    assert (without, with_option) == expected


def test_shift_moves_da_and_dt_but_not_tm(
    make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    out = _deid(ct_slice(0), make_profile(dates="shift"), keys)
    assert out.StudyDate == "20240302"
    assert out.AcquisitionDateTime == "20240302101500"
    assert out.StudyTime == "101500"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("remove", ""),
        ("keep", "19600215"),
        ("first_day_of_year", "19600101"),
        ("shift", "19600205"),
    ],
)
def test_birth_date_rules(
    rule: str, expected: str, make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    out = _deid(ct_slice(0), make_profile(birth_date=rule), keys)
    assert out.PatientBirthDate == expected


@pytest.mark.parametrize("junk", [b"2020", b"20201301", b"", b"yesterday", b"2024-03-12"])
def test_malformed_dates_are_emptied_and_reported(
    junk: bytes, make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    src = ct_slice(0)
    src[0x00080020] = RawDataElement(Tag(0x00080020), "DA", len(junk), junk, 0, False, True)
    src[0x00080021] = RawDataElement(Tag(0x00080021), "LO", 8, b"junkdate", 0, False, True)
    result = apply(src, make_profile(dates="shift", birth_date="first_day_of_year"), keys)
    assert result.dataset is not None
    assert result.dataset.StudyDate == ""
    assert any(c.path == "SeriesDate" and "unparseable" in c.note for c in result.changes)
    roundtrip(result.dataset)


def test_junk_in_uid_and_wrong_vr_do_not_crash(basic: Profile, keys: DeidKeys) -> None:
    src = ct_slice(0)
    src[0x00080018] = RawDataElement(Tag(0x00080018), "UI", 10, b"not a uid!", 0, False, True)
    src[0x0020000D] = RawDataElement(Tag(0x0020000D), "LO", 6, b"abc^^ ", 0, False, True)
    out = _deid(src, basic, keys)
    assert out.SOPInstanceUID == remap_uid(SECRET_A, "not a uid!")
    assert out.StudyInstanceUID.startswith("2.25.")
    roundtrip(out)


def test_running_twice_is_safe(basic: Profile, keys: DeidKeys) -> None:
    once = _deid(ct_slice(0), basic, keys)
    twice = _deid(roundtrip(once), basic, keys)
    assert twice.PatientIdentityRemoved == "YES"
    assert twice.SOPInstanceUID == remap_uid(SECRET_A, once.SOPInstanceUID)
    assert len(twice.DeidentificationMethodCodeSequence) == 1


def test_private_removed_but_safe_list_kept_with_its_creator(
    make_profile: Callable[..., Profile], keys: DeidKeys
) -> None:
    src = ct_slice(0)
    _private_safe(src)
    out = _deid(src, make_profile(options=["retain_safe_private"]), keys)
    assert out[0x00190011].value == "SIEMENS MR HEADER"
    assert out[0x0019110C].value == "1000"
    assert 0x00190010 not in out and 0x00191010 not in out  # the unsafe "ZQX PRIVATE" block


def test_curve_and_overlay_groups_removed(basic: Profile, keys: DeidKeys) -> None:
    src = ct_slice(0)
    _overlay(src)
    src.add_new(0x50000010, "US", 1)
    src.add_new(0x60004000, "LT", "comment")
    out = _deid(src, basic, keys)
    assert not any(0x5000 <= (e.tag >> 16) <= 0x60FF for e in out)


def test_overrides_win_over_the_table(make_profile: Callable[..., Profile], keys: DeidKeys) -> None:
    out = _deid(
        ct_slice(0), make_profile(overrides={"StudyDescription": "K", "Modality": "X"}), keys
    )
    assert out.StudyDescription == "CT ZQXDOE follow-up"
    assert "Modality" not in out


def test_change_report_names_tags_without_values(basic: Profile, keys: DeidKeys) -> None:
    result = apply(ct_slice(0), basic, keys)
    paths = {c.path: c.action for c in result.changes}
    assert paths["InstitutionName"] == "X"
    assert paths["ReferencedImageSequence[0].ReferencedSOPInstanceUID"] == "U"
    assert not any("ZQX" in c.note for c in result.changes)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "rtstruct.dcm",
        "rtplan.dcm",
        "rtdose.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "reportsi.dcm",
        "examples_overlay.dcm",
        "nested_priv_SQ.dcm",
        "no_meta.dcm",
    ],
)
def test_pydicom_test_files(name: str, basic: Profile, keys: DeidKeys) -> None:
    src = dcmread(str(get_testdata_file(name)), force=True)
    names = [
        str(v).encode()
        for v in (src.get("PatientName"), src.get("PatientID"))
        if v and len(str(v)) > 3
    ]
    out = _deid(src, basic, keys)
    data = to_bytes(out) if "SOPClassUID" in out else b""
    assert not any(n in data for n in names)
    assert out.PatientIdentityRemoved == "YES"
