"""The attributes QIDO-RS matches on and returns, each backed by an index column.

Nothing here reads a file: a query names attributes, each attribute names its column.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from dicomgate.archive.models import Instance, Series, Study


class Level(enum.IntEnum):
    """Query/retrieve levels, outermost first."""

    STUDY = 1
    SERIES = 2
    INSTANCE = 3


@dataclass(frozen=True, slots=True)
class Attribute:
    """One index-backed attribute: tag, VR, level and the column holding it (None: computed)."""

    keyword: str
    tag: int
    vr: str
    level: Level
    column: Any = None

    @property
    def key(self) -> str:
        """Return the DICOM JSON key (eight upper-case hex digits)."""
        return f"{self.tag:08X}"


def _a(keyword: str, vr: str, level: Level, column: Any = None) -> Attribute:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return Attribute(keyword, int(tag), vr, level, column)


S, SE, I = Level.STUDY, Level.SERIES, Level.INSTANCE  # noqa: E741
ATTRIBUTES: tuple[Attribute, ...] = (
    _a("StudyDate", "DA", S, Study.study_date),
    _a("StudyTime", "TM", S, Study.study_time),
    _a("AccessionNumber", "SH", S, Study.accession_number),
    _a("ModalitiesInStudy", "CS", S),
    _a("ReferringPhysicianName", "PN", S, Study.referring_physician_name),
    _a("PatientName", "PN", S, Study.patient_name),
    _a("PatientID", "LO", S, Study.patient_id),
    _a("PatientBirthDate", "DA", S, Study.patient_birth_date),
    _a("PatientSex", "CS", S, Study.patient_sex),
    _a("StudyInstanceUID", "UI", S, Study.study_uid),
    _a("StudyID", "SH", S, Study.study_id),
    _a("StudyDescription", "LO", S, Study.study_description),
    _a("NumberOfStudyRelatedSeries", "IS", S),
    _a("NumberOfStudyRelatedInstances", "IS", S),
    _a("Modality", "CS", SE, Series.modality),
    _a("SeriesInstanceUID", "UI", SE, Series.series_uid),
    _a("SeriesNumber", "IS", SE, Series.series_number),
    _a("SeriesDescription", "LO", SE, Series.series_description),
    _a("BodyPartExamined", "CS", SE, Series.body_part_examined),
    _a("SeriesDate", "DA", SE, Series.series_date),
    _a("SeriesTime", "TM", SE, Series.series_time),
    _a("NumberOfSeriesRelatedInstances", "IS", SE),
    _a("SOPClassUID", "UI", I, Instance.sop_class_uid),
    _a("SOPInstanceUID", "UI", I, Instance.sop_instance_uid),
    _a("InstanceNumber", "IS", I, Instance.instance_number),
    _a("Rows", "US", I, Instance.rows),
    _a("Columns", "US", I, Instance.columns),
    _a("NumberOfFrames", "IS", I, Instance.number_of_frames),
    _a("AvailableTransferSyntaxUID", "UI", I, Instance.transfer_syntax_uid),
)
BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
BY_TAG = {a.tag: a for a in ATTRIBUTES}

# Returned at each level without being asked for (PS3.18 Table 10.6.3-3..5, as indexed).
DEFAULT_RETURN: dict[Level, tuple[str, ...]] = {
    S: (
        "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy",
        "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyID", "StudyDescription", "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ),
    SE: (
        "StudyInstanceUID", "Modality", "SeriesInstanceUID", "SeriesNumber",
        "SeriesDescription", "BodyPartExamined", "NumberOfSeriesRelatedInstances",
    ),
    I: (
        "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID",
        "InstanceNumber", "Rows", "Columns", "NumberOfFrames", "AvailableTransferSyntaxUID",
    ),
}  # fmt: skip


def lookup(name: str) -> Attribute | None:
    """Return the attribute a query key names (keyword or 8 hex digits); None if not indexed."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return BY_TAG.get(int(name, 16))
    return BY_KEYWORD.get(name)


def is_dicom_attribute(name: str) -> bool:
    """Return True when ``name`` is a DICOM keyword or tag at all (indexed or not)."""
    if len(name) == 8 and all(c in "0123456789abcdefABCDEF" for c in name):
        return bool(keyword_for_tag(int(name, 16))) or int(name[:4], 16) % 2 == 1
    return tag_for_keyword(name) is not None
