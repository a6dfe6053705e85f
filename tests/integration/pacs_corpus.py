"""A small PACS corpus built in code: several patients, studies, series and modalities.

Each instance is an 8x8 image with a realistic header; the layout is returned so tests know
what a find should answer without asking Orthanc.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}


@dataclass
class CorpusStudy:
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    accession: str
    modality: str
    series: dict[str, list[str]] = field(default_factory=dict)  # series uid -> SOP UIDs

    @property
    def sop_uids(self) -> list[str]:
        return [uid for uids in self.series.values() for uid in uids]


# (patient id, name, study date, accession, modality)
LAYOUT = [
    ("PAT001", "ALPHA^ANNA", "20240105", "ACC1001", "CT"),
    ("PAT001", "ALPHA^ANNA", "20240610", "ACC1002", "MR"),
    ("PAT002", "BRAVO^BEN", "20240211", "ACC2001", "CT"),
    ("PAT003", "CHARLIE^CARL", "20230920", "ACC3001", "MR"),
]


def instance(study: CorpusStudy, series_uid: str, number: int, rows: int = 8) -> bytes:
    """Return one Part-10 file of ``study``/``series_uid``."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[study.modality]
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = SOP_CLASS[study.modality], sop
    ds.PatientID, ds.PatientName = study.patient_id, study.patient_name
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_uid, series_uid
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study.study_date, "101500", study.accession
    ds.StudyID, ds.StudyDescription, ds.ReferringPhysicianName = "1", "RESEARCH", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = study.modality, 1, number
    ds.SeriesDescription = f"{study.modality} series"
    ds.Laterality = "L" if number % 2 else ""
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = bytes(rows * rows * 2)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    study.series.setdefault(series_uid, []).append(sop)
    return out.getvalue()


def build(series_per_study: int = 2, per_series: int = 3) -> tuple[list[CorpusStudy], list[bytes]]:
    """Return the studies of ``LAYOUT`` and their files."""
    studies, files = [], []
    for patient_id, name, date, accession, modality in LAYOUT:
        study = CorpusStudy(patient_id, name, generate_uid(), date, accession, modality)
        for _ in range(series_per_study):
            series_uid = generate_uid()
            files.extend(instance(study, series_uid, n + 1) for n in range(per_series))
        studies.append(study)
    return studies, files
