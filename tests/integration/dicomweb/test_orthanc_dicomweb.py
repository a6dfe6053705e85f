"""Orthanc's DICOMweb plugin with dicomgate as a DICOMweb server: query, retrieve, store."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.integration.dicomweb.conftest import Gate, ct_copy, pydicom_file
from tests.orthanc import Orthanc, start_orthanc

pytestmark = pytest.mark.slow


@pytest.fixture()
def peer(sqlite_gate: Gate, tmp_path: Path) -> Iterator[Orthanc]:
    orthanc = start_orthanc(
        tmp_path / "orthanc", dicomweb_servers={"dicomgate": sqlite_gate.dicomweb}
    )
    yield orthanc
    orthanc.stop()


def _server(peer: Orthanc, action: str, body: dict[str, object]) -> object:
    return peer.rest("POST", f"/dicom-web/servers/dicomgate/{action}", json=body).json()


def test_orthanc_queries_dicomgate(sqlite_gate: Gate, peer: Orthanc) -> None:
    study = generate_uid()
    sqlite_gate.store(ct_copy("ORTHANC-Q", "20220202", study=study))
    sqlite_gate.store(ct_copy("SOMEONE-ELSE", "20220202"))
    found = _server(peer, "qido", {"Uri": "/studies", "Arguments": {"PatientID": "ORTHANC-Q"}})
    assert isinstance(found, list)
    assert [r["0020000D"]["Value"] for r in found] == [study]
    series = _server(peer, "qido", {"Uri": f"/studies/{study}/series"})
    assert isinstance(series, list) and len(series) == 1


def test_orthanc_retrieves_from_dicomgate(sqlite_gate: Gate, peer: Orthanc) -> None:
    data = pydicom_file("MR_small.dcm")
    sqlite_gate.store(data)
    study = str(pydicom.dcmread(BytesIO(data)).StudyInstanceUID)
    _server(peer, "retrieve", {"Resources": [{"Study": study}]})
    uids = peer.instance_uids()
    assert uids == {str(pydicom.dcmread(BytesIO(data)).SOPInstanceUID)}
    orthanc_id = peer.rest("GET", "/instances").json()[0]
    copy = peer.rest("GET", f"/instances/{orthanc_id}/file").content
    assert copy[128:] == data[128:]


def test_orthanc_stores_into_dicomgate(sqlite_gate: Gate, peer: Orthanc) -> None:
    data = ct_copy("ORTHANC-STOW")
    orthanc_id = peer.upload(data)["ID"]
    _server(peer, "stow", {"Resources": [orthanc_id]})
    sop = str(pydicom.dcmread(BytesIO(data)).SOPInstanceUID)
    found = _server(peer, "qido", {"Uri": "/instances", "Arguments": {"SOPInstanceUID": sop}})
    assert isinstance(found, list) and len(found) == 1
    study = found[0]["0020000D"]["Value"]
    metadata = _server(peer, "get", {"Uri": f"/studies/{study}/metadata"})
    assert isinstance(metadata, list)
    assert metadata[0]["00100020"]["Value"] == ["ORTHANC-STOW"]
