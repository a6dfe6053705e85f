"""Value helpers shared by the engine and the verifier: VRs, strings, dummies, new elements."""

from __future__ import annotations

from typing import Any

from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

AnyElement = DataElement | RawDataElement

TEXT_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT", "UR"})
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT"})

DUMMIES: dict[str, Any] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UR": "urn:anonymized",
}


def vr_of(tag: int, elem: AnyElement) -> str:
    """Return the VR to act on: the dictionary VR when the tag is known, else the file's.

    The dictionary wins because files in the wild carry wrong explicit VRs (a date as LO);
    acting on the standard VR both cleans the value and repairs the encoding.
    """
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = elem.VR or "UN"
    return str(vr).split(" or ")[0]


def strings(elem: AnyElement) -> list[str]:
    """Return the element's values as strings without pydicom's (validating) conversion."""
    value = elem.value
    if value is None or isinstance(value, Sequence):
        return []
    if isinstance(elem, RawDataElement) or isinstance(value, bytes | bytearray):
        text = bytes(value).decode("latin-1").rstrip("\x00 ").lstrip(" ")
        return text.split("\\") if text else []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    text = str(value)
    return [text] if text else []


def dummy(vr: str) -> Any:
    """Return a non-empty dummy value valid for ``vr`` (``D`` action)."""
    if vr in NUMBER_VRS:
        return 0.0 if vr in ("FL", "FD") else 0
    if vr in BINARY_VRS:
        return b"\x00\x00"
    return DUMMIES.get(vr, "ANONYMIZED")


def new_element(tag: int, vr: str, value: Any) -> DataElement:
    """Build an element without validation warnings (junk inputs must never stop the run)."""
    if value is None:
        value = Sequence() if vr == "SQ" else empty_value_for_VR(vr)
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def joined(values: list[str]) -> str:
    """Join string values into one multi-valued DICOM string."""
    return "\\".join(values)


def raw_text(tag: int, vr: str, text: str, encoding: tuple[bool | None, bool | None]) -> AnyElement:
    """Return an ASCII text value as an undecoded element (cheap to build and to write).

    The element is decoded lazily by pydicom if anything reads it; text bytes are the same in
    every transfer syntax. Non-ASCII text (or a SQ) gets a decoded element instead.
    """
    if vr == "SQ" or not text.isascii():
        return new_element(tag, vr, text or None)
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    implicit, little = encoding
    return RawDataElement(BaseTag(tag), vr, len(data), data, 0, bool(implicit), little is not False)
