"""C-FIND identifiers from keys (levels, wildcards, ranges, UID lists, bad keys) and result rows."""

from __future__ import annotations

import copy
import warnings
from io import BytesIO
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataelem import RawDataElement
from pynetdicom.dsutils import decode, encode
from tests.conftest import PYDICOM_FILES

from dicomgate.dicom.query import (
    QueryLevel,
    _text,
    build_identifier,
    level_of,
    result_dict,
    result_keywords,
)
from dicomgate.errors import InvalidInputError


def test_identifier_carries_keys_and_return_keys() -> None:
    ds = build_identifier(
        QueryLevel.SERIES,
        {"StudyInstanceUID": ["1.2.3", "1.2.4"], "Modality": "CT"},
        ["BodyPartExamined"],
    )
    assert ds.QueryRetrieveLevel == "SERIES"
    assert list(ds.StudyInstanceUID) == ["1.2.3", "1.2.4"]
    assert ds.Modality == "CT"
    assert ds.BodyPartExamined == "" and ds.SeriesInstanceUID == ""


def test_an_identifier_without_the_default_keys_asks_only_what_is_named() -> None:
    keys = {"StudyInstanceUID": "1.2.3"}
    ds = build_identifier(QueryLevel.IMAGE, keys, ["SOPInstanceUID"], defaults=False)
    assert {e.keyword for e in ds} == {"QueryRetrieveLevel", "StudyInstanceUID", "SOPInstanceUID"}
    columns = result_keywords(QueryLevel.IMAGE, keys, ["SOPInstanceUID"], defaults=False)
    assert columns == ["StudyInstanceUID", "SOPInstanceUID"]


def test_a_retrieve_can_ask_for_500_instances_by_uid() -> None:
    # As a retry or a part of a series does: 500 UIDs of 64 characters, one element of 32 KB,
    # more than one matching value may hold but well inside an explicit VR element.
    uids = [f"1.2.826.0.1.3680043.8.498.{n:038d}" for n in range(500)]
    assert all(len(uid) == 64 for uid in uids)
    ds = build_identifier(QueryLevel.IMAGE, {"StudyInstanceUID": "1.2", "SOPInstanceUID": uids})
    assert list(ds.SOPInstanceUID) == uids
    assert encode(ds, False, True) is not None  # explicit VR little endian: 2-byte lengths


def test_study_level_modality_is_modalities_in_study() -> None:
    ds = build_identifier(QueryLevel.STUDY, {"Modality": "MR", "StudyDate": "20240101-"})
    assert ds.ModalitiesInStudy == "MR" and "Modality" not in ds
    assert ds.StudyDate == "20240101-"
    assert "ModalitiesInStudy" in result_keywords(QueryLevel.STUDY, {"Modality": "MR"}, [])


@pytest.mark.parametrize("name", ["instance", "Image", " study "])
def test_levels(name: str) -> None:
    assert level_of(name) in (QueryLevel.IMAGE, QueryLevel.STUDY)


@pytest.mark.parametrize(
    ("keys", "returns", "message"),
    [
        ({"PatientIdd": "x"}, [], "PatientIdd"),
        ({"PatientID": "a\nb"}, [], "PatientID"),
        ({"PatientID": "x" * 2000}, [], "PatientID"),
        ({"PatientID": ["x", "y" * 2000]}, [], "PatientID"),
        ({"SOPInstanceUID": ["1.2.3." + "4" * 58] * 1100}, [], "SOPInstanceUID"),
        ({}, ["ReferencedSeriesSequence"], "sequence"),
        ({}, ["NoSuchKeyword"], "NoSuchKeyword"),
    ],
)
def test_bad_keys_are_named(keys: dict[str, str], returns: list[str], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build_identifier(QueryLevel.STUDY, keys, returns)


def test_unknown_level() -> None:
    with pytest.raises(InvalidInputError, match="FRAME"):
        level_of("FRAME")


def _pydicom_row(identifier: Dataset, keywords: list[str]) -> dict[str, str]:
    """The row as pydicom's converted values give it (result_dict before its raw fast path)."""
    converted = copy.deepcopy(identifier)
    for element in converted:  # iterating converts every raw element
        assert not isinstance(element, RawDataElement)
    return {keyword: _text(converted.get(keyword)) for keyword in keywords}


def _decoded(identifier: Dataset, implicit: bool) -> Dataset:
    encoded = encode(identifier, implicit, True)
    assert encoded is not None
    decoded = decode(BytesIO(encoded), implicit, True, False)
    assert isinstance(decoded._dict[0x00100010], RawDataElement)  # raw until converted
    return decoded


@pytest.mark.parametrize("implicit", [True, False])
def test_result_rows_read_raw_agree_with_pydicom(implicit: bool) -> None:
    identifier = Dataset()
    identifier.SpecificCharacterSet = "ISO_IR 100"
    identifier.PatientName = "Müller^Jürgen"  # not ASCII: pydicom's path
    identifier.PatientID = "ID 7"
    identifier.StudyInstanceUID = "1.2.840.10008.5"  # odd length: a NUL pads it
    identifier.ModalitiesInStudy = ["CT", "MR"]  # multi-valued: pydicom's path
    identifier.StudyDate = "20240131"
    identifier.NumberOfStudyRelatedInstances = "12"
    identifier.AccessionNumber = ""
    identifier.StudyDescription = "Head  "  # padding pydicom strips
    keywords = [
        "PatientName", "PatientID", "StudyInstanceUID", "ModalitiesInStudy", "StudyDate",
        "NumberOfStudyRelatedInstances", "AccessionNumber", "StudyDescription", "StudyTime",
        "NotAKeyword",
    ]  # fmt: skip
    decoded = _decoded(identifier, implicit)
    row = result_dict(decoded, keywords)
    assert row == _pydicom_row(decoded, keywords)
    assert row["ModalitiesInStudy"] == "CT\\MR" and row["PatientName"] == "Müller^Jürgen"
    assert row["StudyInstanceUID"] == "1.2.840.10008.5" and row["StudyTime"] == ""


def _readable(path: Path) -> bool:
    try:
        dcmread(path, stop_before_pixels=True)
    except Exception:
        return False  # pydicom's deliberately broken samples
    return True


@pytest.mark.parametrize(
    "path", [p for p in sorted(PYDICOM_FILES.glob("*.dcm")) if _readable(p)], ids=lambda p: p.name
)
def test_result_rows_of_real_headers_agree_with_pydicom(path: Path) -> None:
    header = dcmread(path, stop_before_pixels=True)
    keywords = [element.keyword for element in header if element.keyword]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = _pydicom_row(header, keywords)
        assert result_dict(dcmread(path, stop_before_pixels=True), keywords) == expected
