"""Which index column answers which DICOM attribute, at which level, matched how.

Patient attributes come from the ``patients`` table at PATIENT level and from their copy on the
study row below it (one table less to join). Attributes computed from the hierarchy (counts,
modalities in study) are listed in :data:`COMPUTED`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from dicomgate.access.dimse.identifiers import Level
from dicomgate.archive.models import Instance, Patient, Series, Study


class Kind(enum.StrEnum):
    """How an attribute is matched (PS3.4 C.2.2.2)."""

    TEXT = "text"  # single value, wildcard
    UID = "uid"  # single value, list of UIDs
    DATE = "date"  # single value, range
    TIME = "time"  # single value, range
    NUMBER = "number"  # single value (IS, US)


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute the index holds.

    Parameters
    ----------
    level
        The level the attribute belongs to.
    kind
        How it is matched.
    column
        The column at STUDY level and below.
    patient_column
        The column at PATIENT level (patient attributes only).
    unique
        True for the level's unique key (what C-MOVE/C-GET match on).
    """

    level: Level
    kind: Kind
    column: Any
    patient_column: Any = None
    unique: bool = False

    def column_at(self, level: Level) -> Any:
        """Return the column answering this attribute in a query at ``level``."""
        return self.patient_column if level is Level.PATIENT else self.column


_P, _ST, _SE, _IM = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE

ATTRIBUTES: dict[str, Attribute] = {
    "PatientID": Attribute(_P, Kind.TEXT, Study.patient_id, Patient.patient_id, unique=True),
    "PatientName": Attribute(_P, Kind.TEXT, Study.patient_name, Patient.patient_name),
    "PatientBirthDate": Attribute(_P, Kind.DATE, Study.patient_birth_date, Patient.birth_date),
    "PatientSex": Attribute(_P, Kind.TEXT, Study.patient_sex, Patient.sex),
    "StudyInstanceUID": Attribute(_ST, Kind.UID, Study.study_uid, unique=True),
    "StudyDate": Attribute(_ST, Kind.DATE, Study.study_date),
    "StudyTime": Attribute(_ST, Kind.TIME, Study.study_time),
    "AccessionNumber": Attribute(_ST, Kind.TEXT, Study.accession_number),
    "StudyID": Attribute(_ST, Kind.TEXT, Study.study_id),
    "StudyDescription": Attribute(_ST, Kind.TEXT, Study.study_description),
    "ReferringPhysicianName": Attribute(_ST, Kind.TEXT, Study.referring_physician_name),
    "SeriesInstanceUID": Attribute(_SE, Kind.UID, Series.series_uid, unique=True),
    "Modality": Attribute(_SE, Kind.TEXT, Series.modality),
    "SeriesNumber": Attribute(_SE, Kind.NUMBER, Series.series_number),
    "SeriesDescription": Attribute(_SE, Kind.TEXT, Series.series_description),
    "BodyPartExamined": Attribute(_SE, Kind.TEXT, Series.body_part_examined),
    "SeriesDate": Attribute(_SE, Kind.DATE, Series.series_date),
    "SeriesTime": Attribute(_SE, Kind.TIME, Series.series_time),
    "SOPInstanceUID": Attribute(_IM, Kind.UID, Instance.sop_instance_uid, unique=True),
    "SOPClassUID": Attribute(_IM, Kind.UID, Instance.sop_class_uid),
    "InstanceNumber": Attribute(_IM, Kind.NUMBER, Instance.instance_number),
    "Rows": Attribute(_IM, Kind.NUMBER, Instance.rows),
    "Columns": Attribute(_IM, Kind.NUMBER, Instance.columns),
    "NumberOfFrames": Attribute(_IM, Kind.NUMBER, Instance.number_of_frames),
    "AvailableTransferSyntaxUID": Attribute(_IM, Kind.UID, Instance.transfer_syntax_uid),
}

# Computed from the hierarchy, returned at their own level; only ModalitiesInStudy is matched.
COMPUTED: dict[str, Level] = {
    "NumberOfPatientRelatedStudies": _P,
    "NumberOfPatientRelatedSeries": _P,
    "NumberOfPatientRelatedInstances": _P,
    "NumberOfStudyRelatedSeries": _ST,
    "NumberOfStudyRelatedInstances": _ST,
    "ModalitiesInStudy": _ST,
    "SOPClassesInStudy": _ST,
    "NumberOfSeriesRelatedInstances": _SE,
}

UNIQUE_KEY = {level: kw for kw, a in ATTRIBUTES.items() if a.unique for level in [a.level]}
