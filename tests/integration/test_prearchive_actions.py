"""Review actions over REST, each one done and refused; quarantine release and delete."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

from dicomgate.archive.models import Instance, Series, StagingSession
from dicomgate.archive.session_models import PrearchiveAction
from dicomgate.auth.guard import local_caller
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, Outcome
from dicomgate.prearchive.actions import delete
from tests.integration.prearchive_support import (
    client,
    ct,
    make_review,
    manual,
    send,
    settle,
    staging,
    with_protocol,
)
from tests.unit.rules.rt_builders import build_rt_session

OTHER = Origin(OriginKind.IMPORT, user="other")


def _actions(intake: Intake) -> list[str]:
    with intake.db.reader() as session:
        return [a.action for a in session.scalars(select(PrearchiveAction))]


def _detail(response) -> str:  # type: ignore[no-untyped-def]
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["detail"])


def test_archive_with_new_project_and_labels(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path, projects=[{"id": "LUNG"}]), "DEFAULT")
    send(review, [ct()])
    settle(review)
    pk = staging(review).pk
    http = client(review)
    done = http.post(
        f"/api/prearchive/{pk}/archive", json={"project": "LUNG", "subject": "S 1", "session": "V1"}
    )
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "ARCHIVED"
    assert body["archived_session"] == {"project": "LUNG", "label": "V1"}
    again = http.post(f"/api/prearchive/{pk}/archive")
    assert again.status_code == 409 and "archived already" in _detail(again)
    session = http.get("/api/projects/LUNG/sessions/V1").json()
    assert session["subject"] == "S_1" and session["instance_count"] == 1
    assert "archived" in _actions(intake)


def test_archive_refused_while_receiving_and_when_checks_fail(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path)
    review = replace(review, settings=review.settings.model_copy(update={"stable_after": 1e6}))
    send(review, [ct()])
    http = client(review)
    receiving = http.post(f"/api/prearchive/{staging(review).pk}/archive")
    assert receiving.status_code == 409 and "still receiving" in _detail(receiving)
    rt_review = make_review(intake, tmp_path)
    send(rt_review, [build_rt_session("refused").struct], OTHER)
    settle(rt_review)
    held = staging(rt_review)
    refused = client(rt_review).post(f"/api/prearchive/{held.pk}/archive")
    assert refused.status_code == 409 and "rt_references_missing" in _detail(refused)
    assert staging(rt_review, held.pk).status == "ERROR"
    quarantined = client(rt_review).post(
        f"/api/prearchive/{held.pk}/archive", json={"project": "QUARANTINE"}
    )
    assert quarantined.status_code == 200 and quarantined.json()["project_id"] == "QUARANTINE"


REJECT_OT = """
rules:
  - {name: no-sc, when: {Modality: OT}, reject: secondary capture not accepted}
  - {archive: LUNG}
