"""PS3.15 Table E.1-1 as data: load the vendored table and resolve options to actions.

The JSON copy lives in ``dicomgate/data/ps3.15`` (edition :data:`TABLE_EDITION`). Each row
has a Basic Profile action and, per option, an optional replacement action. When several
selected options touch one row, a ``K`` (retain) beats a ``C`` (clean), which beats the Basic
Profile action: the retain options exist precisely to keep what the basic profile removes.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

TABLE_EDITION = "2024b"
"""The PS3.15 edition of the vendored Table E.1-1; stamp it into job records."""

TABLE_FILE = "confidentiality_profile_attributes.json"


class Option(enum.StrEnum):
    """The options of the Basic Application Level Confidentiality Profile."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


OPTION_COLUMNS: Mapping[Option, str] = MappingProxyType(
    {
        Option.RETAIN_SAFE_PRIVATE: "rtnSafePrivOpt",
        Option.RETAIN_UIDS: "rtnUIDsOpt",
        Option.RETAIN_DEVICE_IDENTITY: "rtnDevIdOpt",
        Option.RETAIN_INSTITUTION_IDENTITY: "rtnInstIdOpt",
        Option.RETAIN_PATIENT_CHARACTERISTICS: "rtnPatCharsOpt",
        Option.RETAIN_LONGITUDINAL_FULL_DATES: "rtnLongFullDatesOpt",
        Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: "rtnLongModifDatesOpt",
        Option.CLEAN_DESCRIPTORS: "cleanDescOpt",
        Option.CLEAN_STRUCTURED_CONTENT: "cleanStructContOpt",
        Option.CLEAN_GRAPHICS: "cleanGraphOpt",
    }
)

# CID 7050 (PS3.16) code value and meaning for the profile and each option.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
OPTION_CODES: Mapping[Option, tuple[str, str]] = MappingProxyType(
    {
        Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
        Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
        Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
        Option.RETAIN_LONGITUDINAL_FULL_DATES: (
            "113106",
            "Retain Longitudinal Temporal Information Full Dates Option",
        ),
        Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
            "113107",
            "Retain Longitudinal Temporal Information Modified Dates Option",
        ),
        Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
        Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
        Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
        Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
        Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
    }
)

CURVE_ID = "50xxxxxx"
OVERLAY_DATA_ID = "60xx3000"
OVERLAY_COMMENTS_ID = "60xx4000"
PRIVATE_ID = "ggggeeee-where-gggg-is-odd"


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of Table E.1-1.

    Parameters
    ----------
    row_id
        The tag as eight lower-case hex digits, or a slug for the four pattern rows.
    name
        The attribute name as printed in the table.
    basic
        The Basic Profile action code (possibly combined, e.g. ``X/Z/D``).
    options
        Option column name -> replacement action code.
    """

    row_id: str
    name: str
    basic: str
    options: Mapping[str, str]

    @property
    def tag(self) -> int | None:
        """Return the tag as an int, or ``None`` for a pattern row."""
        try:
            return int(self.row_id, 16) if len(self.row_id) == 8 else None
        except ValueError:
            return None

    def action(self, options: Iterable[Option]) -> str:
        """Return this row's action code once ``options`` are applied (K > C > basic)."""
        codes = {self.options.get(OPTION_COLUMNS[opt]) for opt in options}
        if "K" in codes:
            return "K"
        if "C" in codes:
            return "C"
        return self.basic


@lru_cache(maxsize=1)
def load_rows() -> tuple[TableRow, ...]:
    """Load and parse the vendored Table E.1-1.

    Returns
    -------
    tuple of TableRow
        Every row, in file order.
    """
    text = resources.files("dicomgate").joinpath("data/ps3.15", TABLE_FILE).read_text("utf-8")
    columns = set(OPTION_COLUMNS.values())
    return tuple(
        TableRow(
            row_id=raw["id"],
            name=raw["name"].splitlines()[0],
            basic=raw["basicProfile"],
            options=MappingProxyType({k: v for k, v in raw.items() if k in columns}),
        )
        for raw in json.loads(text)
    )
