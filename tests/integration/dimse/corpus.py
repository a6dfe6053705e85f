"""A small archive for the DIMSE tests: two patients, four studies, CT and MR, one JPEG study.

Instances are built from pydicom's ``CT_small.dcm`` (uncompressed) and ``SC_rgb_jpeg_dcmtk.dcm``
(JPEG baseline) with the identifiers below, and stored through ``intake.receive()``.
:func:`build_large_study` stores one study of as many CT instances as a test needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO

import pydicom
from pydicom.uid import generate_uid

from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from tests.conftest import PYDICOM_FILES

# (patient id, patient name, study date, accession, [(modality, instance count), ...])
STUDIES = [
    ("PID001", "DOE^JANE", "20240115", "ACC1", [("CT", 3), ("MR", 2)]),
    ("PID001", "DOE^JANE", "20230610", "ACC2", [("CT", 1)]),
    ("PID002", "ROE^RICHARD", "20240301", "ACC3", [("MR", 2)]),
]


@dataclass
class Corpus:
    """UIDs of what was stored: study -> series -> instances, and the file bytes."""

    studies: list[str] = field(default_factory=list)
    series: dict[str, list[str]] = field(default_factory=dict)
    instances: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    jpeg_study: str = ""
    jpeg_instance: str = ""


def _encode(ds: pydicom.Dataset) -> bytes:
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _store(intake: Intake, corpus: Corpus, ds: pydicom.Dataset) -> None:
    data = _encode(ds)
    result = receive(intake, data, Origin(OriginKind.IMPORT))
    assert result.ok, result.reason
    corpus.files[str(ds.SOPInstanceUID)] = data


def _instance(
    template: pydicom.Dataset, study: str, series: str, number: int, index: int
) -> pydicom.Dataset:
    ds = template.copy()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SeriesNumber, ds.InstanceNumber = number, index + 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def build(intake: Intake) -> Corpus:
    """Store the corpus and return its UIDs."""
    corpus = Corpus()
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    for pid, name, date, accession, series_list in STUDIES:
        study = generate_uid()
        corpus.studies.append(study)
        corpus.series[study] = []
        for number, (modality, count) in enumerate(series_list, start=1):
            series = generate_uid()
            corpus.series[study].append(series)
            corpus.instances[series] = []
            for index in range(count):
                ds = _instance(template, study, series, number, index)
                ds.PatientID, ds.PatientName, ds.StudyDate = pid, name, date
                ds.AccessionNumber, ds.Modality, ds.StudyTime = accession, modality, "101530"
                corpus.instances[series].append(str(ds.SOPInstanceUID))
                _store(intake, corpus, ds)
    jpeg = pydicom.dcmread(PYDICOM_FILES / "SC_rgb_jpeg_dcmtk.dcm")
    jpeg.PatientID, jpeg.PatientName = "PID003", "JPEG^ONLY"
    _store(intake, corpus, jpeg)
    corpus.jpeg_study, corpus.jpeg_instance = str(jpeg.StudyInstanceUID), str(jpeg.SOPInstanceUID)
    return corpus


def build_large_study(intake: Intake, count: int) -> tuple[str, list[str]]:
    """Store one CT study of ``count`` instances in one series (patient PID900).

    Returns the Study Instance UID and the SOP Instance UIDs in instance number order.
    """
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    template.PatientID, template.PatientName = "PID900", "LARGE^STUDY"
    template.StudyDate, template.AccessionNumber, template.Modality = "20240501", "ACC900", "CT"
    study, series = generate_uid(), generate_uid()
    uids = []
    for index in range(count):
        ds = _instance(template, study, series, 1, index)
        result = receive(intake, _encode(ds), Origin(OriginKind.IMPORT))
        assert result.ok, result.reason
        uids.append(str(ds.SOPInstanceUID))
    return study, uids
