"""Each prearchive state and each typed reason, reached through intake (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from dicomgate.archive.models import Change
from dicomgate.archive.projects import sync_project
from dicomgate.archive.session_models import ArchivedSession, EquipmentSeen
from dicomgate.auth.guard import local_caller
from dicomgate.errors import ConflictError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome, receive
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.pipeline import advance, archive_session
from dicomgate.prearchive.actions import archive
from dicomgate.prearchive.store import begin_archiving, recover_archiving
from dicomgate.prearchive.target import ArchiveTarget
from tests.integration.prearchive_support import (
    codes,
    ct,
    inbox_client,
    make_review,
    manual,
    part10,
    send,
    settle,
    staging,
    with_protocol,
)


def _archived(review, project: str | None = None) -> list[ArchivedSession]:  # type: ignore[no-untyped-def]
    with review.intake.db.reader() as session:
        query = select(ArchivedSession).order_by(ArchivedSession.pk)
        if project:
            query = query.where(ArchivedSession.project_id == project)
        return list(session.scalars(query))


def test_receiving_then_auto_archived_with_labels_and_originals(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path)
    review = review.__class__(
        **{**review.__dict__, "settings": review.settings.model_copy(update={"stable_after": 3600})}
    )
    send(review, [ct(PatientName="Müller^Hans", PatientID="ID/../01")])
    advance(review)
    assert staging(review).status == "RECEIVING"
    advance(review, now=dt.datetime.now(dt.UTC) + dt.timedelta(hours=2))
    row = staging(review)
    assert row.status == "ARCHIVED" and row.project_id == "DEFAULT"
    archived = _archived(review, "DEFAULT")[0]
    assert (archived.subject_label, archived.label) == ("Muller_Hans", "ID_01")
    assert archived.original["values"] == {
        "subject": "Müller^Hans",
        "session": "ID/../01",
        "project": None,
    }
    with intake.db.reader() as session:
        kinds = [c.change_type for c in session.scalars(select(Change))]
    assert "staging_ready" in kinds and "prearchive_archived" in kinds


def test_manual_project_waits_in_ready(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    send(review, [ct()])
    settle(review)
    settle(review)
    assert staging(review).status == "READY"
    assert _archived(review) == []


def test_origin_label_overrides_win(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    labelled = Origin(OriginKind.INBOX, user="u", subject_label="SUBJ 7", session_label="visit-1")
    send(review, [ct()], labelled)
    settle(review)
    archived = _archived(review)[0]
    assert (archived.subject_label, archived.label) == ("SUBJ_7", "visit-1")
    assert archived.original["sources"] == {"subject": "origin", "session": "origin"}


def test_origin_label_overrides_of_older_rows_are_read(intake: Intake, tmp_path: Path) -> None:
    # Staging rows may carry the overrides under "subject" / "session" (the reader's old keys).
    review = make_review(intake, tmp_path)
    send(review, [ct()])
    with intake.db.unit_of_work() as session:
        row = session.get_one(type(staging(review)), staging(review).pk)
        row.origin = {**row.origin, "subject": "SUBJ 8", "session": "visit-2"}
    settle(review)
    archived = _archived(review)[0]
    assert (archived.subject_label, archived.label) == ("SUBJ_8", "visit-2")


@pytest.mark.parametrize("form", ["rest", "xnat"])
def test_inbox_import_labels_reach_the_archived_session(
    intake: Intake, tmp_path: Path, form: str
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "LUNG"}])
    folder = tmp_path / "inbox" / "LUNG" / "cd1"
    folder.mkdir(parents=True)
    (folder / "a.dcm").write_bytes(part10(ct()))
    jobs = Jobs(intake, JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=1))
    http = inbox_client(jobs, intake, tmp_path / "inbox")
    if form == "rest":
        body = {"path": "cd1", "project": "LUNG", "subject": "SUBJ 9", "session": "visit-3"}
        answer = http.post("/api/imports", json=body)
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
    else:
        query = {"import-handler": "inbox", "PROJECT_ID": "LUNG", "path": "cd1",
                 "SUBJECT_ID": "SUBJ 9", "EXPT_LABEL": "visit-3"}  # fmt: skip
        answer = http.post("/data/services/import", params=query)
        assert answer.status_code == 200, answer.text
        job_id = answer.text.strip().rsplit("/", 1)[-1]
    assert jobs.run_inline(job_id).status.value == "SUCCEEDED"
    settle(review)
    [archived] = _archived(review, "LUNG")
    assert (archived.subject_label, archived.label) == ("SUBJ_9", "visit-3")
    assert archived.original["values"]["subject"] == "DOE^JANE"  # the header value is kept


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("patient_id_accession", ("P001", "ACC9")),
        ("patient_id_study_id", ("P001", "S42")),
        ("xnat_study_comments", ("Sub1", "Ses1")),
    ],
)
def test_project_label_mapping(
    intake: Intake, tmp_path: Path, labels: str, expected: tuple[str, str]
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "DEFAULT", "labels": labels}])
    comments = "Project: X Subject: Sub1 Session: Ses1"
    send(review, [ct(AccessionNumber="ACC9", StudyID="S42", StudyComments=comments)])
    settle(review)
    archived = _archived(review)[0]
    assert (archived.subject_label, archived.label) == expected


XNAT_DEFAULT = {"id": "DEFAULT", "labels": "xnat_study_comments"}


def _xnat(project: str, subject: str = "Sub1") -> str:
    return f"Project: {project} Subject: {subject} Session: Ses-{subject}"


def test_xnat_comments_route_to_an_existing_project_named_there(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[XNAT_DEFAULT, {"id": "LUNG"}])
    send(review, [ct(StudyComments=_xnat("LUNG"), PatientID="A")])
    send(review, [ct(StudyComments=_xnat("NOPE", "Sub2"), PatientID="B")])
    send(review, [ct(StudyComments=_xnat("QUARANTINE", "Sub3"), PatientID="C")])
    settle(review)
    [routed] = _archived(review, "LUNG")
    assert (routed.subject_label, routed.label) == ("Sub1", "Ses-Sub1")
    assert routed.original["values"]["project"] == "LUNG"
    # A project that does not exist, or QUARANTINE, is not a destination: the default stays.
    kept = {(a.subject_label, a.label) for a in _archived(review, "DEFAULT")}
    assert kept == {("Sub2", "Ses-Sub2"), ("Sub3", "Ses-Sub3")}
    assert _archived(review, "QUARANTINE") == []


def test_xnat_comments_project_waits_for_review_with_its_labels(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(
        intake, tmp_path, projects=[XNAT_DEFAULT, {"id": "LUNG", "archive_policy": "manual"}]
    )
    send(review, [ct(StudyComments=_xnat("LUNG"))])
    settle(review)
    waiting = staging(review)
    assert waiting.status == "READY" and _archived(review) == []
    archive(review, waiting.pk, caller=local_caller())  # no project named: the proposed one
    [archived] = _archived(review, "LUNG")
    assert (archived.subject_label, archived.label) == ("Sub1", "Ses-Sub1")


def test_xnat_comments_project_gives_way_to_the_origin_and_the_protocol(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[XNAT_DEFAULT, {"id": "LUNG"}, {"id": "HEAD"}])
    into_head = Origin(OriginKind.IMPORT, user="u", project="HEAD")
    send(review, [ct(StudyComments=_xnat("LUNG"), PatientID="A")], into_head)
    settle(review)
    assert [a.project_id for a in _archived(review)] == ["HEAD"]
    protocol = with_protocol(review, tmp_path, "rules: [{archive: HEAD}]")
    send(protocol, [ct(StudyComments=_xnat("LUNG", "Sub2"), PatientID="B")])
    settle(protocol)
    assert [a.project_id for a in _archived(review)] == ["HEAD", "HEAD"]
    assert _archived(review, "LUNG") == []


def test_label_conflict_another_study_same_labels(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    send(review, [ct()])
    settle(review)
    send(review, [ct()])  # another study, same patient labels
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT" and codes(held) == ["label_conflict"]


def test_same_study_again_is_a_label_conflict_to_merge(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    first = ct()
    send(review, [first])
    settle(review)
    send(review, [ct(study=first.StudyInstanceUID)], Origin(OriginKind.IMPORT, user="other"))
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT" and codes(held) == ["label_conflict"]
    assert held.reasons[0]["details"]["same_study"] is True


def test_uid_conflict_study_under_another_patient(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    first = ct()
    send(review, [first])
    settle(review)
    other = ct(study=first.StudyInstanceUID, PatientID="P999", PatientName="ROE^RICH")
    send(review, [other], Origin(OriginKind.IMPORT, user="other"))
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT" and "uid_conflict" in codes(held)


def test_conflicting_duplicate_holds_the_session(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    ds = ct()
    send(review, [ds])
    settle(review)
    changed = ds.copy()
    changed.SeriesDescription = "changed"
    result = receive(intake, part10(changed), Origin(OriginKind.IMPORT, user="again"))
    assert result.outcome is Outcome.CONFLICTING
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT" and codes(held) == ["conflicting_duplicate"]
    assert held.reasons[0]["details"]["sop_instance_uids"] == [str(ds.SOPInstanceUID)]


def test_mixed_patients(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    a = ct()
    b = ct(study=a.StudyInstanceUID, PatientID="P002", PatientName="ROE^RICH")
    send(review, [a, b])
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT" and "mixed_patients" in codes(held)


def test_missing_required_header_is_quarantined(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path, prearchive={"required_headers": ["AccessionNumber"]})
    send(review, [ct(AccessionNumber="")])
    settle(review)
    assert staging(review).status == "ARCHIVED"
    quarantined = _archived(review, "QUARANTINE")[0]
    assert [r["code"] for r in quarantined.reasons] == ["missing_required_header"]
    assert quarantined.proposed_project == "DEFAULT"


PROTOCOL = """
version: 1
rules:
  - name: no-sc
    when: {Modality: OT}
    reject: secondary capture not accepted
  - name: phantoms
    when: {StudyDescription: {regex: "(?i)phantom.*"}}
    quarantine: phantom studies are reviewed
  - name: ct-from-scanner
    when: {all: [{Modality: CT}, {origin: {calling_ae: CT_1}}]}
    archive: LUNG
