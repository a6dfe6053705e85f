"""A de-identified project's index rows and blobs hold no identifying value of the import.

The study carries planted fake PHI in every place the index copies header values from (names,
IDs, dates, institution, station, device serial, accession, physicians). It is imported by a
real ``import_files`` job with an operator-confirmed identity, reviewed (renamed while in the
prearchive) and archived into a de-identified project. Then every row of every table of the
index and every stored blob is searched: only the identity vault, kept apart and encrypted,
may hold the PHI.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from dicomgate.archive.models import StagingSession
from dicomgate.archive.session_models import EquipmentSeen
from dicomgate.archive.share import bind_share
from dicomgate.auth.guard import local_caller
from dicomgate.deid import TABLE_EDITION
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.jobs.models import Job, JobItem
from dicomgate.prearchive import actions
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from tests.integration.deid.conftest import BOTH_DATABASES, Site
from tests.integration.deid.phi_support import index_rows, leaks, phi_study, project_rows
from tests.unit.deid.deid_builders import to_bytes

MakeSite = Callable[..., Site]


def _files_bytes(root: Path, skip: Path) -> dict[str, bytes]:
    return {
        str(p): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p != skip and not p.name.startswith("index.sqlite3")
    }


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
    dumped = index_rows(site)
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
        name: hits for name, rows in dumped.items() for hits in [leaks("\n".join(rows))] if hits
    }
    assert found == {}  # ...without the device's identity, as every other row
    vault = site.review.settings.data_dir / "identity-vault.sqlite3"
    for path, data in _files_bytes(site.review.settings.data_dir, vault).items():
        text = data.decode("latin-1")
        assert leaks(text) == [], path
    assert leaks(vault.read_bytes().decode("latin-1")) == []  # encrypted at rest


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
    rows = project_rows(site, "RESEARCH")
    assert len(rows) > 8  # staging, review, session, actions, study, series, instances, patient
    assert [(row, leaks(row)) for row in rows if leaks(row)] == []
    assert all(leaks(ds.to_json()) == [] for ds in site.stored(shared))
