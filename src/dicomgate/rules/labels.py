"""Subject and session labels from headers: the configurable mapping conventions.

Conventions (``LabelMapping`` presets):

``dasher`` (default)
    Patient's Name -> subject, Patient ID -> session.
``patient_id_accession`` / ``patient_id_study_id`` / ``patient_id_study_date``
    Patient ID -> subject; Accession Number / Study ID / Study Date -> session.
``xnat_patient_comments`` / ``xnat_study_comments``
    ``Project: X Subject: Y Session: Z`` (keys case-insensitive; ``Project:X;Subject:Y;Session:Z``
    works too) parsed from Patient Comments / Study Comments. A value is one token (no spaces or
    ``;``). A key missing from the comments falls back to the ``dasher`` attributes. ``Labels``
    carries the project; routing by it is the prearchive's (``prearchive.checks``).

Every label is sanitised: only ``[A-Za-z0-9_-]`` survive (accents are dropped first, so ``Müller``
becomes ``Muller``), any other run of characters becomes one ``_``, ``_``/``-`` are trimmed from
both ends, the result is cut to ``max_length``, and an empty result becomes ``fallback``. So a label
can never contain a path separator or ``..``. The original header values are kept in ``Labels``.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydicom.dataset import Dataset

from dicomgate.rules.attributes import first_text
from dicomgate.rules.errors import LabelMappingError

MAX_LABEL_LENGTH = 64
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_UNDERSCORE_RUN = re.compile(r"_{2,}")
_XNAT_FIELD = re.compile(r"\b(project|subject|session)\s*:\s*([^;\s]+)", re.IGNORECASE)


class LabelSource(enum.StrEnum):
    """Header attributes a subject or session label may come from."""

    PATIENT_NAME = "PatientName"
    PATIENT_ID = "PatientID"
    ACCESSION_NUMBER = "AccessionNumber"
    STUDY_ID = "StudyID"
    STUDY_DATE = "StudyDate"


class CommentsAttribute(enum.StrEnum):
    """Comment attributes that may carry XNAT-style ``Project: Subject: Session:`` labels."""

    PATIENT_COMMENTS = "PatientComments"
    STUDY_COMMENTS = "StudyComments"


def sanitize_label(
    value: str | None, *, fallback: str = "UNKNOWN", max_length: int = MAX_LABEL_LENGTH
) -> str:
    """Make a header value safe to use as a label (and as one path component).

    Parameters
    ----------
    value
        The raw header value.
    fallback
        What an empty result becomes; it must itself be a valid label.
    max_length
        The longest label kept.

    Returns
    -------
    str
        A non-empty string of ``[A-Za-z0-9_-]``.
    """
    text = unicodedata.normalize("NFKD", value or "")
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _UNDERSCORE_RUN.sub("_", _INVALID_RUN.sub("_", text)).strip("_-")
    text = text[:max_length].strip("_-")
    return text or fallback


class LabelMapping(BaseModel):
    """How subject and session labels are read from a header.

    Parameters
    ----------
    subject
        Attribute for the subject label.
    session
        Attribute for the session label.
    comments
        When set, XNAT-style labels in this attribute win over ``subject``/``session``.
    fallback
        Label used when the source is absent or sanitises to nothing.
    max_length
        Longest label kept (1-64).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: LabelSource = LabelSource.PATIENT_NAME
    session: LabelSource = LabelSource.PATIENT_ID
    comments: CommentsAttribute | None = None
    fallback: str = "UNKNOWN"
    max_length: int = Field(default=MAX_LABEL_LENGTH, ge=1, le=MAX_LABEL_LENGTH)

    @field_validator("fallback")
    @classmethod
    def _fallback_is_a_label(cls, value: str) -> str:
        if not value or sanitize_label(value, fallback="") != value:
            raise ValueError("fallback must be a non-empty label of [A-Za-z0-9_-]")
        return value

    @model_validator(mode="after")
    def _fallback_fits(self) -> LabelMapping:
        if len(self.fallback) > self.max_length:
            raise ValueError("fallback is longer than max_length")
        return self


