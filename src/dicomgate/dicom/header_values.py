"""Attribute values of a parsed header as text, read from the raw element where that is exact.

pydicom converts an element on first access: it looks the keyword up, works out the VR and
character set, decodes, validates and wraps the value. For the two dozen attributes intake
indexes per instance that cost about a fifth of the receiver's CPU. Most of those values are
plain ASCII text; for those the raw bytes, decoded and stripped as pydicom strips them, are
the value. Anything else (binary VRs, a value with a backslash, bytes outside printable ASCII
such as another character set's or an ISO 2022 escape) goes through pydicom as before.
``tests/unit/dicom/test_header_values.py`` checks both paths agree on real files.
"""

from __future__ import annotations

import functools
import re
from typing import Any, cast

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement

# VRs whose value is text; pydicom strips trailing NULs and spaces from each of them.
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
)
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII, no backslash (multi-value)


@functools.cache
def tag_of(keyword: str) -> int:
    """Return the tag of a dictionary keyword (KeyError for an unknown one)."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"unknown DICOM keyword {keyword}")
    return int(tag)


@functools.cache
def _dictionary_vr(tag: int) -> str:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return ""


def _element(header: Dataset, keyword: str) -> Any:
    """Return the element of ``keyword`` as the header holds it (raw until pydicom converts it)."""
    return cast(dict[int, Any], header._dict).get(tag_of(keyword))


def plain_text(element: Any) -> str | None:
    """Return a raw element's value when it is one plain ASCII text value, else None."""
    if not isinstance(element, RawDataElement) or element.value is None:
        return None
    vr = element.VR or _dictionary_vr(element.tag)
    raw = element.value
    if vr == "UI" and raw.endswith(b"\0"):
        raw = raw[:-1]  # the NUL that pads a UID of odd length (pydicom strips it too)
    if vr not in _TEXT_VRS or not _PLAIN.fullmatch(raw):
        return None
    text: str = raw.decode("ascii").rstrip("\0 ")
    return text


def raw_plain_text(header: Dataset, keyword: str) -> str | None:
    """Return the value of ``keyword`` when its raw element is one plain ASCII text, else None."""
    try:
        return plain_text(_element(header, keyword))
    except KeyError:  # not a dictionary keyword: the caller's pydicom path decides
        return None


def value_text(header: Dataset, keyword: str) -> str | None:
    """Return ``str(header.get(keyword))``, or None when the attribute is absent.

    An empty value is returned as ''. May raise what pydicom raises for a value it cannot
    convert (on the slow path only).
    """
    element = _element(header, keyword)
    if element is None:
        return None
    plain = plain_text(element)
    if plain is not None:
        return plain
    value = header.get(keyword)
    return None if value is None else str(value)


def us_value(header: Dataset, keyword: str) -> Any:
    """Return ``header.get(keyword)`` for a US attribute, unpacking a single raw value itself.

    A raw value of exactly two bytes is one unsigned short in the dataset's byte order; any
    other (absent, several values, already converted, a VR other than US) goes through pydicom.
    """
    element = _element(header, keyword)
    if (
        isinstance(element, RawDataElement)
        and element.value is not None
        and len(element.value) == 2
        and (element.VR or _dictionary_vr(element.tag)) == "US"
        and header.original_encoding[1] is not None
    ):
        return int.from_bytes(element.value, "little" if header.original_encoding[1] else "big")
    return header.get(keyword)


def uid_value(header: Dataset, keyword: str) -> str:
    """Return a UID attribute that ``intake.receive.check_uids`` found present and valid."""
    return value_text(header, keyword) or ""