"""


def test_a_rejected_session_is_archived_only_into_a_project_named_for_it(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "LUNG"}])
    review = with_protocol(review, tmp_path, REJECT_OT)
    send(review, [ct(Modality="OT")])
    settle(review)
    rejected = staging(review)
    assert rejected.status == "ERROR" and rejected.reasons[0]["code"] == "rule_reject"
    http = client(review)
    refused = http.post(f"/api/prearchive/{rejected.pk}/archive")
    assert refused.status_code == 409
    assert "rule_reject" in _detail(refused) and "name a project" in _detail(refused)
    assert staging(review, rejected.pk).status == "ERROR" and _actions(intake) == []
    # A data manager who names the project overrides the protocol; that project's checks run.
    done = http.post(f"/api/prearchive/{rejected.pk}/archive", json={"project": "LUNG"})
    assert done.status_code == 200 and done.json()["project_id"] == "LUNG", done.text


def test_rename_resolves_a_label_conflict(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    send(review, [ct()])
    settle(review)
    send(review, [ct()], OTHER)
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT"
    http = client(review)
    bad = http.post(f"/api/prearchive/{held.pk}/rename", json={"session": "///"})
    assert bad.status_code == 400
    renamed = http.post(f"/api/prearchive/{held.pk}/rename", json={"session": "P001-b"})
    assert renamed.status_code == 200 and renamed.json()["status"] == "READY"
    assert http.post(f"/api/prearchive/{held.pk}/archive").json()["status"] == "ARCHIVED"
    refused = http.post(f"/api/prearchive/{held.pk}/rename", json={"session": "x"})
    assert refused.status_code == 409
    assert _actions(intake) == ["archived", "renamed", "archived"]


CARDS = {"required": True, "cards": [{"name": "acme", "match": {"Manufacturer": "ACME"}}]}


def test_move_checks_the_new_project(intake: Intake, tmp_path: Path) -> None:
    review = make_review(
        intake,
        tmp_path,
        projects=[
            {"id": "CARDED", "study_cards": CARDS},
            {"id": "OPEN", "archive_policy": "manual"},
        ],
    )
    review = with_protocol(review, tmp_path, "rules: [{archive: CARDED}]")
    send(review, [ct()])
    settle(review)
    quarantined = staging(review)
    assert quarantined.project_id == "QUARANTINE"
    send(review, [ct(Manufacturer="ACME", PatientID="P2")])
    settle(review)
    manual(review, "CARDED")
    send(review, [ct(Manufacturer="ACME", PatientID="P3")], OTHER)
    settle(review)
    waiting = staging(review)
    assert waiting.status == "READY"
    http = client(review)
    assert (
        http.post(f"/api/prearchive/{waiting.pk}/move", json={"project": "NOPE"}).status_code == 404
    )
    to_q = http.post(f"/api/prearchive/{waiting.pk}/move", json={"project": "QUARANTINE"})
    assert to_q.status_code == 400
    moved = http.post(f"/api/prearchive/{waiting.pk}/move", json={"project": "OPEN"})
    assert moved.status_code == 200 and moved.json()["target_project"] == "OPEN"
    settle(review)  # a moved session keeps its project; the protocol is not asked again
    assert http.post(f"/api/prearchive/{waiting.pk}/archive").json()["project_id"] == "OPEN"


def test_merge_only_when_asked_and_only_the_same_study(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    first = ct()
    send(review, [first])
    settle(review)
    send(review, [ct(study=first.StudyInstanceUID)], OTHER)
    settle(review)
    held = staging(review)
    assert held.status == "CONFLICT"
    send(review, [ct(PatientID="P002")], Origin(OriginKind.IMPORT, user="third"))
    settle(review)
    http = client(review)
    other_study = http.post(
        f"/api/prearchive/{held.pk}/merge", json={"project": "DEFAULT", "into": "P002"}
    )
    assert other_study.status_code == 409 and "another study" in _detail(other_study)
    merged = http.post(
        f"/api/prearchive/{held.pk}/merge", json={"project": "DEFAULT", "into": "P001"}
    )
    assert merged.status_code == 200 and merged.json()["status"] == "ARCHIVED"
    assert http.get("/api/projects/DEFAULT/sessions/P001").json()["instance_count"] == 2
    assert "merged" in _actions(intake)


def test_move_and_merge_refused_while_receiving_and_once_archived(
    intake: Intake, tmp_path: Path
) -> None:
    review = make_review(intake, tmp_path, projects=[{"id": "OPEN"}])
    first = ct()
    send(review, [first])
    settle(review)
    archived = staging(review)
    assert archived.status == "ARCHIVED"
    waiting = replace(review, settings=review.settings.model_copy(update={"stable_after": 1e6}))
    send(waiting, [ct(study=first.StudyInstanceUID)], OTHER)
    receiving = staging(waiting)
    http = client(waiting)
    into = {"project": "DEFAULT", "into": "P001"}
    for pk, state in [(receiving.pk, "still receiving"), (archived.pk, "archived already")]:
        moved = http.post(f"/api/prearchive/{pk}/move", json={"project": "OPEN"})
        assert moved.status_code == 409 and state in _detail(moved), moved.text
        merged = http.post(f"/api/prearchive/{pk}/merge", json=into)
        assert merged.status_code == 409 and state in _detail(merged), merged.text
    assert staging(waiting, receiving.pk).status == "RECEIVING"
    assert staging(waiting, receiving.pk).project_id is None
    assert _actions(intake) == ["archived"]


def test_delete_removes_instances_and_blobs_and_is_recorded(intake: Intake, tmp_path: Path) -> None:
    review = make_review(intake, tmp_path)
    send(review, [ct()])
    settle(review)
    send(review, [ct()], OTHER)
    settle(review)
    held, archived = staging(review), staging(review, 1)
    http = client(review)
    refused = http.delete(f"/api/prearchive/{archived.pk}")
    assert refused.status_code == 409
    with intake.db.reader() as session:
        key = session.scalars(select(Instance.blob_key).where(Instance.staging_pk == held.pk)).one()
    done = http.delete(f"/api/prearchive/{held.pk}")
    assert done.status_code == 200 and done.json()["instances"] == 1
    assert not intake.blobs.exists(key)
    assert http.get(f"/api/prearchive/{held.pk}").status_code == 404
    with intake.db.reader() as session:
        assert session.scalar(select(func.count(StagingSession.pk))) == 1
    assert _actions(intake)[-1] == "deleted"


def test_quarantine_release_after_checks_and_delete(intake: Intake, tmp_path: Path) -> None:
    review = make_review(
        intake, tmp_path, projects=[{"id": "CARDED", "study_cards": CARDS}, {"id": "OPEN"}]
    )
    review = with_protocol(review, tmp_path, "rules: [{archive: CARDED}]")
    send(review, [ct()])
    send(review, [ct(PatientID="P2")], OTHER)
    settle(review)
    http = client(review)
    listed = http.get("/api/quarantine").json()
    assert sorted(q["label"] for q in listed) == ["P001", "P2"]
    assert {q["reasons"][0]["code"] for q in listed} == {"equipment_not_compatible"}
    refused = http.post("/api/quarantine/P001/release", json={"project": "CARDED"})
    assert refused.status_code == 409 and "equipment_not_compatible" in _detail(refused)
    released = http.post("/api/quarantine/P001/release", json={"project": "OPEN", "session": "S1"})
    assert released.status_code == 200, released.text
    assert released.json()["project"] == "OPEN" and released.json()["reasons"] == []
    assert http.delete("/api/quarantine/P001").status_code == 404
    assert http.delete("/api/quarantine/P2").json()["instances"] == 1
    assert [q["label"] for q in http.get("/api/quarantine").json()] == []
    assert _actions(intake)[-2:] == ["released", "quarantine_deleted"]


def test_malformed_requests_are_refused_and_change_nothing(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    send(review, [ct()])
    settle(review)
    pk = staging(review).pk
    http = client(review)
    assert http.get("/api/prearchive/abc").status_code == 400
    assert http.get("/api/prearchive/999").status_code == 404
    extra = http.post(f"/api/prearchive/{pk}/archive", json={"project": "DEFAULT", "x": 1})
    assert extra.status_code == 400 and "x" in _detail(extra)
    bad_id = http.post(f"/api/prearchive/{pk}/archive", json={"project": "../etc"})
    assert bad_id.status_code == 400
    assert http.post(f"/api/prearchive/{pk}/archive", json={"project": "NOPE"}).status_code == 404
    assert http.post(f"/api/prearchive/{pk}/rename", json={}).status_code == 400
    assert http.post(f"/api/prearchive/{pk}/merge", json={"project": "DEFAULT"}).status_code == 400
    assert http.post("/api/quarantine/NOPE/release", json={"project": "DEFAULT"}).status_code == 404
    assert staging(review, pk).status == "READY"
    assert _actions(intake) == []


def test_prearchive_list_filters_and_pages(intake: Intake, tmp_path: Path) -> None:
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    send(review, [ct(PatientID=f"P{i}") for i in range(3)])
    settle(review)
    http = client(review)
    assert [s["id"] for s in http.get("/api/prearchive").json()] == [3, 2, 1]
    page = http.get("/api/prearchive", params={"limit": 1, "offset": 1}).json()
    assert [s["id"] for s in page] == [2]
    assert http.get("/api/prearchive", params={"status": "ARCHIVED"}).json() == []
    assert http.get("/api/prearchive", params={"status": "bogus"}).status_code == 400
    assert http.get("/api/prearchive", params={"limit": 0}).status_code == 400


def test_an_instance_of_a_deleted_series_never_joins_the_series_that_took_its_pk(
    intake: Intake, tmp_path: Path
) -> None:
    # Intake remembers series and staging pks by UID. SQLite without AUTOINCREMENT hands the
    # pk of a deleted last row to the next insert, so a remembered pk could name another row.
    review = manual(make_review(intake, tmp_path), "DEFAULT")
    first = ct()
    send(review, [first])
    settle(review)
    old = staging(review)
    with intake.db.reader() as session:
        old_series = session.scalars(select(Series.pk)).one()
    assert delete(review, old.pk, caller=local_caller()) == 1
    other = ct()
    send(review, [other])
    with intake.db.reader() as session:
        assert session.scalars(select(Series.series_uid)).one() == other.SeriesInstanceUID
    again = ct(first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID)
    [result] = send(review, [again])
    assert result.outcome is Outcome.STORED, result.reason
    with intake.db.reader() as session:
        series_uid, study_uid = session.execute(
            select(Series.series_uid, StagingSession.study_uid)
            .join(Instance, Instance.series_pk == Series.pk)
            .join(StagingSession, Instance.staging_pk == StagingSession.pk)
            .where(Instance.sop_instance_uid == again.SOPInstanceUID)
        ).one()
        new_series = session.scalars(
            select(Series.pk).where(Series.series_uid == other.SeriesInstanceUID)
        ).one()
    assert (series_uid, study_uid) == (first.SeriesInstanceUID, first.StudyInstanceUID)
    assert new_series != old_series
