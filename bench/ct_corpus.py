"""The identifying CT header both benchmarks generate (names, IDs, dates, equipment)."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence


def item(**values: object) -> Dataset:
    """Return a sequence item holding ``values``."""
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def fill_identifying_header(ds: Dataset, study: str, accession: str, patient_id: str) -> None:
    """Set the realistic, identifying attributes of a CT instance of ``study``."""
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20240312"
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = "101530.123"
    ds.AccessionNumber, ds.Modality, ds.Manufacturer = accession, "CT", "ACME"
    ds.InstitutionName, ds.InstitutionAddress = "General Hospital", "1 Main Street, Springfield"
    ds.ReferringPhysicianName, ds.StationName = "WELBY^MARCUS", "CT01"
    ds.StudyDescription, ds.SeriesDescription = "CT THORAX", "Thorax 1mm"
    ds.OperatorsName, ds.ManufacturerModelName = "SMITH^ANNA", "Scanner 64"
    ds.ReferencedStudySequence = Sequence(
        [item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1", ReferencedSOPInstanceUID=study)]
    )
    ds.PatientName, ds.PatientID = "DOE^JOHN^Q", patient_id
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAge = "19600102", "M", "064Y"
    ds.DeviceSerialNumber, ds.SoftwareVersions, ds.ProtocolName = "SN998877", "V1", "THORAX"
    ds.SliceThickness, ds.KVP = "1.0", "120"
