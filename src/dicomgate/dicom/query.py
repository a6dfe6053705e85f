"""Query identifiers for C-FIND / C-MOVE / C-GET, and results as plain dictionaries.

Keys are DICOM keywords; values are DICOM matching strings (``*``/``?`` wildcards, ``A-B``
date/time ranges) or lists (UID list matching, joined with backslashes). Results are typed
views: keyword -> string, never pydicom objects.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword

from dicomgate.dicom.header_values import raw_plain_text
from dicomgate.errors import InvalidInputError


class QueryLevel(enum.StrEnum):
    """The Query/Retrieve level."""

    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


DEFAULT_RETURN_KEYS: dict[QueryLevel, tuple[str, ...]] = {
    QueryLevel.PATIENT: (
        "PatientID",
        "PatientName",
        "PatientBirthDate",
        "PatientSex",
        "NumberOfPatientRelatedStudies",
    ),
    QueryLevel.STUDY: (
        "StudyInstanceUID",
        "PatientID",
        "PatientName",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "StudyDescription",
        "ModalitiesInStudy",
        "NumberOfStudyRelatedInstances",
    ),
    QueryLevel.SERIES: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
        "SeriesNumber",
        "SeriesDescription",
        "NumberOfSeriesRelatedInstances",
    ),
    QueryLevel.IMAGE: (
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "SOPClassUID",
        "InstanceNumber",
    ),
}

_MAX_VALUE = 1024  # one matching value
# The longest value a string element can hold in explicit VR (a 2-byte length): a list of UIDs
# (a retrieve asks for up to 500 SOP Instance UIDs at once) is bounded by that, not by one value.
_MAX_ELEMENT = 65_534


def level_of(value: str) -> QueryLevel:
    """Return the level named ``value`` (case-insensitive; INSTANCE means IMAGE)."""
    text = value.strip().upper()
    text = "IMAGE" if text == "INSTANCE" else text
    try:
        return QueryLevel(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"unknown query level {value!r}: PATIENT, STUDY, SERIES or IMAGE"
        ) from exc


def _check_keyword(keyword: str) -> None:
    if tag_for_keyword(keyword) is None:
        raise InvalidInputError(f"unknown DICOM keyword {keyword!r}")
    if dictionary_VR(keyword) == "SQ":
        raise InvalidInputError(f"sequence keys are not supported: {keyword}")


def _matching_value(keyword: str, value: Any) -> str:
    if value is None:
        return ""
    many = isinstance(value, list | tuple)
    items = [str(item).strip() for item in value] if many else [str(value)]
    text = "\\".join(items)
    too_long = len(text) > _MAX_ELEMENT or any(len(item) > _MAX_VALUE for item in items)
    if too_long or any(ord(c) < 0x20 for c in text):
        raise InvalidInputError(f"{keyword}: not a valid matching value")
    return text


def _defaults(level: QueryLevel, wanted: bool) -> tuple[str, ...]:
    return DEFAULT_RETURN_KEYS[level] if wanted else ()


def build_identifier(
    level: QueryLevel,
    keys: Mapping[str, Any],
    return_keys: Iterable[str] = (),
    defaults: bool = True,
) -> Dataset:
    """Return the C-FIND identifier for ``keys`` at ``level`` with ``return_keys`` requested.

    A ``Modality`` key at STUDY level is sent as ``ModalitiesInStudy`` (Modality is a series
    attribute that many PACS ignore at study level). ``defaults=False`` leaves out the
    level's ``DEFAULT_RETURN_KEYS``: a node may pay for every key asked (Orthanc reads each
    instance's file for an IMAGE-level ``SOPClassUID``).

    Raises
    ------
    InvalidInputError
        On an unknown keyword or a value no DICOM string can hold; the message names the key.
    """
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level.value
    for keyword in (*_defaults(level, defaults), *return_keys):
        _check_keyword(keyword)
        if keyword not in identifier:
            setattr(identifier, keyword, "" if dictionary_VR(keyword) != "IS" else None)
    for keyword, value in keys.items():
        name = keyword
        if level is QueryLevel.STUDY and keyword == "Modality":
            name = "ModalitiesInStudy"
        _check_keyword(name)
        setattr(identifier, name, _matching_value(name, value))
    return identifier


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(_text(item) for item in value)
    return str(value)


def result_dict(identifier: Dataset, keywords: Iterable[str]) -> dict[str, str]:
    """Return ``keywords`` of a C-FIND response identifier as strings ('' when absent).

    A plain ASCII value is taken from the raw element as it is (``header_values``); pydicom's
    conversion, which validates every UID with a regular expression, cost more than the
    rest of decoding a large find's responses.
    """
    row: dict[str, str] = {}
    for keyword in keywords:
        plain = raw_plain_text(identifier, keyword)
        if plain is not None:
            row[keyword] = plain
            continue
        element = identifier.get(keyword)
        row[keyword] = "" if element is None else _text(element)
    return row


def result_keywords(
    level: QueryLevel, keys: Mapping[str, Any], extra: Iterable[str], defaults: bool = True
) -> list[str]:
    """Return the ordered column names of a find result (as ``build_identifier`` asked)."""
    columns: list[str] = []
    for keyword in (*_defaults(level, defaults), *keys, *extra):
        study_modality = level is QueryLevel.STUDY and keyword == "Modality"
        name = "ModalitiesInStudy" if study_modality else keyword
        if name not in columns:
            columns.append(name)
    return columns
