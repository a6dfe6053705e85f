"""Attributes a de-identifier adds: pseudonym, Patient Identity Removed, method and codes."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

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
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [METHOD_PREFIX, f"profile {plan.profile.name}"[:64]] + [
        meaning for _, meaning in codes[1:]
    ]
    ds.DeidentificationMethodCodeSequence = Sequence(_code_item(v, m) for v, m in codes)
    ds.LongitudinalTemporalInformationModified = _LONGITUDINAL[plan.profile.dates]


def _code_item(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item
