"""A de-identified project's index rows and blobs hold no identifying value of the import.

The study carries planted fake PHI in every place the index copies header values from (names,
IDs, dates, institution, station, device serial, accession, physicians). It is imported by a
real ``import_files`` job with an operator-confirmed identity, reviewed (renamed while in the
prearchive) and archived into a de-identified project. Then every row of every table of the
index and every stored blob is searched: only the identity vault, kept apart and encrypted,
may hold the PHI.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select

from dicomgate.archive.models import Base, Instance, Patient, Series, StagingSession, Study
from dicomgate.archive.session_models import (
    ArchivedSession,
    EquipmentSeen,
    PrearchiveAction,
    StagingReview,
)
from dicomgate.archive.share import bind_share
from dicomgate.auth.guard import local_caller
from dicomgate.deid import TABLE_EDITION
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.jobs.models import Job, JobItem
from dicomgate.prearchive import actions
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from tests.integration.deid.conftest import BOTH_DATABASES, Site
from tests.unit.deid.deid_builders import ROOT, ct_slice, to_bytes

MakeSite = Callable[..., Site]
PHI = (
    "ZQXDOE",  # patient's last name (and in the study description)
    "ZQXJOHN",  # first name
    "ZQXSMITH",  # birth name
    "PIDQ778899",  # Patient ID
    "OPIDQ5566",  # Other Patient IDs
    "ACCQ4455",  # Accession Number
    "STIDQ321",  # Study ID
    "19600215",  # birth date
    "1960-02-15",
    "20240312",  # study, series, content dates
    "2024-03-12",
    "ZQXGENERAL",  # institution name
    "ZQXSTREET",  # institution address
    "ZQXSTATION",  # station name
    "SNQ998877",  # device serial number
    "ZQXWELBY",  # referring physician
    "ZQXOPERATOR",  # operator
    "ZQXPERFORMER",  # performing physician
    ROOT,  # every original UID starts with it
)


def phi_study() -> list[Dataset]:
    """Return two CT slices carrying the planted PHI everywhere the index might copy it."""
    slices = [ct_slice(0), ct_slice(1)]
    for ds in slices:
        ds.PatientBirthName = "ZQXSMITH"
        ds.OtherPatientIDs = "OPIDQ5566"
        ds.StudyID = "STIDQ321"
        ds.InstitutionAddress = "1 ZQXSTREET"
        ds.OperatorsName = "ZQXOPERATOR^A"
        ds.PerformingPhysicianName = "ZQXPERFORMER^B"
        ds.SeriesDescription = "ZQXDOE chest"
    return slices


def _rows(site: Site) -> dict[str, list[str]]:
    """Return every row of every table of the index, as JSON text, by table."""
    dumped: dict[str, list[str]] = {}
    with site.db.reader() as session:
        for table in Base.metadata.sorted_tables:
            rows = session.execute(select(table)).mappings()
            dumped[table.name] = [json.dumps(dict(r), default=str) for r in rows]
    return dumped


def _files_bytes(root: Path, skip: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p != skip and not p.name.startswith("index.sqlite3")
    }


def _leaks(text: str) -> list[str]:
    upper = text.upper()
    return [phi for phi in PHI if phi.upper() in upper]


def _import(site: Site, tmp_path: Path) -> None:
    folder = tmp_path / "incoming" / "cd-0001"  # an import path that names nobody
    folder.mkdir(parents=True)
    for n, ds in enumerate(phi_study()):
        (folder / f"IM{n:04d}").write_bytes(to_bytes(ds))
    confirmed = {"first_name": "zqxjohn", "last_name": "Zqxdoe", "birth_date": "1960-02-15"}
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=1)
    jobs = Jobs(site.review.intake, config)
    params = {"paths": [str(folder)], "project": "RESEARCH", "identity": confirmed}
    job = jobs.run_inline(jobs.submit("import_files", params, owner="dm"))
    assert job.status.value == "SUCCEEDED", job.message


@BOTH_DATABASES
def test_deidentified_project_rows_and_blobs_hold_no_phi(
    make_site: MakeSite, tmp_path: Path
) -> None:
    research = {"id": "RESEARCH", "archive_policy": "manual", "deid": {"profile": {}}}
    site = make_site(research)
    _import(site, tmp_path)
    site.run()  # checked, waits for review (manual policy)
    [staging] = site.staging()
    assert staging.status == "READY"
    actions.rename(site.review, staging.pk, subject="ZQXDOE ZQXJOHN", caller=local_caller())
    actions.archive(site.review, staging.pk, caller=local_caller())
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "SUBJ-0001"
    assert len(site.stored(archived)) == 2
    dumped = _rows(site)
    with site.db.reader() as session:
        assert session.scalars(select(EquipmentSeen)).all()  # equipment is recorded...
        assert session.scalars(select(StagingSession)).all()
        items = list(session.scalars(select(JobItem)))
        [job] = session.scalars(select(Job))
    assert "identity" not in job.params and job.params["project"] == "RESEARCH"
    stored = {str(ds.SOPInstanceUID) for ds in site.stored(archived)}
    assert {i.detail["sop_instance_uid"] for i in items} == stored  # the new UIDs
    assert {i.detail["deidentified"] for i in items} == {TABLE_EDITION}
    found = {
        name: leaks for name, rows in dumped.items() for leaks in [_leaks("\n".join(rows))] if leaks
    }
    assert found == {}  # ...without the device's identity, as every other row
    vault = site.review.settings.data_dir / "identity-vault.sqlite3"
    for path, data in _files_bytes(site.review.settings.data_dir, vault).items():
        text = data.decode("latin-1")
        assert _leaks(text) == [], path
    assert _leaks(vault.read_bytes().decode("latin-1")) == []  # encrypted at rest


def _project_rows(site: Site, project: str) -> list[str]:
    """Return every index row linked to ``project``, as JSON text."""
    with site.db.reader() as session:
        stagings = [s.pk for s in session.scalars(select(StagingSession))
                    if s.project_id == project]  # fmt: skip
        studies = list(session.scalars(select(Study).where(Study.project_id == project)))
        series = list(
            session.scalars(select(Series).where(Series.study_pk.in_([s.pk for s in studies])))
        )
        rows: list[object] = [
            *session.scalars(select(StagingSession).where(StagingSession.pk.in_(stagings))),
            *session.scalars(select(StagingReview).where(StagingReview.staging_pk.in_(stagings))),
            *session.scalars(select(ArchivedSession).where(ArchivedSession.project_id == project)),
            *session.scalars(select(EquipmentSeen).where(EquipmentSeen.project_id == project)),
            *session.scalars(
                select(PrearchiveAction).where(
                    (PrearchiveAction.project_id == project)
                    | PrearchiveAction.staging_pk.in_(stagings)
                )
            ),
            *studies,
            *series,
            *session.scalars(select(Instance).where(Instance.staging_pk.in_(stagings))),
            *session.scalars(
                select(Patient).where(Patient.pk.in_([s.patient_pk for s in studies]))
            ),
        ]
        return [
            json.dumps({c.key: getattr(r, c.key) for c in r.__table__.columns}, default=str)  # type: ignore[attr-defined]
            for r in rows
        ]


def test_shared_copy_rows_hold_no_phi(make_site: MakeSite) -> None:
    site = make_site({"id": "CLINIC"}, {"id": "RESEARCH", "deid": {"profile": {}}})
    site.send(phi_study(), "CLINIC")
    site.run()
    [clinical] = site.sessions("CLINIC")
    assert clinical.label == "PIDQ778899"  # the identified project names the patient
    bind_share(site.review)
    jobs = Jobs(site.review.intake, JobsConfig(retry_base_delay=0, retry_max_delay=0))
    params = {"source_project": "CLINIC", "session": clinical.label, "target_project": "RESEARCH"}
    job = jobs.run_inline(jobs.submit("share_session", params, owner="dm"))
    assert job.status.value == "SUCCEEDED", job.message
    [shared] = site.sessions("RESEARCH")
    rows = _project_rows(site, "RESEARCH")
    assert len(rows) > 8  # staging, review, session, actions, study, series, instances, patient
    assert [(row, _leaks(row)) for row in rows if _leaks(row)] == []
    assert all(_leaks(ds.to_json()) == [] for ds in site.stored(shared))
