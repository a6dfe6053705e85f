"""Every condition operator, matching and not, through a one-rule protocol."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.rules import load_protocol

from .rt_builders import make_header

DEFAULT_ORIGIN = Origin(OriginKind.DIMSE, remote_ae="MR_SCANNER_1", called_ae="DICOMGATE")


def matches(when: dict[str, Any], header: Dataset, origin: Origin = DEFAULT_ORIGIN) -> bool:
    protocol = load_protocol({"rules": [{"name": "r", "when": when, "archive": "P"}]})
    return protocol.match(header, origin) is not None


@pytest.mark.parametrize(
    ("when", "attributes", "expected"),
    [
        ({"Modality": "MR"}, {}, True),
        ({"Modality": "CT"}, {}, False),
        ({"Modality": {"equals": "MR"}}, {}, True),
        ({"Modality": {"equals": "mr"}}, {}, False),
        ({"(0008,0060)": "MR"}, {}, True),
        ({"00080060": "MR"}, {}, True),
        ({"0008,0060": "CT"}, {}, False),
        ({"SeriesNumber": {"equals": 3}}, {"SeriesNumber": "3"}, True),
        ({"SeriesNumber": {"equals": 4}}, {"SeriesNumber": "3"}, False),
        ({"Modality": ["CT", "MR"]}, {}, True),
        ({"Modality": {"one_of": ["CT", "PT"]}}, {}, False),
        (
            {"StudyDescription": {"regex": "RESEARCH_[A-Z]+"}},
            {"StudyDescription": "RESEARCH_LUNG"},
            True,
        ),
        # full match: a prefix is not enough
        ({"StudyDescription": {"regex": "RESEARCH"}}, {"StudyDescription": "RESEARCH_LUNG"}, False),
        (
            {"StudyDescription": {"regex": "(?i)research.*"}},
            {"StudyDescription": "Research x"},
            True,
        ),
        ({"StudyDescription": {"regex": ".*"}}, {}, False),
        ({"AccessionNumber": {"exists": True}}, {"AccessionNumber": "A1"}, True),
        ({"AccessionNumber": {"exists": True}}, {"AccessionNumber": ""}, False),
        ({"AccessionNumber": {"missing": True}}, {"AccessionNumber": ""}, True),
        ({"AccessionNumber": {"missing": True}}, {}, True),
        ({"AccessionNumber": {"missing": True}}, {"AccessionNumber": "A1"}, False),
        ({"AccessionNumber": {"exists": False}}, {}, True),
        ({"MagneticFieldStrength": {"min": 1.5, "max": 3}}, {"MagneticFieldStrength": "1.5"}, True),
        ({"MagneticFieldStrength": {"min": 1.5, "max": 3}}, {"MagneticFieldStrength": "3.0"}, True),
        ({"MagneticFieldStrength": {"min": 1.5, "max": 3}}, {"MagneticFieldStrength": "7"}, False),
        ({"MagneticFieldStrength": {"min": 1.6}}, {"MagneticFieldStrength": "1.5"}, False),
        ({"MagneticFieldStrength": {"max": 1.5}}, {"MagneticFieldStrength": "1.5"}, True),
        ({"MagneticFieldStrength": {"min": 0}}, {}, False),
        (
            {"StudyDate": {"on_or_after": "20200101", "on_or_before": 20201231}},
            {"StudyDate": "20200101"},
            True,
        ),
        (
            {"StudyDate": {"on_or_after": "20200101", "on_or_before": 20201231}},
            {"StudyDate": "20201231"},
            True,
        ),
        (
            {"StudyDate": {"on_or_after": "20200101", "on_or_before": 20201231}},
            {"StudyDate": "20210101"},
            False,
        ),
        ({"StudyDate": {"on_or_after": "20200101"}}, {"StudyDate": "20191231"}, False),
        ({"StudyDate": {"on_or_before": "20200101"}}, {"StudyDate": "19991231"}, True),
        ({"StudyDate": {"on_or_after": "20200101"}}, {}, False),
    ],
)
def test_attribute_operators(
    when: dict[str, Any], attributes: dict[str, Any], expected: bool
) -> None:
    assert matches(when, make_header(**attributes)) is expected


def test_invalid_header_date_never_matches_a_date_range() -> None:
    header = make_header()
    header["StudyDate"] = DataElement(0x00080020, "DA", "20201340", validation_mode=config.IGNORE)
    assert not matches({"StudyDate": {"on_or_after": "20200101"}}, header)
    assert not matches({"StudyDate": {"on_or_before": "20991231"}}, header)


def test_yaml_dates_are_accepted_as_bounds() -> None:
    protocol = load_protocol(
        "rules:\n  - when: {StudyDate: {on_or_after: 2020-01-01}}\n    archive: P\n"
    )
    assert protocol.match(make_header(StudyDate="20200102"), DEFAULT_ORIGIN) is not None
    assert protocol.match(make_header(StudyDate="20191231"), DEFAULT_ORIGIN) is None


@pytest.mark.parametrize(
    ("test", "expected"),
    [
        ({"equals": "DERIVED"}, True),
        ({"one_of": ["MPR", "LOCALIZER"]}, True),
        ({"regex": "SEC.*"}, True),
        ({"equals": "PRIMARY"}, False),
        ({"regex": "ORIG.*"}, False),
    ],
)
def test_multi_valued_attribute_matches_when_any_value_does(
    test: dict[str, Any], expected: bool
) -> None:
    header = make_header(ImageType=["DERIVED", "SECONDARY", "MPR"])
    assert matches({"ImageType": test}, header) is expected


def test_numeric_range_on_multi_valued_attribute() -> None:
    header = make_header(PixelSpacing=[0.5, 4.0])
    assert matches({"PixelSpacing": {"min": 3}}, header)
    assert not matches({"PixelSpacing": {"min": 5}}, header)


@pytest.mark.parametrize(
    ("when", "origin", "expected"),
    [
        ({"calling_ae": "MR_SCANNER_1"}, DEFAULT_ORIGIN, True),
        ({"calling_ae": "CT_SCANNER_1"}, DEFAULT_ORIGIN, False),
        ({"calling_ae": {"regex": "MR_.*"}}, DEFAULT_ORIGIN, True),
        (
            {"calling_ae": "MR_SCANNER_1"},
            Origin(OriginKind.DIMSE, remote_ae="MR_SCANNER_1  "),
            True,
        ),
        ({"called_ae": ["DICOMGATE", "RESEARCH"]}, DEFAULT_ORIGIN, True),
        ({"called_ae": "RESEARCH"}, DEFAULT_ORIGIN, False),
        ({"user": "alice"}, Origin(OriginKind.UPLOAD, user="alice"), True),
        ({"user": {"missing": True}}, DEFAULT_ORIGIN, True),
        ({"user": {"exists": True}}, DEFAULT_ORIGIN, False),
        ({"source": "dimse"}, DEFAULT_ORIGIN, True),
        ({"source": ["folder", "upload"]}, DEFAULT_ORIGIN, False),
        (
            {"import_folder": {"under": "/data/cds"}},
            Origin(OriginKind.FOLDER, import_path="/data/cds/p1/a.dcm"),
            True,
        ),
        (
            {"import_folder": {"under": "/data/cds"}},
            Origin(OriginKind.FOLDER, import_path="/data/cds"),
            True,
        ),
        # a prefix is compared on whole components: /data/cds2 is not inside /data/cds
        (
            {"import_folder": {"under": "/data/cds"}},
            Origin(OriginKind.FOLDER, import_path="/data/cds2/a.dcm"),
            False,
        ),
        ({"import_folder": {"under": "/data/cds"}}, DEFAULT_ORIGIN, False),
    ],
)
def test_origin_conditions(when: dict[str, Any], origin: Origin, expected: bool) -> None:
    assert matches({"origin": when}, make_header(), origin) is expected


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"all": [{"Modality": "MR"}, {"origin": {"calling_ae": "MR_SCANNER_1"}}]}, True),
        ({"all": [{"Modality": "MR"}, {"origin": {"calling_ae": "OTHER"}}]}, False),
        ({"any": [{"Modality": "CT"}, {"PatientID": "P0001"}]}, True),
        ({"any": [{"Modality": "CT"}, {"PatientID": "nope"}]}, False),
        ({"not": {"Modality": "CT"}}, True),
        ({"not": {"Modality": "MR"}}, False),
        # several keys in one node are combined with AND
        ({"Modality": "MR", "PatientID": "P0001"}, True),
        ({"Modality": "MR", "PatientID": "nope"}, False),
        (
            {
                "all": [
                    {"any": [{"Modality": "CT"}, {"not": {"Modality": {"one_of": ["PT", "NM"]}}}]},
                    {
                        "not": {
                            "any": [
                                {"StationName": {"exists": True}},
                                {"origin": {"source": "folder"}},
                            ]
                        }
                    },
                ]
            },
            True,
        ),
        (
            {
                "all": [
                    {"any": [{"Modality": "CT"}, {"not": {"Modality": {"one_of": ["MR", "NM"]}}}]},
                    {"not": {"StationName": {"exists": True}}},
                ]
            },
            False,
        ),
    ],
)
def test_nested_combinators(when: dict[str, Any], expected: bool) -> None:
    assert matches(when, make_header()) is expected