PRESETS: Mapping[str, LabelMapping] = {
    "dasher": LabelMapping(),
    "patient_id_accession": LabelMapping(
        subject=LabelSource.PATIENT_ID, session=LabelSource.ACCESSION_NUMBER
    ),
    "patient_id_study_id": LabelMapping(
        subject=LabelSource.PATIENT_ID, session=LabelSource.STUDY_ID
    ),
    "patient_id_study_date": LabelMapping(
        subject=LabelSource.PATIENT_ID, session=LabelSource.STUDY_DATE
    ),
    "xnat_patient_comments": LabelMapping(comments=CommentsAttribute.PATIENT_COMMENTS),
    "xnat_study_comments": LabelMapping(comments=CommentsAttribute.STUDY_COMMENTS),
}


def parse_label_mapping(
    value: object, *, rule: str | None = None, key: str = "labels"
) -> LabelMapping:
    """Validate a label mapping given as a preset name or a mapping of fields.

    Parameters
    ----------
    value
        A preset name (``"dasher"``) or a mapping like ``{"subject": "PatientID", ...}``.
    rule
        The rule the mapping belongs to, for error messages.
    key
        The key the mapping sits under, for error messages.

    Returns
    -------
    LabelMapping
        The validated mapping.

    Raises
    ------
    LabelMappingError
        Naming the rule and the offending key.
    """
    if isinstance(value, LabelMapping):
        return value
    if isinstance(value, str):
        if value not in PRESETS:
            known = ", ".join(PRESETS)
            raise LabelMappingError(
                f"unknown preset {value!r} (known: {known})", rule=rule, key=key
            )
        return PRESETS[value]
    if not isinstance(value, Mapping):
        raise LabelMappingError("must be a preset name or a mapping", rule=rule, key=key)
    try:
        return LabelMapping.model_validate(dict(value))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join([key, *(str(part) for part in error["loc"])])
        raise LabelMappingError(error["msg"], rule=rule, key=where) from exc


@dataclass(frozen=True, slots=True)
class Labels:
    """Sanitised labels with the header values they came from.

    Parameters
    ----------
    subject
        Sanitised subject label.
    session
        Sanitised session label.
    project
        Sanitised project named in XNAT-style comments, when there was one.
    original
        The raw values (``subject``, ``session``, ``project``); may contain PHI, never log them.
    sources
        Which attribute each label came from.
    """

    subject: str
    session: str
    project: str | None = None
    original: Mapping[str, str | None] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)


def parse_xnat_comments(text: str | None) -> dict[str, str]:
    """Read ``Project:``/``Subject:``/``Session:`` values from a comments string.

    Parameters
    ----------
    text
        The comments attribute value.

    Returns
    -------
    dict of str to str
        Lower-case keys present in the text; the first occurrence of each key wins.
    """
    found: dict[str, str] = {}
    for match in _XNAT_FIELD.finditer(text or ""):
        found.setdefault(match.group(1).lower(), match.group(2))
    return found


def labels_for(header: Dataset, mapping: LabelMapping | None = None) -> Labels:
    """Compute the subject and session labels of one header.

    Parameters
    ----------
    header
        The instance header.
    mapping
        The convention; ``dasher`` when omitted.

    Returns
    -------
    Labels
        Sanitised labels with their originals.
    """
    mapping = mapping or PRESETS["dasher"]
    comments = parse_xnat_comments(first_text(header, mapping.comments)) if mapping.comments else {}
    original: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for part, source in (("subject", mapping.subject), ("session", mapping.session)):
        if part in comments:
            original[part], sources[part] = comments[part], str(mapping.comments)
        else:
            original[part], sources[part] = first_text(header, source), source.value
    original["project"] = comments.get("project")
    clean = {
        part: sanitize_label(raw, fallback=mapping.fallback, max_length=mapping.max_length)
        for part, raw in original.items()
    }
    project = clean["project"] if original["project"] else None
    return Labels(clean["subject"], clean["session"], project, original, sources)
