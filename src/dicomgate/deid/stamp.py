"""Attributes a de-identifier adds: pseudonym, Patient Identity Removed, method and codes."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from dicomgate.deid.keys import DeidKeys
from dicomgate.deid.plan import Plan
from dicomgate.deid.profile import DateMode
from dicomgate.deid.report import Change, describe
from dicomgate.deid.table import (
    BASIC_PROFILE_CODE,
    CLEAN_PIXEL_DATA_CODE,
    OPTION_CODES,
    TABLE_EDITION,
)
from dicomgate.deid.values import new_element

METHOD_PREFIX = f"dicomgate PS3.15 {TABLE_EDITION} Table E.1-1"
_LONGITUDINAL = {
    DateMode.REMOVE: "REMOVED",
    DateMode.KEEP: "UNMODIFIED",
    DateMode.SHIFT: "MODIFIED",
}


def stamp_identity(ds: Dataset, keys: DeidKeys, changes: list[Change]) -> None:
    """Write the pseudonym to Patient's Name and Patient ID (both Type 2, always present)."""
    ds.PatientName = keys.patient_name
    ds.PatientID = keys.subject_id
    changes.append(describe("", 0x00100010, "P", "pseudonym"))
    changes.append(describe("", 0x00100020, "P", "pseudonym"))


def method_codes(plan: Plan, cleaned_pixels: bool) -> list[tuple[str, str]]:
    """Return the CID 7050 (code value, meaning) pairs describing what was done."""
    codes = [BASIC_PROFILE_CODE]
    if cleaned_pixels:
        codes.append(CLEAN_PIXEL_DATA_CODE)
    codes += [OPTION_CODES[o] for o in sorted(plan.profile.effective_options)]
    return codes


def stamp_method(ds: Dataset, plan: Plan, cleaned_pixels: bool) -> None:
    """Set Patient Identity Removed, De-identification Method (+ code sequence) and flags."""
    codes = method_codes(plan, cleaned_pixels)
    method = [METHOD_PREFIX, f"profile {plan.profile.name}"[:64]] + [m for _, m in codes[1:]]
    longitudinal = _LONGITUDINAL[plan.profile.dates]
    # Built as elements, not keyword by keyword: this runs once per instance.
    for tag, vr, value in (
        (0x00120062, "CS", "YES"),  # Patient Identity Removed
        (0x00120063, "LO", method),  # De-identification Method
        (0x00120064, "SQ", Sequence([_code_item(v, m) for v, m in codes])),
        (0x00280303, "CS", longitudinal),  # Longitudinal Temporal Information Modified
    ):
        ds[tag] = new_element(tag, vr, value)


def _code_item(value: str, meaning: str) -> Dataset:
    return Dataset(
        {
            BaseTag(0x00080100): new_element(0x00080100, "SH", value),  # Code Value
            BaseTag(0x00080102): new_element(0x00080102, "SH", "DCM"),  # Coding Scheme
            BaseTag(0x00080104): new_element(0x00080104, "LO", meaning),  # Code Meaning
        }
    )
