"""The read-only access API on SQLite and PostgreSQL: filters, paging, files, staging, errors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pydicom
import pytest
from fastapi import FastAPI
from pydicom.uid import generate_uid
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access import api_queries
from dicomgate.access.api import create_api, install_error_handlers
from dicomgate.archive.models import Instance, StagingSession
from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.http import open_dependency
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from tests.conftest import PYDICOM_FILES

with warnings.catch_warnings():
    # starlette asks for httpx2 but still works with the httpx the project depends on.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

ORIGIN = Origin(OriginKind.IMPORT)
PROBLEM = "application/problem+json"


def _file(name: str) -> bytes:
    return (PYDICOM_FILES / name).read_bytes()


def _ct_copy(patient_id: str, study_date: str) -> tuple[bytes, str]:
    ds = pydicom.dcmread(BytesIO(_file("CT_small.dcm")))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.StudyDate = patient_id, study_date
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), str(ds.StudyInstanceUID)


_TRAILS: list[AuditTrail] = []


@pytest.fixture(autouse=True)
def _close_trails() -> Iterator[None]:
    yield
    while _TRAILS:
        _TRAILS.pop().dispose()


def _client(intake: Intake) -> TestClient:
    app = FastAPI()
    audit = AuditTrail(f"sqlite:///{intake.blobs.root.parent / 'audit.sqlite3'}")
    _TRAILS.append(audit)
    app.include_router(create_api(intake.db, intake.blobs, open_dependency, audit))
    install_error_handlers(app)
    return TestClient(app)


def _store(intake: Intake, data: bytes) -> str:
    result = receive(intake, data, ORIGIN)
    assert result.ok, result.reason
    assert result.sop_instance_uid is not None
    return result.sop_instance_uid


@pytest.fixture()
def filled(intake: Intake) -> tuple[TestClient, dict[str, str]]:
    uids: dict[str, str] = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        data = _file(name)
        _store(intake, data)
        uids[name] = str(pydicom.dcmread(BytesIO(data)).StudyInstanceUID)
    for patient_id, date in (("PAT-001", "20200101"), ("PAT-002", "20200615"), ("pat_3", "")):
        data, study_uid = _ct_copy(patient_id, date)
        _store(intake, data)
        uids[patient_id] = study_uid
    return _client(intake), uids


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    return body


def _study_uids(client: TestClient, **params: Any) -> set[str]:
    response = client.get("/api/studies", params=params)
    assert response.status_code == 200, response.text
    return {s["study_uid"] for s in response.json()["studies"]}


def test_health(intake: Intake) -> None:
    response = _client(intake).get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_health_reports_503_when_the_database_fails(
    intake: Intake, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(_session: Any) -> None:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    monkeypatch.setattr(api_queries, "ping", down)
    body = _problem(_client(intake).get("/api/health"), 503)
    assert "connection refused" not in body["detail"]


def test_list_all_studies_with_counts(filled: tuple[TestClient, dict[str, str]]) -> None:
    client, uids = filled
    body = client.get("/api/studies").json()
    assert body["total"] == 6 and body["limit"] == 100 and body["offset"] == 0
    ct = next(s for s in body["studies"] if s["study_uid"] == uids["CT_small.dcm"])
    assert ct["modalities"] == ["CT"]
    assert ct["series_count"] == 1 and ct["instance_count"] == 1
    assert ct["patient_id"] == "1CT1"
    assert ct["study_date"] == "20040119"
    assert {"patient_name", "study_description", "accession_number", "project_id"} <= ct.keys()


def test_patient_id_exact_and_wildcards(filled: tuple[TestClient, dict[str, str]]) -> None:
    client, uids = filled
    assert _study_uids(client, PatientID="PAT-001") == {uids["PAT-001"]}
    assert _study_uids(client, PatientID="PAT-*") == {uids["PAT-001"], uids["PAT-002"]}
    assert _study_uids(client, PatientID="PAT-00?") == {uids["PAT-001"], uids["PAT-002"]}
    assert _study_uids(client, PatientID="pat-*") == set()  # matching is case-sensitive
    assert _study_uids(client, PatientID="pat_*") == {uids["pat_3"]}
    # '_' and '%' are literals, not SQL wildcards.
    assert _study_uids(client, PatientID="pat?3") == {uids["pat_3"]}
    assert _study_uids(client, PatientID="PAT_001") == set()
    assert _study_uids(client, PatientID="%") == set()
    assert _study_uids(client, PatientID="PAT%*") == set()


def test_study_date_exact_range_and_open_ranges(
    filled: tuple[TestClient, dict[str, str]],
) -> None:
    client, uids = filled
    assert _study_uids(client, StudyDate="20200101") == {uids["PAT-001"]}
    in_2020 = _study_uids(client, StudyDate="20200101-20201231")
    assert in_2020 == {uids["PAT-001"], uids["PAT-002"]}
    assert uids["PAT-002"] in _study_uids(client, StudyDate="20200201-")
    assert uids["PAT-001"] not in _study_uids(client, StudyDate="20200201-")
    before = _study_uids(client, StudyDate="-20191231")
    assert uids["CT_small.dcm"] in before
    assert not before & {uids["PAT-001"], uids["PAT-002"], uids["pat_3"]}


def test_modality_filter(filled: tuple[TestClient, dict[str, str]]) -> None:
    client, uids = filled
    assert _study_uids(client, Modality="MR") == {uids["MR_small.dcm"]}
    assert uids["PAT-001"] in _study_uids(client, Modality="CT")
    assert _study_uids(client, Modality="XA") == set()
    combined = _study_uids(client, Modality="CT", PatientID="PAT-*", StudyDate="20200601-")
    assert combined == {uids["PAT-002"]}


def test_paging(filled: tuple[TestClient, dict[str, str]]) -> None:
    client, _ = filled
    seen: list[str] = []
    for offset in (0, 4):
        body = client.get("/api/studies", params={"limit": 4, "offset": offset}).json()
        assert body["total"] == 6 and body["limit"] == 4 and body["offset"] == offset
        seen += [s["study_uid"] for s in body["studies"]]
    assert len(seen) == len(set(seen)) == 6
    beyond = client.get("/api/studies", params={"offset": 100}).json()
    assert beyond["total"] == 6 and beyond["studies"] == []


def test_study_detail_and_unknown_study(filled: tuple[TestClient, dict[str, str]]) -> None:
    client, uids = filled
    body = client.get(f"/api/studies/{uids['MR_small.dcm']}").json()
    assert body["study_uid"] == uids["MR_small.dcm"]
    assert body["modalities"] == ["MR"]
    (series,) = body["series"]
    assert series["modality"] == "MR" and series["instance_count"] == 1
    assert {"series_uid", "series_number", "series_description"} <= series.keys()
    _problem(client.get("/api/studies/1.2.3.4.5"), 404)
    _problem(client.get("/api/studies/not a uid'; DROP TABLE studies;--"), 404)


def test_file_download_is_the_stored_blob(intake: Intake) -> None:
    sop_uid = _store(intake, _file("JPEG2000.dcm"))
    with intake.db.reader() as session:
        key = session.scalars(
            select(Instance.blob_key).where(Instance.sop_instance_uid == sop_uid)
        ).one()
    response = _client(intake).get(f"/api/instances/{sop_uid}/file")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/dicom"
    assert response.content == intake.blobs.read(key)
    _problem(_client(intake).get("/api/instances/1.2.3/file"), 404)
    _problem(_client(intake).get("/api/instances/%00x/file"), 404)


def test_staging_list_and_status_filter(
    intake: Intake, filled: tuple[TestClient, dict[str, str]]
) -> None:
    client, uids = filled
    body = client.get("/api/staging").json()
    assert body["total"] == 6 and len(body["sessions"]) == 6
    first = body["sessions"][0]
    assert first["status"] == "RECEIVING" and first["instance_count"] == 1
    expected = {"id", "study_uid", "source_key", "project_id", "created_at"}
    assert expected | {"last_received_at", "reasons"} <= first.keys()
    with intake.db.unit_of_work() as session:
        session.execute(
            update(StagingSession)
            .where(StagingSession.study_uid == uids["MR_small.dcm"])
            .values(status="READY")
        )
    ready = client.get("/api/staging", params={"status": "READY"}).json()
    assert ready["total"] == 1 and ready["sessions"][0]["study_uid"] == uids["MR_small.dcm"]
    assert client.get("/api/staging", params={"status": "ARCHIVED"}).json()["total"] == 0
    paged = client.get("/api/staging", params={"limit": 2, "offset": 1}).json()
    assert paged["total"] == 6 and len(paged["sessions"]) == 2
    assert (
        "status" in _problem(client.get("/api/staging", params={"status": "bogus"}), 400)["detail"]
    )


@pytest.mark.parametrize(
    "date", ["2020", "20201332", "2020-01-01", "-", "x-y", "20201231-20200101"]
)
def test_bad_date_is_a_400_naming_the_parameter(intake: Intake, date: str) -> None:
    body = _problem(_client(intake).get("/api/studies", params={"StudyDate": date}), 400)
    assert "StudyDate" in body["detail"]


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 100000}, {"limit": "ten"}, {"offset": -1}, {"offset": 10**30}],
)
def test_bad_paging_is_a_400(intake: Intake, params: dict[str, Any]) -> None:
    name = next(iter(params))
    for path in ("/api/studies", "/api/staging"):
        assert name in _problem(_client(intake).get(path, params=params), 400)["detail"]


@pytest.mark.parametrize(
    "value",
    [
        "'",
        '"',
        "' OR '1'='1",
        "1; DROP TABLE studies; --",
        "%",
        "_",
        "\\",
        "[*]",
        "\x00",
        "x" * 500,
        "é*",
    ],
)
def test_odd_strings_never_give_a_500(
    filled: tuple[TestClient, dict[str, str]], value: str
) -> None:
    client, _ = filled
    for name in ("PatientID", "Modality", "StudyDate"):
        response = client.get("/api/studies", params={name: value})
        assert response.status_code in (200, 400), response.text
        if response.status_code == 200:
            assert response.json()["studies"] == []
    assert client.get("/api/studies").json()["total"] == 6


def test_unknown_route_is_a_problem(intake: Intake) -> None:
    _problem(_client(intake).get("/api/nothing-here"), 404)
