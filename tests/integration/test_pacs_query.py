"""Echo and find against a real Orthanc: every level, wildcards, date ranges, modality, UIDs."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api_errors import install_error_handlers
from dicomgate.access.pacs_api import create_pacs_api
from dicomgate.auth.guard import open_gate
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import RemoteNodeError, WindowClosedError
from dicomgate.intake.receive import Intake
from dicomgate.sources.pacs.service import PacsService
from tests.conftest import _free_port
from tests.fake_clock import FakeClock
from tests.integration.pacs_peer import Peer, start_peer

with warnings.catch_warnings():
    # starlette asks for httpx2 but still works with the httpx the project depends on.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = start_peer(tmp_path_factory.mktemp("orthanc"))
    yield peer
    peer.orthanc.stop()


@pytest.fixture()
def pacs(peer: Peer, intake: Intake, tmp_path: Path) -> PacsService:
    return peer.service(intake, tmp_path)


def _studies(rows: list[dict[str, str]]) -> set[str]:
    return {row["StudyInstanceUID"] for row in rows}


def test_echo(pacs: PacsService) -> None:
    assert pacs.echo("orthanc") == 0


# pynetdicom leaves the socket of a refused connection to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_echo_to_nobody_is_a_remote_node_error(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    service = peer.service(intake, tmp_path, port=_free_port())
    with pytest.raises(RemoteNodeError, match="association"):
        service.echo("orthanc")
    assert service.status("orthanc")["reachable"] is False


def test_find_patients_with_wildcards(pacs: PacsService) -> None:
    rows = pacs.find("orthanc", QueryLevel.PATIENT, {"PatientID": "PAT00*"})
    assert sorted(row["PatientID"] for row in rows) == ["PAT001", "PAT002", "PAT003"]
    rows = pacs.find("orthanc", QueryLevel.PATIENT, {"PatientName": "ALPHA*"})
    assert [row["PatientID"] for row in rows] == ["PAT001"]


def test_find_studies_by_date_range_and_modality(pacs: PacsService, peer: Peer) -> None:
    by_uid = {s.study_uid: s for s in peer.studies}
    in_2024 = pacs.find("orthanc", QueryLevel.STUDY, {"StudyDate": "20240101-20241231"})
    assert {by_uid[u].study_date[:4] for u in _studies(in_2024)} == {"2024"}
    assert len(in_2024) == 3
    ct_2024 = pacs.find(
        "orthanc", QueryLevel.STUDY, {"StudyDate": "20240101-20241231", "Modality": "CT"}
    )
    assert {by_uid[u].accession for u in _studies(ct_2024)} == {"ACC1001", "ACC2001"}
    open_ended = pacs.find("orthanc", QueryLevel.STUDY, {"StudyDate": "20240601-"})
    assert {row["AccessionNumber"] for row in open_ended} == {"ACC1002"}


def test_find_studies_by_uid_list(pacs: PacsService, peer: Peer) -> None:
    wanted = [peer.studies[0].study_uid, peer.studies[3].study_uid]
    rows = pacs.find("orthanc", QueryLevel.STUDY, {"StudyInstanceUID": wanted})
    assert _studies(rows) == set(wanted)


def test_find_series_and_images(pacs: PacsService, peer: Peer) -> None:
    study = peer.studies[1]
    series = pacs.find(
        "orthanc", QueryLevel.SERIES, {"StudyInstanceUID": study.study_uid}, ["SeriesDate"]
    )
    assert {row["SeriesInstanceUID"] for row in series} == set(study.series)
    assert {row["Modality"] for row in series} == {"MR"} and "SeriesDate" in series[0]
    one = next(iter(study.series))
    images = pacs.find(
        "orthanc",
        QueryLevel.IMAGE,
        {"StudyInstanceUID": study.study_uid, "SeriesInstanceUID": one},
    )
    assert {row["SOPInstanceUID"] for row in images} == set(study.series[one])


def test_closed_window_stops_traffic(peer: Peer, intake: Intake, tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC))
    windows = [{"start": "20:00", "end": "08:00"}]
    service = peer.service(intake, tmp_path, clock, windows=windows)
    with pytest.raises(WindowClosedError) as caught:
        service.find("orthanc", QueryLevel.STUDY, {})
    assert caught.value.resume_at == dt.datetime(2026, 12, 4, 20, tzinfo=dt.UTC)
    assert service.status("orthanc")["reachable"] is None
    clock.set(dt.datetime(2026, 12, 4, 22, tzinfo=dt.UTC))
    assert len(service.find("orthanc", QueryLevel.STUDY, {})) == 4


def _client(pacs: PacsService) -> TestClient:
    app = FastAPI()
    app.include_router(create_pacs_api(pacs, open_gate()))
    install_error_handlers(app)
    return TestClient(app)


def test_rest_nodes_and_find(pacs: PacsService, peer: Peer) -> None:
    client = _client(pacs)
    nodes = client.get("/api/pacs").json()
    assert nodes[0]["name"] == "orthanc" and nodes[0]["reachable"] is True
    body = {"level": "SERIES", "keys": {"StudyInstanceUID": peer.studies[0].study_uid}}
    rows = client.post("/api/pacs/orthanc/find", json=body).json()
    assert {row["SeriesInstanceUID"] for row in rows} == set(peer.studies[0].series)
    text = client.post("/api/pacs/orthanc/find?format=csv", json=body).text
    assert text.splitlines()[0].startswith("StudyInstanceUID,SeriesInstanceUID")
    assert len(text.splitlines()) == 3


def test_rest_errors(pacs: PacsService) -> None:
    client = _client(pacs)
    bad = client.post("/api/pacs/orthanc/find", json={"keys": {"PatientNme": "x"}})
    assert bad.status_code == 400 and "PatientNme" in bad.json()["detail"]
    assert client.post("/api/pacs/nowhere/find", json={}).status_code == 404
    assert client.post("/api/pacs/orthanc/find", json={"level": "FRAME"}).status_code == 400
    assert client.post("/api/pacs/orthanc/find", json={"bogus": 1}).status_code == 400
