"""Releasing a quarantined session into a de-identified project de-identifies it.

A release goes through the target project's checks and the same archive path as any archive
into that project: de-identification, the identity vault, the scrub of what the index copied
from the original. When that path would not store the session (burned-in text, a hold) the
release is refused and the session stays in QUARANTINE as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dicomgate.archive.session_models import ArchivedSession
from dicomgate.auth.guard import local_caller
from dicomgate.prearchive.quarantine import release
from tests.integration.deid.conftest import RESEARCH, Site
from tests.integration.deid.phi_support import index_rows, leaks, phi_study, project_rows
from tests.integration.prearchive_support import client, with_protocol
from tests.unit.deid.deid_builders import ct_slice

MakeSite = Callable[..., Site]
HOLD_ALL = "rules: [{name: hold, when: {Modality: CT}, quarantine: reviewed first}]"


def _blob_files(site: Site) -> int:
    return sum(1 for p in (site.review.settings.data_dir / "blobs").rglob("*") if p.is_file())


def _quarantined(site: Site, tmp_path: Path) -> ArchivedSession:
    """Quarantine the planted-PHI study by the protocol, in two imports (two staging sessions)."""
    site.review = with_protocol(site.review, tmp_path, HOLD_ALL)
    first, second = phi_study()
    site.send([first], "RESEARCH")
    site.send([second], "RESEARCH")
    site.run()
    [quarantined] = site.sessions("QUARANTINE")
    assert quarantined.label == "PIDQ778899" and site.sessions("RESEARCH") == []
    return quarantined


def test_release_into_a_deidentified_project_leaves_no_phi_there(
    make_site: MakeSite, tmp_path: Path
) -> None:
    site = make_site(RESEARCH)
    quarantined = _quarantined(site, tmp_path)
    label = release(site.review, quarantined.label, "RESEARCH", caller=local_caller())
    assert site.sessions("QUARANTINE") == []
    [released] = site.sessions("RESEARCH")
    assert released.label == label and released.subject_label == "SUBJ-0001"
    stored = site.stored(released)
    assert len(stored) == 2 and {ds.PatientID for ds in stored} == {"SUBJ-0001"}
    assert [ds.SOPInstanceUID for ds in stored if leaks(ds.to_json())] == []
    rows = project_rows(site, "RESEARCH")
    assert len(rows) > 8  # stagings, reviews, session, actions, study, series, instances...
    assert [(row, leaks(row)) for row in rows if leaks(row)] == []
    dumped = {name: "\n".join(rows) for name, rows in index_rows(site).items()}
    # QUARANTINE counted the equipment (serial, station) when it arrived; nothing else keeps PHI.
    assert {name for name, text in dumped.items() if leaks(text)} <= {"equipment_seen"}
    assert _blob_files(site) == 2  # the originals' blobs are gone with them


def test_release_keeps_the_original_in_the_identified_project(
    make_site: MakeSite, tmp_path: Path
) -> None:
    site = make_site({"id": "CLINIC"}, RESEARCH, identified_project="CLINIC")
    quarantined = _quarantined(site, tmp_path)
    release(site.review, quarantined.label, "RESEARCH", caller=local_caller())
    [kept], [copy] = site.sessions("CLINIC"), site.sessions("RESEARCH")
    assert site.sessions("QUARANTINE") == []
    assert {ds.PatientID for ds in site.stored(kept)} == {"PIDQ778899"}
    assert {ds.PatientID for ds in site.stored(copy)} == {"SUBJ-0001"}
    assert [(row, leaks(row)) for row in project_rows(site, "RESEARCH") if leaks(row)] == []


def test_release_refused_when_deidentification_finds_burned_in_text(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    us = ct_slice(0)
    us.Modality = "US"
    site.send([us], "RESEARCH")
    site.run()
    [quarantined] = site.sessions("QUARANTINE")
    assert quarantined.reasons[0]["code"] == "burned_in_annotation"
    files = _blob_files(site)
    refused = client(site.review).post(
        f"/api/quarantine/{quarantined.label}/release", json={"project": "RESEARCH"}
    )
    assert refused.status_code == 409
    assert "burned_in_annotation" in refused.json()["detail"]
    assert "stays in QUARANTINE" in refused.json()["detail"]
    assert site.sessions("RESEARCH") == []
    [still] = site.sessions("QUARANTINE")

    def kept(row: ArchivedSession) -> tuple[object, ...]:
        return row.pk, row.label, row.subject_label, row.reasons, row.proposed_project

    assert kept(still) == kept(quarantined)
    [staging] = site.staging()
    assert (staging.status, staging.project_id) == ("ARCHIVED", "QUARANTINE")
    assert staging.reasons == quarantined.reasons
    assert site.stored(still)[0].PatientID == "PIDQ778899"
    assert _blob_files(site) == files  # no de-identified copy left behind
