"""Retrieve and CSV mass import as jobs against a real Orthanc: reconciled, polite, resumable."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from pydicom.uid import generate_uid
from sqlalchemy import func, select
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api_errors import install_error_handlers
from dicomgate.access.pacs_jobs_api import create_pacs_jobs_api
from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import Instance, SetAside, StagingSession
from dicomgate.auth.guard import local_caller, open_gate
from dicomgate.intake.receive import Intake
from dicomgate.jobs import Jobs, JobStatus
from dicomgate.jobs.config import JobsConfig
from dicomgate.sources.pacs import csv_import
from dicomgate.sources.pacs import jobs as pacs_jobs
from dicomgate.sources.pacs.models import RetrieveRequest
from dicomgate.sources.pacs.service import PacsService
from dicomgate.sources.scp import Receiver
from tests.fake_clock import FakeClock
from tests.integration.pacs_corpus import CorpusStudy, instance
from tests.integration.pacs_peer import Peer, start_peer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_peer(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.orthanc.stop()


@pytest.fixture()
def jobs(intake: Intake) -> Jobs:
    with intake.db.unit_of_work() as session:
        ensure_project(session, "COHORT")
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=3, lease_seconds=5)
    return Jobs(intake, config)


@pytest.fixture()
def receiver(peer: Peer, intake: Intake, tmp_path: Path) -> Iterator[Receiver]:
    server = Receiver(peer.settings(tmp_path), intake)
    yield server
    server.stop()


def _bind(peer: Peer, intake: Intake, tmp_path: Path, **changes: object) -> PacsService:
    service = peer.service(intake, tmp_path, **changes)
    pacs_jobs.bind(service)
    return service


def _submit(jobs: Jobs, service: PacsService, *studies: CorpusStudy) -> str:
    targets = [{"level": "STUDY", "uid": s.study_uid} for s in studies]
    params = {"node": "orthanc", "targets": targets, "project": "COHORT"}
    return pacs_jobs.submit_retrieve(jobs, service, params, local_caller())


def _instances(intake: Intake) -> int:
    with intake.db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


@pytest.mark.usefixtures("receiver")
def test_retrieve_job_succeeds_with_counts_per_request(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    service = _bind(peer, intake, tmp_path)
    study = peer.studies[0]
    job_id = _submit(jobs, service, study)
    job = jobs.run_inline(job_id)
    assert job.status is JobStatus.SUCCEEDED
    items = jobs.items(job_id).items
    assert {i.key for i in items} == set(study.sop_uids)
    assert {i.outcome for i in items} == {"stored"}
    with intake.db.reader() as session:
        rows = session.scalars(select(RetrieveRequest).where(RetrieveRequest.job_id == job_id))
        assert sorted((r.method, r.status, r.completed, r.failed) for r in rows) == [
            ("c-move", "0x0000", 3, 0),
            ("c-move", "0x0000", 3, 0),
        ]
    assert any("c-move series" in line.message for line in jobs.log_lines(job_id))


def test_c_get_job_with_a_series_deleted_while_it_waited(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    night = dt.datetime(2025, 12, 4, 21, tzinfo=dt.UTC)
    day = night + dt.timedelta(hours=12)
    clock = FakeClock(night)
    windows = [{"start": "20:00", "end": "08:00"}]
    service = peer.service(intake, tmp_path, clock, retrieve_method="c-get", windows=windows)
    pacs_jobs.bind(service)
    study = CorpusStudy("PAT010", "ECHO^EVA", generate_uid(), "20240303", "A10", "MR")
    kept, gone = generate_uid(), generate_uid()
    for series in (kept, gone):
        for n in range(2):
            peer.orthanc.upload(instance(study, series, n + 1))
    job_id = _submit(jobs, service, study)
    # The finds (the study's SOP classes, its instances) run at night; the window has closed
    # for the get.
    clock.script = [night, night, day]
    jobs.engine.run(job_id)
    assert jobs.get(job_id).status is JobStatus.WAITING
    peer.delete_series(gone)  # gone from the PACS while the job waited
    clock.set(night + dt.timedelta(days=1))
    jobs.engine.run(job_id)
    job = jobs.get(job_id)
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    outcomes = {i.key: i.outcome for i in jobs.items(job_id).items}
    assert {k for k, o in outcomes.items() if o == "missing"} == set(study.series[gone])
    assert {k for k, o in outcomes.items() if o == "stored"} == set(study.series[kept])


@pytest.mark.usefixtures("receiver")
def test_job_waits_outside_the_window_and_continues_inside(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    # A past date, so the engine (real clock) may run the job as soon as the window opens.
    clock = FakeClock(dt.datetime(2025, 12, 4, 12, tzinfo=dt.UTC))
    service = peer.service(intake, tmp_path, clock, windows=[{"start": "20:00", "end": "08:00"}])
    pacs_jobs.bind(service)
    study = peer.studies[1]
    job_id = _submit(jobs, service, study)
    jobs.engine.run(job_id)
    job = jobs.get(job_id)
    assert job.status is JobStatus.WAITING
    assert job.resume_at == dt.datetime(2025, 12, 4, 20, tzinfo=dt.UTC)
    assert _instances(intake) == 0
    clock.set(dt.datetime(2025, 12, 4, 21, tzinfo=dt.UTC))
    jobs.engine.run(job_id)
    assert jobs.get(job_id).status is JobStatus.SUCCEEDED
    assert _instances(intake) == len(study.sop_uids)


@pytest.mark.usefixtures("receiver")
def test_rerun_of_a_retrieve_skips_what_is_there(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    service = _bind(peer, intake, tmp_path)
    study = peer.studies[2]
    assert jobs.run_inline(_submit(jobs, service, study)).status is JobStatus.SUCCEEDED
    second = _submit(jobs, service, study)
    assert jobs.run_inline(second).status is JobStatus.SUCCEEDED
    assert {i.outcome for i in jobs.items(second).items} == {"already_stored"}
    with intake.db.reader() as session:
        query = select(func.count()).select_from(RetrieveRequest)
        asked = session.scalar(query.where(RetrieveRequest.job_id == second))
    assert asked == 0 and _instances(intake) == len(study.sop_uids)


def test_bad_retrieve_parameters_are_refused(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    service = _bind(peer, intake, tmp_path)
    client = _client(service, jobs)
    ok = {"targets": [{"level": "STUDY", "uid": "1.2.3"}]}
    assert client.post("/api/pacs/nowhere/retrieve", json=ok).status_code == 400
    bad_uid = {"targets": [{"level": "STUDY", "uid": "not a uid"}]}
    assert client.post("/api/pacs/orthanc/retrieve", json=bad_uid).status_code == 400
    series = {"targets": [{"level": "SERIES", "uid": "1.2.3"}]}
    assert "study_uid" in client.post("/api/pacs/orthanc/retrieve", json=series).json()["detail"]
    project = {**ok, "project": "NOPE"}
    assert client.post("/api/pacs/orthanc/retrieve", json=project).status_code == 400
    response = client.post("/api/pacs/orthanc/retrieve", json=ok)
    assert response.status_code == 202 and response.headers["Location"].startswith("/api/jobs/")


def _client(service: PacsService, jobs: Jobs) -> TestClient:
    app = FastAPI()
    app.include_router(create_pacs_jobs_api(service, jobs, open_gate()))
    install_error_handlers(app)
    return TestClient(app)


@pytest.mark.usefixtures("receiver")
def test_csv_mass_import_reports_each_row(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path
) -> None:
    service = _bind(peer, intake, tmp_path)
    a, b = peer.studies[0], peer.studies[3]
    text = (
        "PatientID,AccessionNumber,PatientBirthDate,project,subject,session\n"
        f"{a.patient_id},{a.accession},19700101,COHORT,S01,V1\n"
        f"{b.patient_id},{b.accession},19991231,COHORT,S02,V1\n"
        "NOBODY,ACC0000,,,,\n"
        ",,,COHORT,S04,V1\n"
    )
    client = _client(service, jobs)
    response = client.post("/api/pacs/orthanc/import", content=text)
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    assert jobs.run_inline(job_id).status is JobStatus.COMPLETED_WITH_ERRORS
    report = client.get(f"/api/pacs/imports/{job_id}")
    lines = report.text.splitlines()
    assert lines[0] == (
        "row,PatientID,AccessionNumber,PatientBirthDate,project,subject,session,status,reason"
    )
    statuses = [line.split(",")[-2:] for line in lines[1:]]
    assert statuses[0] == ["OK", f"OK: {len(a.sop_uids)} instance(s)"]
    assert statuses[1] == ["KO", "KO: identity check failed (PatientBirthDate differ)"]
    assert statuses[2] == ["KO", "KO: no study matches the row's keys"]
    assert statuses[3] == ["KO", "KO: the row has no query key"]
    assert _instances(intake) == len(a.sop_uids)  # the mismatching patient was not retrieved
    with intake.db.reader() as session:
        origins = list(session.scalars(select(StagingSession.origin)))
    assert [(o["project"], o["subject_label"], o["session_label"]) for o in origins] == [
        ("COHORT", "S01", "V1")
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Bogus\n1\n", "unknown column"),
        ("project,subject\nP,S\n", "no query column"),
        ("PatientID\n", "no rows"),
    ],
)
def test_bad_mass_import_csv(
    peer: Peer, intake: Intake, jobs: Jobs, tmp_path: Path, text: str, message: str
) -> None:
    client = _client(_bind(peer, intake, tmp_path), jobs)
    response = client.post("/api/pacs/orthanc/import", content=text)
    assert response.status_code == 400 and message in response.json()["detail"]
    assert client.post("/api/pacs/orthanc/import", content=b"\xff\xfe").status_code == 400
    no_project = client.post("/api/pacs/orthanc/import?project=NOPE", content="PatientID\nP1\n")
    assert no_project.status_code == 400 and "NOPE" in no_project.json()["detail"]
    assert csv_import.row_key(0) == "row:00001"


def test_crash_and_resume_without_duplicates(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    """A worker killed mid-retrieve: another run picks the job up and stores nothing twice."""
    with intake.db.unit_of_work() as session:
        ensure_project(session, "COHORT")
    study = CorpusStudy("PAT020", "GOLF^GUS", generate_uid(), "20240404", "A20", "CT")
    series = generate_uid()
    for n in range(120):
        peer.orthanc.upload(instance(study, series, n + 1))
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, lease_seconds=1)
    jobs = Jobs(intake, config)
    service = _bind(peer, intake, tmp_path)
    job_id = _submit(jobs, service, study)
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.pacs_worker", intake.db.url, str(tmp_path),
         str(peer.receiver_port), str(peer.orthanc.dicom_port), job_id],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while _instances(intake) < 10 and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
    before = _instances(intake)
    assert 0 < before < 120, "the worker was not killed in the middle of the retrieve"
    assert jobs.get(job_id).status is JobStatus.RUNNING  # as the dead worker left it
    time.sleep(1.5)  # its claim expires (lease 1 s)
    server = Receiver(peer.settings(tmp_path), intake)
    try:
        jobs.engine.run(job_id)
    finally:
        server.stop()
    job = jobs.get(job_id)
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert _instances(intake) == 120
    items = jobs.items(job_id, limit=1000).items
    assert len(items) == 120 and {i.outcome for i in items} == {"stored"}
    with intake.db.reader() as session:
        assert session.scalar(select(func.count()).select_from(SetAside)) == 0
