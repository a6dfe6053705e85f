"""Build small, consistent DICOM headers for rules tests: images and a linked RT session.

``build_rt_session`` returns a CT series of 3 slices, an RT Structure Set that references them
(frame of reference, study, series, contour images), an RT Plan referencing the structure set and
an RT Dose referencing the plan. Every link resolves within the session; tests break one link at a
time. UIDs are derived deterministically from a case name so failures are reproducible.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
RT_STRUCT = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN = "1.2.840.10008.5.1.4.1.1.481.5"
RT_DOSE = "1.2.840.10008.5.1.4.1.1.481.2"
STUDY_ROOT = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as TPSs write it
_instance_numbers = itertools.count()


def uid(*parts: object) -> str:
    """Return a deterministic, valid UID for the given name parts."""
    return str(generate_uid(entropy_srcs=[str(p) for p in parts]))


def make_header(**attributes: object) -> Dataset:
    """Return an MR instance header with valid UIDs; keywords override, add, or (None) remove."""
    ds = Dataset()
    ds.SOPClassUID = MR_IMAGE
    ds.SOPInstanceUID = uid("sop", next(_instance_numbers))
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.Modality = "MR"
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "P0001"
    for keyword, value in attributes.items():
        if value is not None:
            setattr(ds, keyword, value)
        elif keyword in ds:
            delattr(ds, keyword)
    return ds


def _item(**attributes: object) -> Dataset:
    item = Dataset()
    for keyword, value in attributes.items():
        setattr(item, keyword, value)
    return item


@dataclass
class RtSession:
    """The headers of one linked RT session."""

    images: list[Dataset]
    struct: Dataset
    plan: Dataset
    dose: Dataset

    @property
    def headers(self) -> list[Dataset]:
        """Return every header, images first."""
        return [*self.images, self.struct, self.plan, self.dose]


def _common(case: str, sop_class: str, modality: str, series: str, number: int) -> Dataset:
    ds = make_header(
        SOPClassUID=sop_class,
        SOPInstanceUID=uid(case, series, number, "instance"),
        StudyInstanceUID=uid(case, "study"),
        SeriesInstanceUID=uid(case, series),
        Modality=modality,
        SeriesNumber=number,
        PatientID=f"{case}-patient",
    )
    ds.FrameOfReferenceUID = uid(case, "frame-of-reference")
    return ds


def build_ct_series(case: str = "case1", slices: int = 3) -> list[Dataset]:
    """Return the headers of a CT series of ``slices`` slices in one frame of reference."""
    images = []
    for i in range(slices):
        ds = _common(case, CT_IMAGE, "CT", "ct-series", 1)
        ds.SOPInstanceUID = uid(case, "ct", i)
        ds.InstanceNumber = i + 1
        images.append(ds)
    return images


def build_struct(case: str, images: list[Dataset]) -> Dataset:
    """Return an RT Structure Set whose contours lie on ``images``."""
    ds = _common(case, RT_STRUCT, "RTSTRUCT", "struct-series", 2)
    del ds.FrameOfReferenceUID  # the structure set module references a frame, it has none
    contour_images = [
        _item(ReferencedSOPClassUID=img.SOPClassUID, ReferencedSOPInstanceUID=img.SOPInstanceUID)
        for img in images
    ]
    series = _item(SeriesInstanceUID=images[0].SeriesInstanceUID)
    series.ContourImageSequence = contour_images
    study = _item(ReferencedSOPClassUID=STUDY_ROOT, ReferencedSOPInstanceUID=ds.StudyInstanceUID)
    study.RTReferencedSeriesSequence = [series]
    frame = _item(FrameOfReferenceUID=images[0].FrameOfReferenceUID)
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    roi = _item(ROINumber=1, ReferencedFrameOfReferenceUID=images[0].FrameOfReferenceUID)
    roi.ROIName = "GTV"
    ds.StructureSetROISequence = [roi]
    contour = _item(ContourGeometricType="CLOSED_PLANAR", NumberOfContourPoints=1)
    contour.ContourImageSequence = [contour_images[1]]
    contour.ContourData = [0.0, 0.0, 0.0]
    roi_contour = _item(ReferencedROINumber=1)
    roi_contour.ContourSequence = [contour]
    ds.ROIContourSequence = [roi_contour]
    return ds


def build_plan(case: str, struct: Dataset) -> Dataset:
    """Return an RT Plan referencing ``struct``."""
    ds = _common(case, RT_PLAN, "RTPLAN", "plan-series", 3)
    ds.ReferencedStructureSetSequence = [
        _item(ReferencedSOPClassUID=RT_STRUCT, ReferencedSOPInstanceUID=struct.SOPInstanceUID)
    ]
    return ds


def build_dose(case: str, plan: Dataset) -> Dataset:
    """Return an RT Dose referencing ``plan``."""
    ds = _common(case, RT_DOSE, "RTDOSE", "dose-series", 4)
    ds.ReferencedRTPlanSequence = [
        _item(ReferencedSOPClassUID=RT_PLAN, ReferencedSOPInstanceUID=plan.SOPInstanceUID)
    ]
    return ds


def build_rt_session(case: str = "case1") -> RtSession:
    """Return CT (3 slices) + RT Structure Set + RT Plan + RT Dose, all links resolving."""
    images = build_ct_series(case)
    struct = build_struct(case, images)
    plan = build_plan(case, struct)
    return RtSession(images, struct, plan, build_dose(case, plan))