"""


@pytest.mark.parametrize(
    ("attributes", "origin_ae", "status", "project", "reason"),
    [
        ({}, "CT_1", "ARCHIVED", "LUNG", None),
        ({"StudyDescription": "Phantom QA"}, "CT_1", "ARCHIVED", "QUARANTINE", "rule_quarantine"),
        ({}, "OTHER", "ARCHIVED", "QUARANTINE", "no_rule_matched"),
        ({"Modality": "OT"}, "CT_1", "ERROR", None, "rule_reject"),
    ],
)
def test_protocol_outcomes(
    intake: Intake,
    tmp_path: Path,
    attributes: dict[str, str],
    origin_ae: str,
    status: str,
    project: str | None,
    reason: str | None,
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "LUNG"}])
    review = with_protocol(review, tmp_path, PROTOCOL)
    origin = Origin(OriginKind.DIMSE, remote_ae=origin_ae, called_ae="DG", remote_host="::1")
    send(review, [ct(**{"StudyDescription": "", **attributes})], origin)
    settle(review)
    row = staging(review)
    assert row.status == status and row.project_id == project
    assert codes(row) == ([reason] if reason else [])


CARDS = {
    "required": True,
    "cards": [
        {
            "name": "ge-ct",
            "match": {"Manufacturer": "GE MEDICAL SYSTEMS"},
            "assign": [{"attribute": "Modality", "regex": "CT", "set": {"scan_type": "ct"}}],
        }
    ],
}


def test_study_cards_match_assign_and_record_equipment(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "DEFAULT", "study_cards": CARDS}])
    image = ct()
    send(review, [image])
    settle(review)
    archived = _archived(review, "DEFAULT")[0]
    assert archived.scans == {str(image.SeriesInstanceUID): {"scan_type": "ct"}}
    send(review, [ct(Manufacturer="ACME", PatientID="P77")])
    settle(review)
    quarantined = _archived(review, "QUARANTINE")[0]
    assert [r["code"] for r in quarantined.reasons] == ["equipment_not_compatible"]
    with intake.db.reader() as session:
        seen = {e.manufacturer: e.sessions for e in session.scalars(select(EquipmentSeen))}
    assert seen == {"GE MEDICAL SYSTEMS": 1, "ACME": 1}


def test_archiving_left_by_a_crash_is_checked_again(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    send(review, [ct()])
    settle(review)
    pk = staging(review).pk
    with intake.db.unit_of_work() as session:
        begin_archiving(session, pk)
    assert staging(review).status == "ARCHIVING"
    with intake.db.unit_of_work() as session:
        assert recover_archiving(session) == [pk]
    with intake.db.unit_of_work() as session:
        sync_project(session, "DEFAULT", policy="auto")
    settle(review)
    assert staging(review).status == "ARCHIVED"


def test_failed_archive_restores_the_previous_state(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    send(review, [ct()])
    send(review, [ct(PatientID="P2")], Origin(OriginKind.IMPORT, user="other"))
    settle(review)
    first, second = staging(review, 1), staging(review, 2)
    target = ArchiveTarget("DEFAULT", "S", "TAKEN")
    archive_session(review, first.pk, target)
    with pytest.raises(ConflictError, match="TAKEN is already taken"):
        archive_session(review, second.pk, target)
    assert staging(review, second.pk).status == "READY"
    assert len(_archived(review)) == 1
