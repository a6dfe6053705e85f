"""Required headers: UID syntax and configured attributes."""

from __future__ import annotations

import pytest
from pydicom import config
from pydicom.dataelem import DataElement

from dicomgate.intake.reasons import ReasonCode
from dicomgate.rules import RequiredHeaders, RulesError
from dicomgate.rules.required import check_required, is_valid_uid

from .rt_builders import make_header


@pytest.mark.parametrize(
    "uid", ["1.2.840.10008.5.1.4.1.1.2", "0", "2.25.0", "1.0.3", "1." + "2" * 62]
)
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1.2.03",
        "01.2",
        "1..2",
        "1.2.",
        ".1.2",
        "1.2.a",
        "1.2 3",
        "1." + "2" * 63,
        None,
        12345,
    ],
)
def test_invalid_uids(uid: object) -> None:
    assert not is_valid_uid(uid)


def test_good_header_has_no_problems() -> None:
    assert check_required([make_header()]) == []


def raw_uid(keyword_tag: int, value: str) -> DataElement:
    # pydicom warns when a bad UID is assigned; peers send them anyway, so build it raw.
    return DataElement(keyword_tag, "UI", value, validation_mode=config.IGNORE)


def test_bad_and_missing_uids_are_reported_per_attribute() -> None:
    bad = make_header()
    bad["StudyInstanceUID"] = raw_uid(0x0020000D, "1.2.03.4")
    missing = make_header(SeriesInstanceUID=None)
    empty = make_header()
    empty["SOPClassUID"] = raw_uid(0x00080016, "")
    reasons = check_required([bad, missing, empty, make_header()])
    summary = {(r.details["attribute"], r.details["problem"]): r for r in reasons}
    assert set(summary) == {
        ("StudyInstanceUID", "invalid_uid"),
        ("SeriesInstanceUID", "missing"),
        ("SOPClassUID", "missing"),
    }
    assert all(r.code is ReasonCode.MISSING_REQUIRED_HEADER for r in reasons)
    study = summary[("StudyInstanceUID", "invalid_uid")]
    assert study.details["instances"] == [str(bad.SOPInstanceUID)]
    assert study.message == "StudyInstanceUID is not a valid UID in 1 instance(s)"


def test_instance_without_valid_sop_instance_uid_is_named_by_position() -> None:
    header = make_header(SOPInstanceUID=None)
    (reason,) = check_required([make_header(), header])
    assert reason.details == {
        "attribute": "SOPInstanceUID",
        "problem": "missing",
        "instances": ["#1"],
    }


def test_configured_attributes_must_be_present_and_non_empty() -> None:
    required = RequiredHeaders.from_config(["PatientID", "(0008,0050)", "StudyDate"])
    header = make_header(AccessionNumber="", StudyDate="20240101")
    reasons = check_required(
        [header, make_header(AccessionNumber="A1", StudyDate="20240101")], required
    )
    assert [(r.details["attribute"], r.details["instances"]) for r in reasons] == [
        ("AccessionNumber", [str(header.SOPInstanceUID)])
    ]


def test_unknown_required_attribute_is_refused_at_load() -> None:
    with pytest.raises(RulesError) as raised:
        RequiredHeaders.from_config(["PatientID", "PatientIdentifier"])
    assert str(raised.value).startswith("required_headers, key '[1]'")
