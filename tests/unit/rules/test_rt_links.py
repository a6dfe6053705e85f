"""RT integrity: references resolved in the session or the archive, missing ones reported."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicomgate.intake.reasons import ReasonCode
from dicomgate.rules import ArchivedUids, FindingCode
from dicomgate.rules.rt_links import RefKind, check_rt_links, references_of

from .rt_builders import RtSession, build_rt_session, make_header


def missing_of(headers: list[Dataset], archived: object = None) -> set[tuple[str, str, str]]:
    report = check_rt_links(headers, archived)  # type: ignore[arg-type]
    return {(ref.kind.value, ref.uid, ref.referenced_by) for ref in report.missing}


def test_complete_session_resolves(rt_session: RtSession) -> None:
    report = check_rt_links(rt_session.headers)
    assert report.missing == ()
    assert report.reasons() == []
    assert report.shared_series == ()


def test_structure_set_references_are_read_and_deduplicated(rt_session: RtSession) -> None:
    refs = references_of(rt_session.struct)
    # the frame of reference and one slice are referenced on two paths; each is listed once
    assert sorted(ref.kind.value for ref in refs) == [
        "frame_of_reference",
        "instance",
        "instance",
        "instance",
        "series",
        "study",
    ]


def test_images_make_no_references(rt_session: RtSession) -> None:
    assert references_of(rt_session.images[0]) == []


def test_missing_images_are_reported_for_the_structure_set(rt_session: RtSession) -> None:
    s = rt_session
    missing = missing_of([s.struct, s.plan, s.dose])
    struct_uid = str(s.struct.SOPInstanceUID)
    expected = {("instance", str(img.SOPInstanceUID), struct_uid) for img in s.images}
    expected.add(("series", str(s.images[0].SeriesInstanceUID), struct_uid))
    # the plan and the dose declare the same study and frame of reference, so those resolve
    assert missing == expected


def test_structure_set_alone_misses_its_frame_and_study(rt_session: RtSession) -> None:
    kinds = {kind for kind, _, _ in missing_of([rt_session.struct])}
    assert kinds == {"frame_of_reference", "study", "series", "instance"}


def test_one_missing_slice_is_reported(rt_session: RtSession) -> None:
    s = rt_session
    missing = missing_of([s.images[0], s.images[2], s.struct, s.plan, s.dose])
    assert missing == {("instance", str(s.images[1].SOPInstanceUID), str(s.struct.SOPInstanceUID))}


def test_missing_structure_set_is_reported_for_the_plan(rt_session: RtSession) -> None:
    s = rt_session
    missing = missing_of([*s.images, s.plan, s.dose])
    assert missing == {("instance", str(s.struct.SOPInstanceUID), str(s.plan.SOPInstanceUID))}


def test_missing_plan_is_reported_for_the_dose(rt_session: RtSession) -> None:
    s = rt_session
    missing = missing_of([*s.images, s.struct, s.dose])
    assert missing == {("instance", str(s.plan.SOPInstanceUID), str(s.dose.SOPInstanceUID))}


def test_plan_dose_and_dose_structure_set_references_are_followed(rt_session: RtSession) -> None:
    s = rt_session
    s.plan.ReferencedDoseSequence = [Dataset()]
    s.plan.ReferencedDoseSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.404"
    s.dose.ReferencedStructureSetSequence = [Dataset()]
    s.dose.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = "1.2.3.4.405"
    missing = missing_of(s.headers)
    assert missing == {
        ("instance", "1.2.3.4.404", str(s.plan.SOPInstanceUID)),
        ("instance", "1.2.3.4.405", str(s.dose.SOPInstanceUID)),
    }


@pytest.mark.parametrize(
    ("break_link", "kind"),
    [
        (
            lambda s: setattr(
                s.struct.ReferencedFrameOfReferenceSequence[0], "FrameOfReferenceUID", "1.2.9.1"
            ),
            "frame_of_reference",
        ),
        (
            lambda s: setattr(
                s.struct.StructureSetROISequence[0], "ReferencedFrameOfReferenceUID", "1.2.9.2"
            ),
            "frame_of_reference",
        ),
        (
            lambda s: setattr(
                s.struct.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0],
                "ReferencedSOPInstanceUID",
                "1.2.9.3",
            ),
            "study",
        ),
        (
            lambda s: setattr(
                s.struct.ReferencedFrameOfReferenceSequence[0]
                .RTReferencedStudySequence[0]
                .RTReferencedSeriesSequence[0],
                "SeriesInstanceUID",
                "1.2.9.4",
            ),
            "series",
        ),
        (
            lambda s: setattr(
                s.struct.ReferencedFrameOfReferenceSequence[0]
                .RTReferencedStudySequence[0]
                .RTReferencedSeriesSequence[0]
                .ContourImageSequence[0],
                "ReferencedSOPInstanceUID",
                "1.2.9.5",
            ),
            "instance",
        ),
        (
            lambda s: setattr(
                s.struct.ROIContourSequence[0].ContourSequence[0].ContourImageSequence[0],
                "ReferencedSOPInstanceUID",
                "1.2.9.6",
            ),
            "instance",
        ),
        (
            lambda s: setattr(
                s.plan.ReferencedStructureSetSequence[0], "ReferencedSOPInstanceUID", "1.2.9.7"
            ),
            "instance",
        ),
        (
            lambda s: setattr(
                s.dose.ReferencedRTPlanSequence[0], "ReferencedSOPInstanceUID", "1.2.9.8"
            ),
            "instance",
        ),
    ],
)
def test_each_broken_link_is_reported(rt_session: RtSession, break_link: object, kind: str) -> None:
    break_link(rt_session)  # type: ignore[operator]
    report = check_rt_links(rt_session.headers)
    assert [(ref.kind.value, ref.uid[:6]) for ref in report.missing] == [(kind, "1.2.9.")]
    (reason,) = report.reasons()
    assert reason.code is ReasonCode.RT_REFERENCES_MISSING
    entries = reason.details["missing"]
    assert isinstance(entries, list)
    assert [set(entry) for entry in entries] == [{"kind", "uid", "referenced_by", "via"}]


def test_references_resolve_against_archived_uids(rt_session: RtSession) -> None:
    s = rt_session
    archived = ArchivedUids(
        instances=frozenset(str(img.SOPInstanceUID) for img in s.images),
        series=frozenset({str(s.images[0].SeriesInstanceUID)}),
        frames_of_reference=frozenset({str(s.images[0].FrameOfReferenceUID)}),
    )
    assert missing_of([s.struct, s.plan, s.dose], archived) == set()


def test_archived_uids_are_checked_by_kind(rt_session: RtSession) -> None:
    s = rt_session
    wrong_kind = ArchivedUids(series=frozenset(str(img.SOPInstanceUID) for img in s.images))
    assert len(missing_of([s.images[0], s.struct], wrong_kind)) == 2


def test_archive_lookup_may_be_a_set_or_a_callable(rt_session: RtSession) -> None:
    s = rt_session
    uids = {str(img.SOPInstanceUID) for img in s.images}
    uids |= {str(s.images[0].SeriesInstanceUID), str(s.images[0].FrameOfReferenceUID)}
    uids.add(str(s.images[0].StudyInstanceUID))
    assert missing_of([s.struct], uids) == set()
    asked: list[tuple[RefKind, str]] = []

    def lookup(kind: RefKind, uid: str) -> bool:
        asked.append((kind, uid))
        return uid in uids

    assert missing_of([s.struct], lookup) == set()
    assert (RefKind.SERIES, str(s.images[0].SeriesInstanceUID)) in asked


def test_an_object_never_resolves_its_own_reference() -> None:
    plan = build_rt_session("self").plan
    plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID = plan.SOPInstanceUID
    assert missing_of([plan]) == {("instance", str(plan.SOPInstanceUID), str(plan.SOPInstanceUID))}


def test_rt_object_is_recognised_by_modality_when_sop_class_is_unknown() -> None:
    plan = build_rt_session("modality").plan
    plan.SOPClassUID = "1.2.3.999"
    assert len(missing_of([plan])) == 1


@pytest.fixture
def pydicom_rt() -> dict[str, Dataset]:
    # rtplan.dcm and rtdose.dcm have no preamble; rtdose.dcm's plan reference has a leading zero.
    names = ("rtstruct.dcm", "rtplan.dcm", "rtdose.dcm")
    return {
        name: pydicom.dcmread(
            Path(str(get_testdata_file(name))), stop_before_pixels=True, force=True
        )
        for name in names
    }


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_pydicom_rt_files_reference_objects_that_are_not_there(
    pydicom_rt: dict[str, Dataset],
) -> None:
    report = check_rt_links(list(pydicom_rt.values()))
    by_owner: dict[str, set[str]] = {}
    for ref in report.missing:
        by_owner.setdefault(ref.referenced_by, set()).add(ref.kind.value)
    struct = str(pydicom_rt["rtstruct.dcm"].SOPInstanceUID)
    plan = str(pydicom_rt["rtplan.dcm"].SOPInstanceUID)
    dose = str(pydicom_rt["rtdose.dcm"].SOPInstanceUID)
    # rtstruct.dcm has no contour image references: its images are referenced by series
    assert by_owner[struct] == {"frame_of_reference", "study", "series"}
    assert by_owner[plan] == {"instance"}
    assert by_owner[dose] == {"instance"}
    (reason,) = report.reasons()
    assert reason.code is ReasonCode.RT_REFERENCES_MISSING


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_pydicom_rt_files_share_a_series_number(pydicom_rt: dict[str, Dataset]) -> None:
    report = check_rt_links(list(pydicom_rt.values()))
    (finding,) = report.shared_series
    assert finding.code is FindingCode.RT_SHARED_SERIES_NUMBER
    assert finding.details["series_number"] == "1"


def test_rt_object_in_the_image_series_is_flagged(rt_session: RtSession) -> None:
    s = rt_session
    s.struct.SeriesInstanceUID = s.images[0].SeriesInstanceUID
    s.struct.SeriesNumber = 1
    findings = check_rt_links(s.headers).shared_series
    assert [f.code for f in findings] == [FindingCode.RT_SHARED_SERIES_UID]
    assert findings[0].details["series_instance_uid"] == str(s.images[0].SeriesInstanceUID)


def test_rt_object_reusing_a_series_number_is_flagged(rt_session: RtSession) -> None:
    s = rt_session
    s.dose.SeriesNumber = 1
    (finding,) = check_rt_links(s.headers).shared_series
    assert finding.code is FindingCode.RT_SHARED_SERIES_NUMBER
    assert finding.details["series_instance_uids"] == sorted(
        {str(s.images[0].SeriesInstanceUID), str(s.dose.SeriesInstanceUID)}
    )


def test_image_series_sharing_numbers_are_not_rt_findings() -> None:
    headers = [make_header(SeriesNumber=1), make_header(SeriesNumber=1, SeriesInstanceUID="1.2.3")]
    assert check_rt_links(headers).shared_series == ()


def test_two_structure_sets_in_one_series_are_fine() -> None:
    s = build_rt_session("two")
    second = build_rt_session("two").struct
    second.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    assert check_rt_links([*s.headers, second]).shared_series == ()
