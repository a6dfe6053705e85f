"""Name header attributes by keyword or tag and read their values as plain Python values.

Every rules module reads headers through here, so keyword/tag spelling and multi-valued
attributes are handled the same way everywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag

_TAG_FORMS = (
    re.compile(r"^\(([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})\)$"),
    re.compile(r"^([0-9A-Fa-f]{4}),\s*([0-9A-Fa-f]{4})$"),
    re.compile(r"^([0-9A-Fa-f]{4})([0-9A-Fa-f]{4})$"),
)


@dataclass(frozen=True, slots=True)
class AttributeKey:
    """One header attribute, as written in a configuration.

    Parameters
    ----------
    tag
        The resolved DICOM tag.
    spelling
        How the configuration wrote it (for messages and dry-run explanations).
    """

    tag: BaseTag
    spelling: str

    @property
    def keyword(self) -> str:
        """Return the dictionary keyword, or the spelling for private/unknown tags."""
        return keyword_for_tag(self.tag) or self.spelling


def parse_attribute_key(text: object) -> AttributeKey:
    """Resolve a keyword (``Modality``) or tag (``(0008,0060)``, ``00080060``) to a key.

    Parameters
    ----------
    text
        The key as written in a configuration.

    Returns
    -------
    AttributeKey
        The resolved attribute.

    Raises
    ------
    ValueError
        If the text is neither a known keyword nor a tag. Callers wrap it in a ``RulesError``
        that names the rule.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"attribute key must be a keyword or tag, not {text!r}")
    spelling = text.strip()
    for form in _TAG_FORMS:
        found = form.match(spelling)
        if found:
            return AttributeKey(Tag(int(found.group(1) + found.group(2), 16)), spelling)
    tag = tag_for_keyword(spelling)
    if tag is None:
        raise ValueError(f"unknown DICOM keyword {spelling!r}")
    return AttributeKey(Tag(tag), spelling)


def _plain(value: object) -> object | None:
    """Turn one element value into a str/int/float, or None when it carries nothing."""
    if value is None:
        return None
    if isinstance(value, bytes):
        # Private tags read without a dictionary come back as bytes; padding is NUL or space.
        value = value.decode("latin-1").strip("\x00 ")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    return text or None


def values_of(header: Dataset, key: AttributeKey) -> list[object]:
    """Return the non-empty values of an attribute; an absent or empty one gives ``[]``.

    Multi-valued attributes (``ImageType``) give one entry per value. A sequence gives one entry
    per item (the item count is what ``exists`` needs; items are never compared as text).

    Parameters
    ----------
    header
        The instance header.
    key
        The attribute to read.

    Returns
    -------
    list of object
        Strings, ints or floats, in stored order.
    """
    element = header.get(key.tag)
    if element is None:
        return []
    value = element.value
    if isinstance(value, DicomSequence):
        return list(value)
    raw = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [v for v in (_plain(item) for item in raw) if v is not None]


def first_text(header: Dataset, keyword: str) -> str | None:
    """Return the first value of an attribute as text, or None when absent or empty.

    Parameters
    ----------
    header
        The instance header.
    keyword
        A dictionary keyword (programmer-supplied, so it is trusted).

    Returns
    -------
    str or None
        The value as text.
    """
    values = values_of(header, parse_attribute_key(keyword))
    return str(values[0]) if values else None
