"""RT integrity through intake: hold in ERROR with the missing UIDs, release when images come."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from dicomgate.archive.models import Instance, StagingSession
from dicomgate.archive.session_models import ArchivedSession, PrearchiveAction, StagingReview
from dicomgate.archive.sessions import instances_query
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake
from dicomgate.pipeline import advance
from tests.conftest import PYDICOM_FILES
from tests.integration.prearchive_support import codes, make_review, send, settle, staging
from tests.unit.rules.rt_builders import build_rt_session

TPS = Origin(OriginKind.DIMSE, remote_ae="TPS", called_ae="DG", remote_host="10.0.0.2")
CT_SCANNER = Origin(OriginKind.DIMSE, remote_ae="CT_1", called_ae="DG", remote_host="10.0.0.3")


def _missing(row: StagingSession) -> set[str]:
    return {ref["uid"] for ref in row.reasons[0]["details"]["missing"]}


def test_rt_before_images_is_held_then_released_when_they_come(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path)
    rt = build_rt_session("held")
    send(review, [rt.struct], TPS)
    settle(review)
    held = staging(review)
    assert held.status == "ERROR" and codes(held) == ["rt_references_missing"]
    image_uids = {str(i.SOPInstanceUID) for i in rt.images}
    assert image_uids | {str(rt.images[0].SeriesInstanceUID)} <= _missing(held)
    with intake.db.reader() as session:
        assert session.get_one(StagingReview, held.pk).hold_until is not None
    send(review, rt.images, CT_SCANNER)
    settle(review)
    released = staging(review, held.pk)
    assert released.status == "ARCHIVED" and released.project_id == "DEFAULT"
    with intake.db.reader() as session:
        assert session.scalar(select(func.count(StagingSession.pk))) == 1
        archived = session.scalars(select(ArchivedSession)).one()
        assert len(list(session.scalars(instances_query(archived.pk)))) == 4
        actions = [a.action for a in session.scalars(select(PrearchiveAction))]
    assert actions == ["absorbed", "archived"]


def test_rt_released_by_images_archived_in_the_project(intake: Intake, tmp_path: Path) -> None:
    review = make_review(
        intake, tmp_path, projects=[{"id": "DEFAULT", "labels": "patient_id_accession"}]
    )
    rt = build_rt_session("other-study")
    struct = rt.struct.copy()
    struct.StudyInstanceUID, struct.AccessionNumber = generate_uid(), "RT1"
    send(review, [struct], TPS)
    settle(review)
    held = staging(review)
    assert held.status == "ERROR"
    for image in rt.images:
        image.AccessionNumber = "CT1"
    send(review, rt.images, CT_SCANNER)
    settle(review)  # the images are archived, then the held session is checked again
    settle(review)
    assert staging(review, held.pk).status == "ARCHIVED"
    with intake.db.reader() as session:
        labels = sorted(session.scalars(select(ArchivedSession.label)))
    assert labels == ["CT1", "RT1"]


def test_hold_runs_out_into_quarantine(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path, prearchive={"rt_hold": 60})
    send(review, [build_rt_session("late").struct], TPS)
    settle(review)
    held = staging(review)
    assert held.status == "ERROR"
    advance(review, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2))
    row = staging(review, held.pk)
    assert row.status == "ARCHIVED" and row.project_id == "QUARANTINE"
    assert codes(row) == ["rt_references_missing"]


def test_pydicom_rt_objects_report_their_missing_references(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    for name in ("rtstruct.dcm", "rtplan.dcm", "rtdose.dcm"):
        send(review, [pydicom.dcmread(PYDICOM_FILES / name, force=True)])
    settle(review)
    with intake.db.reader() as session:
        rows = list(session.scalars(select(StagingSession).order_by(StagingSession.pk)))
    assert [r.status for r in rows] == ["ERROR", "ERROR", "ERROR"]
    struct = pydicom.dcmread(PYDICOM_FILES / "rtstruct.dcm", force=True)
    frame = struct.ReferencedFrameOfReferenceSequence[0]
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert {str(frame.FrameOfReferenceUID), str(series.SeriesInstanceUID)} <= _missing(rows[0])
    plan = pydicom.dcmread(PYDICOM_FILES / "rtplan.dcm", force=True)
    referenced = str(plan.ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID)
    assert referenced in _missing(rows[1])
    dose = pydicom.dcmread(PYDICOM_FILES / "rtdose.dcm", force=True)
    assert str(dose.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID) in _missing(rows[2])
    with intake.db.reader() as session:
        assert session.scalar(select(func.count(Instance.pk))) == 3


def test_rt_sharing_series_uid_and_number_is_flagged(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    rt = build_rt_session("shared")
    rt.struct.SeriesInstanceUID = rt.images[0].SeriesInstanceUID
    rt.plan.SeriesNumber = rt.dose.SeriesNumber
    send(review, rt.headers)
    settle(review)
    with intake.db.reader() as session:
        archived = session.scalars(select(ArchivedSession)).one()
    flagged = sorted(w["code"] for w in archived.warnings)
    assert flagged == ["rt_shared_series_number", "rt_shared_series_uid"]
