"""Projects over REST: create (and refusals), list with counts, browse down to scans."""

from __future__ import annotations

from pathlib import Path

from dicomgate.intake.receive import Intake
from tests.integration.prearchive_support import client, ct, make_review, send, settle

CARDS = {
    "cards": [
        {
            "name": "ge",
            "match": {"Manufacturer": "GE MEDICAL SYSTEMS"},
            "assign": [{"attribute": "Modality", "regex": "CT", "set": {"scan_type": "ct"}}],
        }
    ]
}


def test_create_list_and_refusals(intake: Intake, tmp_path: Path) -> None:
    http = client(make_review(intake, tmp_path))
    made = http.post("/api/projects", json={"id": "LUNG_CT", "archive_policy": "manual"})
    assert made.status_code == 201
    assert made.json() == {
        "id": "LUNG_CT",
        "name": "LUNG_CT",
        "description": "",
        "archive_policy": "manual",
        "subjects": 0,
        "sessions": 0,
    }
    assert http.post("/api/projects", json={"id": "LUNG_CT"}).status_code == 409
    assert http.post("/api/projects", json={"id": "a/b"}).status_code == 400
    assert (
        http.post("/api/projects", json={"id": "X", "archive_policy": "often"}).status_code == 400
    )
    ids = [p["id"] for p in http.get("/api/projects").json()]
    assert ids == ["DEFAULT", "LUNG_CT", "QUARANTINE"]
    assert http.get("/api/projects/NOPE").status_code == 404
    assert http.get("/api/projects/NOPE/subjects").status_code == 404


def test_browse_subjects_sessions_scans_and_equipment(intake: Intake, tmp_path: Path) -> None:
    plain = make_review(intake, tmp_path)  # archived before the project had study cards
    first = ct()
    second = ct(study=first.StudyInstanceUID, SeriesInstanceUID=first.SeriesInstanceUID)
    send(plain, [first, second, ct(PatientID="P002")])
    settle(plain)
    review = make_review(intake, tmp_path, projects=[{"id": "DEFAULT", "study_cards": CARDS}])
    http = client(review)
    project = http.get("/api/projects/DEFAULT").json()
    assert (project["subjects"], project["sessions"]) == (1, 2)
    assert http.get("/api/projects/DEFAULT/subjects").json() == [
        {"label": "DOE_JANE", "sessions": 2}
    ]
    sessions = http.get("/api/projects/DEFAULT/subjects/DOE_JANE/sessions").json()
    assert [s["label"] for s in sessions] == ["P001", "P002"]
    detail = http.get("/api/projects/DEFAULT/sessions/P001").json()
    assert detail["scan_count"] == 1 and detail["instance_count"] == 2
    assert detail["scans"][0]["instance_count"] == 2
    assert detail["scans"][0]["metadata"] == {}
    assert http.get("/api/projects/DEFAULT/sessions/NOPE").status_code == 404
    equipment = http.get("/api/projects/DEFAULT/equipment").json()
    assert [(e["Manufacturer"], e["sessions"]) for e in equipment] == [("GE MEDICAL SYSTEMS", 2)]
    applied = http.post("/api/projects/DEFAULT/study-cards/apply")
    assert applied.json() == {"project": "DEFAULT", "sessions": 2}
    detail = http.get("/api/projects/DEFAULT/sessions/P002").json()
    assert detail["scans"][0]["metadata"] == {"scan_type": "ct", "card": "ge"}
    assert http.post("/api/projects/QUARANTINE/study-cards/apply").status_code == 400
