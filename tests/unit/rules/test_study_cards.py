"""Study cards: equipment matching, required cards, scan metadata assignment."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from dicomgate.intake.reasons import ReasonCode
from dicomgate.rules import StudyCardError, StudyCards, apply_cards, equipment_of, load_study_cards
from dicomgate.rules.study_cards import Equipment, check_equipment, match_card

from .rt_builders import make_header

CARDS = """
project: BRAIN_MR
required: true
cards:
  - name: prisma-3t
    match:
      Manufacturer: SIEMENS
      ManufacturerModelName: {regex: "Prisma(_fit)?"}
      MagneticFieldStrength: {value: 3.0, tolerance: 0.05}
    assign:
      - {regex: "(?i).*mprage.*", set: {scan_type: T1w}}
      - {regex: "(?i).*t1.*", set: {scan_type: T1_other, contrast: t1}}
      - {attribute: ProtocolName, regex: "DWI.*", set: {scan_type: DWI}}
  - name: station-7
    match:
      StationName: MRC7
      DeviceSerialNumber: {equals: "40123"}
"""


def prisma(**extra: object) -> Dataset:
    attributes: dict[str, object] = {
        "Manufacturer": "SIEMENS",
        "ManufacturerModelName": "Prisma_fit",
        "MagneticFieldStrength": "2.89",
        "DeviceSerialNumber": "166001",
        "StationName": "MRC3",
    }
    return make_header(**{**attributes, **extra})


@pytest.fixture
def cards() -> StudyCards:
    return load_study_cards(CARDS)


def test_equipment_is_extracted_from_a_header() -> None:
    assert equipment_of(prisma()) == Equipment("SIEMENS", "Prisma_fit", "166001", "MRC3", 2.89)
    assert equipment_of(make_header()) == Equipment()


@pytest.mark.parametrize(
    ("attributes", "card"),
    [
        ({}, None),  # 2.89 T is outside 3.0 +/- 0.05
        ({"MagneticFieldStrength": "2.95"}, "prisma-3t"),
        ({"MagneticFieldStrength": "3.05"}, "prisma-3t"),
        ({"MagneticFieldStrength": "3"}, "prisma-3t"),
        ({"MagneticFieldStrength": "3", "ManufacturerModelName": "Prisma_fit2"}, None),
        ({"MagneticFieldStrength": "3", "Manufacturer": "Siemens"}, None),
        ({"MagneticFieldStrength": None}, None),
        ({"StationName": "MRC7", "DeviceSerialNumber": "40123"}, "station-7"),
        ({"StationName": "MRC7", "DeviceSerialNumber": "40124"}, None),
    ],
)
def test_card_matching(cards: StudyCards, attributes: dict[str, object], card: str | None) -> None:
    matched = match_card(cards, equipment_of(prisma(**attributes)))
    assert (matched.name if matched else None) == card


def test_required_cards_flag_unknown_equipment(cards: StudyCards) -> None:
    good = prisma(MagneticFieldStrength="3")
    bad = prisma(ManufacturerModelName="Skyra")
    (reason,) = check_equipment(cards, [good, bad, bad])
    assert reason.code is ReasonCode.EQUIPMENT_NOT_COMPATIBLE
    assert reason.details["project"] == "BRAIN_MR"
    assert reason.details["equipment"] == [equipment_of(bad).to_json()]
    assert check_equipment(cards, [good]) == []


def test_optional_cards_never_hold_a_session_back(cards: StudyCards) -> None:
    optional = cards.model_copy(update={"required": False})
    assert check_equipment(optional, [prisma(ManufacturerModelName="Skyra")]) == []


def test_apply_cards_assigns_metadata_per_series(cards: StudyCards) -> None:
    t1 = prisma(
        MagneticFieldStrength="3", SeriesInstanceUID="1.2.1", SeriesDescription="t1_mprage_sag"
    )
    t1_again = prisma(MagneticFieldStrength="3", SeriesInstanceUID="1.2.1", SeriesDescription="x")
    t1_se = prisma(MagneticFieldStrength="3", SeriesInstanceUID="1.2.2", SeriesDescription="T1 SE")
    dwi = prisma(MagneticFieldStrength="3", SeriesInstanceUID="1.2.3", ProtocolName="DWI_b1000")
    other = prisma(SeriesInstanceUID="1.2.4", SeriesDescription="t1_mprage")
    result = apply_cards(cards, [t1, t1_again, t1_se, dwi, other])
    assert {uid: (a.card, dict(a.metadata)) for uid, a in result.items()} == {
        # per key, the first assignment that sets it wins: scan_type from the first, contrast later
        "1.2.1": ("prisma-3t", {"scan_type": "T1w", "contrast": "t1"}),
        "1.2.2": ("prisma-3t", {"scan_type": "T1_other", "contrast": "t1"}),
        "1.2.3": ("prisma-3t", {"scan_type": "DWI"}),
        "1.2.4": (None, {}),
    }


@pytest.mark.parametrize(
    ("source", "rule", "key", "fragment"),
    [
        ("project: bad id\ncards: []", None, "project", "should match pattern"),
        ("project: P\nrequired: true", None, None, "at least one card"),
        (
            "project: P\ncards: [{name: a, match: {Manufacturer: {regex: '('}}}]",
            "card 'a' (cards[0])",
            "match.Manufacturer.regex",
            "bad regular expression",
        ),
        (
            "project: P\ncards: [{name: a, match: {Colour: red}}]",
            "card 'a' (cards[0])",
            "match.Colour",
            "Input should be",
        ),
        ("project: P\ncards: [{name: a, match: {}}]", "card 'a' (cards[0])", "match", "at least 1"),
        (
            "project: P\ncards: [{name: a, match: {Manufacturer: {equals: X, regex: Y}}}]",
            "card 'a' (cards[0])",
            "match.Manufacturer",
            "exactly one",
        ),
        (
            "project: P\ncards: [{name: a, match: {Manufacturer: {equals: X, tolerance: 1}}}]",
            "card 'a' (cards[0])",
            "match.Manufacturer",
            "tolerance",
        ),
        (
            "project: P\ncards: [{name: a, match: {StationName: S},"
            " assign: [{attribute: Nope, regex: x, set: {a: b}}]}]",
            "card 'a' (cards[0])",
            "assign.0.attribute",
            "unknown DICOM keyword",
        ),
        ("project: P\ncards: [{match: {StationName: S}}]", "cards[0]", "name", "Field required"),
        (
            "project: P\ncards: [{name: a, match: {StationName: S}},"
            " {name: a, match: {StationName: T}}]",
            None,
            None,
            "unique",
        ),
        ("project: [", None, None, "not valid YAML"),
    ],
)
def test_malformed_cards_name_card_and_key(
    source: str, rule: str | None, key: str | None, fragment: str
) -> None:
    with pytest.raises(StudyCardError) as raised:
        load_study_cards(source)
    assert (raised.value.rule, raised.value.key) == (rule, key)
    assert fragment in str(raised.value)
