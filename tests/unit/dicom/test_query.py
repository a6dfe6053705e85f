"""C-FIND identifiers from keys: levels, wildcards, ranges, UID lists, bad keys."""

from __future__ import annotations

import pytest

from dicomgate.dicom.query import QueryLevel, build_identifier, level_of, result_keywords
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
