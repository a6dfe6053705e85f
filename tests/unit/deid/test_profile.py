from __future__ import annotations

import json
from importlib import resources

import pytest

from dicomgate.deid import TABLE_EDITION, Option, ProfileError, load_profile
from dicomgate.deid.conformance import resolve_code
from dicomgate.deid.plan import compile_plan
from dicomgate.deid.table import load_rows


def test_vendored_table_is_2024b_with_every_row() -> None:
    assert TABLE_EDITION == "2024b"
    assert len(load_rows()) == 621


def test_safe_private_default_ships_as_data() -> None:
    text = resources.files("dicomgate").joinpath("data/ps3.15/safe_private_attributes.json")
    assert json.loads(text.read_text("utf-8"))["attributes"]
    assert load_profile({}).safe_private_set


def test_profile_loads_every_field() -> None:
    profile = load_profile(
        {
            "name": "study",
            "options": ["retain_safe_private", "clean_descriptors"],
            "dates": "shift",
            "birth_date": "first_day_of_year",
            "safe_private": ["0019,ACME,10"],
            "burned_in": {"allow": True, "modalities": ["US"]},
            "pixel_masks": [
                {
                    "manufacturer": "ACME",
                    "model": "E1",
                    "rows": 10,
                    "columns": 10,
                    "rectangles": [{"x": 0, "y": 0, "width": 10, "height": 2}],
                }
            ],
            "overrides": {"StudyDescription": "K", "(0008,103E)": "x"},
        }
    )
    assert Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in profile.effective_options
    assert dict(profile.overrides) == {0x00081030: "K", 0x0008103E: "X"}
    assert profile.safe_private_set == {(0x0019, "ACME", 0x10)}


@pytest.mark.parametrize(
    ("mapping", "key"),
    [
        ({"optoins": []}, "optoins"),
        ({"options": ["retain_everything"]}, "options"),
        ({"overrides": {"NotAKeyword": "X"}}, "overrides"),
        ({"overrides": {"PatientName": "Q"}}, "overrides"),
        ({"dates": "someday"}, "dates"),
        ({"options": ["retain_longitudinal_full_dates"], "dates": "shift"}, "options"),
        ({"safe_private": ["0018,ACME,10"]}, "safe_private"),
        (
            {
                "pixel_masks": [
                    {
                        "manufacturer": "A",
                        "model": "B",
                        "rows": 4,
                        "columns": 4,
                        "rectangles": [{"x": 2, "y": 0, "width": 4, "height": 1}],
                    }
                ]
            },
            "pixel_masks",
        ),
    ],
)
def test_invalid_profile_names_the_offending_key(mapping: dict[str, object], key: str) -> None:
    with pytest.raises(ProfileError, match=key):
        load_profile(mapping)


@pytest.mark.parametrize(
    ("keyword_tag", "code", "expected"),
    [
        (0x00080023, "Z/D", "D"),  # ContentDate: Type 1 in enhanced IODs
        (0x00180010, "Z/D", "Z"),  # ContrastBolusAgent: Type 2
        (0x00080022, "X/Z", "X"),  # AcquisitionDate: Type 3
        (0x300A00B2, "X/Z", "Z"),  # TreatmentMachineName: Type 2
        (0x00080021, "X/D", "X"),
        (0x00181000, "X/Z/D", "D"),
        (0x00081140, "X/Z/U*", "K"),
        (0x00100010, "Z", "Z"),
    ],
)
def test_combined_codes_resolve_by_documented_rule(
    keyword_tag: int, code: str, expected: str
) -> None:
    assert resolve_code(keyword_tag, code) == expected


def test_plan_is_compiled_once_per_profile() -> None:
    profile = load_profile({"options": ["retain_uids"]})
    assert compile_plan(profile) is compile_plan(load_profile({"options": ["retain_uids"]}))
    assert compile_plan(profile).exact[0x00080018] == "K"
