"""Builders for the de-identification tests: CT slices and an RT chain made with pydicom."""

from __future__ import annotations

import io

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    RTDoseStorage,
    RTPlanStorage,
    RTStructureSetStorage,
)

SECRET_A = b"project-a-secret-0123456789abcdef"
SECRET_B = b"project-b-secret-0123456789abcdef"
ROOT = "1.2.826.0.1.3680043.9999"


def item(**values: object) -> Dataset:
    ds = Dataset()
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def with_meta(ds: Dataset, sop_class: UID) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    return ds


def patient(ds: Dataset) -> Dataset:
    ds.PatientName, ds.PatientID = "ZQXDOE^ZQXJOHN", "PIDQ778899"
    ds.PatientBirthDate, ds.PatientSex = "19600215", "M"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240312", "101500", "ACCQ4455"
    ds.StudyInstanceUID = f"{ROOT}.1"
    ds.StudyDescription = "CT ZQXDOE follow-up"
    ds.InstitutionName, ds.ReferringPhysicianName = "ZQXGENERAL HOSPITAL", "ZQXWELBY^M"
    return ds


def ct_slice(index: int, rows: int = 8) -> Dataset:
    ds = patient(Dataset())
    ds.SOPInstanceUID = f"{ROOT}.1.2.{index + 1}"
    ds.SeriesInstanceUID, ds.FrameOfReferenceUID = f"{ROOT}.1.2", f"{ROOT}.1.9"
    ds.Modality, ds.Manufacturer, ds.ManufacturerModelName = "CT", "ACME", "Scanner 64"
    ds.SeriesDate, ds.ContentDate, ds.AcquisitionDateTime = "20240312", "20240312", "20240312101500"
    ds.DeviceSerialNumber, ds.StationName = "SNQ998877", "ZQXSTATION"
    ds.InstanceNumber = index + 1
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(rows * rows, dtype=np.uint16) + 1).tobytes()
    ds.ReferencedImageSequence = Sequence(
        [item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=f"{ROOT}.7.7")]
    )
    block = ds.private_block(0x0019, "ZQX PRIVATE", create=True)
    block.add_new(0x10, "LO", "ZQXDOE ZQXJOHN")
    return with_meta(ds, CTImageStorage)


def rt_chain() -> list[Dataset]:
    """Return 3 CT slices, an RT Structure Set, an RT Plan and an RT Dose referencing them."""
    cts = [ct_slice(i) for i in range(3)]
    ss = patient(Dataset())
    ss.SOPInstanceUID, ss.SeriesInstanceUID, ss.Modality = f"{ROOT}.2.1", f"{ROOT}.2", "RTSTRUCT"
    contour_images = [
        item(ReferencedSOPClassUID=CTImageStorage, ReferencedSOPInstanceUID=c.SOPInstanceUID)
        for c in cts
    ]
    series = item(SeriesInstanceUID=cts[0].SeriesInstanceUID)
    series.ContourImageSequence = Sequence(contour_images)
    study = item(ReferencedSOPClassUID="1.2.840.10008.3.1.2.3.1")
    study.ReferencedSOPInstanceUID = ss.StudyInstanceUID
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = item(FrameOfReferenceUID=cts[0].FrameOfReferenceUID)
    frame.RTReferencedStudySequence = Sequence([study])
    ss.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = item(ROINumber=1, ROIName="PTV", ROIGenerationAlgorithm="MANUAL")
    roi.ReferencedFrameOfReferenceUID = cts[0].FrameOfReferenceUID
    ss.StructureSetROISequence = Sequence([roi])
    contour = item(ContourGeometricType="POINT", NumberOfContourPoints=1, ContourData=[0, 0, 0])
    contour.ContourImageSequence = Sequence([contour_images[1]])
    ss.ROIContourSequence = Sequence(
        [item(ReferencedROINumber=1, ContourSequence=Sequence([contour]))]
    )
    plan = patient(Dataset())
    plan.SOPInstanceUID, plan.SeriesInstanceUID, plan.Modality = (
        f"{ROOT}.3.1",
        f"{ROOT}.3",
        "RTPLAN",
    )
    plan.FrameOfReferenceUID = cts[0].FrameOfReferenceUID
    plan.ReferencedStructureSetSequence = Sequence(
        [
            item(
                ReferencedSOPClassUID=RTStructureSetStorage,
                ReferencedSOPInstanceUID=ss.SOPInstanceUID,
            )
        ]
    )
    dose = patient(Dataset())
    dose.SOPInstanceUID, dose.SeriesInstanceUID, dose.Modality = (
        f"{ROOT}.4.1",
        f"{ROOT}.4",
        "RTDOSE",
    )
    dose.FrameOfReferenceUID = cts[0].FrameOfReferenceUID
    dose.ReferencedRTPlanSequence = Sequence(
        [item(ReferencedSOPClassUID=RTPlanStorage, ReferencedSOPInstanceUID=plan.SOPInstanceUID)]
    )
    return [
        *cts,
        with_meta(ss, RTStructureSetStorage),
        with_meta(plan, RTPlanStorage),
        with_meta(dose, RTDoseStorage),
    ]


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def roundtrip(ds: Dataset) -> Dataset:
    return dcmread(io.BytesIO(to_bytes(ds)))
