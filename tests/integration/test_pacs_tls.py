"""Remote nodes over DICOM TLS: a real Orthanc with its TLS listener, a PKI generated per module.

Orthanc trusts only our CA and requires a client certificate, so each test shows one side of the
handshake: the right CA and client certificate work for echo, find and C-GET; a node whose CA
does not know Orthanc's certificate, or that offers no client certificate, fails with a clear
remote-node error and never falls back to plain DICOM.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dicomgate.archive.index import ensure_project
from dicomgate.archive.models import Instance
from dicomgate.dicom.query import QueryLevel
from dicomgate.errors import RemoteNodeError
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.pacs.ledger import MemoryLedger
from dicomgate.sources.pacs.retrieve import list_expected, retrieve_all
from dicomgate.sources.pacs.service import PacsService
from tests.integration.pacs_corpus import CorpusStudy, build
from tests.orthanc import Orthanc, start_orthanc
from tests.pki import Pki, make_pki

# pynetdicom leaves the socket of a failed handshake to the garbage collector.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def _collect_failed_sockets() -> Iterator[None]:
    """Collect those sockets here, under this module's filter, not in a later test."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_peer(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[tuple[Orthanc, list[CorpusStudy]]]:
    cert, key = pki.server
    orthanc = start_orthanc(
        tmp_path_factory.mktemp("orthanc-tls"),
        extra={
            "DicomTlsEnabled": True,
            "DicomTlsCertificate": str(cert),
            "DicomTlsPrivateKey": str(key),
            "DicomTlsTrustedCertificates": str(pki.ca),
            "DicomTlsRemoteCertificateRequired": True,
        },
    )
    studies, files = build()
    for data in files[:40]:
        orthanc.upload(data)
    yield orthanc, studies
    orthanc.stop()


def _service(orthanc: Orthanc, intake: Intake, data_dir: Path, **tls: Any) -> PacsService:
    node = {
        "name": "secure",
        "ae_title": orthanc.ae_title,
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "retrieve_method": "c-get",
        "tls": True,
        **tls,
    }
    settings = load_settings(
        data_dir=data_dir, ae_title="DICOMGATE", stable_after=3600.0, pacs={"nodes": [node]}
    )
    return PacsService(settings, intake)


def _client_tls(pki: Pki) -> dict[str, str]:
    cert, key = pki.client
    return {"tls_ca_file": str(pki.ca), "tls_cert_file": str(cert), "tls_key_file": str(key)}


def test_echo_find_and_get_over_tls(
    tls_peer: tuple[Orthanc, list[CorpusStudy]], pki: Pki, intake: Intake, tmp_path: Path
) -> None:
    orthanc, _ = tls_peer
    service = _service(orthanc, intake, tmp_path, **_client_tls(pki))
    assert service.echo("secure") == 0
    rows = service.find("secure", QueryLevel.STUDY, {"StudyInstanceUID": ""})
    assert rows, "the TLS find returned no study"
    study_uid = rows[0]["StudyInstanceUID"]
    with intake.db.unit_of_work() as session:
        ensure_project(session, "COHORT")
    retriever = service.retriever("secure", Origin(OriginKind.PACS, job_id="tls", project="COHORT"))
    expected = list_expected(retriever.client, QueryLevel.STUDY, study_uid)
    ledger = MemoryLedger()
    retrieve_all(retriever, expected, ledger)
    assert ledger.counts() == {"stored": len(expected)}
    with intake.db.reader() as session:
        stored = set(session.scalars(select(Instance.sop_instance_uid)))
    assert stored == {item.sop_uid for item in expected}


def test_node_that_does_not_trust_the_pacs_certificate_fails(
    tls_peer: tuple[Orthanc, list[CorpusStudy]], pki: Pki, intake: Intake, tmp_path: Path
) -> None:
    orthanc, _ = tls_peer
    other = make_pki(tmp_path / "other")
    tls = {**_client_tls(pki), "tls_ca_file": str(other.ca)}
    service = _service(orthanc, intake, tmp_path, **tls)
    with pytest.raises(RemoteNodeError, match="association"):
        service.echo("secure")


def test_node_without_a_client_certificate_is_refused_by_the_pacs(
    tls_peer: tuple[Orthanc, list[CorpusStudy]], pki: Pki, intake: Intake, tmp_path: Path
) -> None:
    orthanc, _ = tls_peer
    service = _service(orthanc, intake, tmp_path, tls_ca_file=str(pki.ca))
    with pytest.raises(RemoteNodeError, match="association"):
        service.echo("secure")


def test_plain_node_against_the_tls_port_fails(
    tls_peer: tuple[Orthanc, list[CorpusStudy]], intake: Intake, tmp_path: Path
) -> None:
    orthanc, _ = tls_peer
    service = _service(orthanc, intake, tmp_path, tls=False)
    with pytest.raises(RemoteNodeError, match="association"):
        service.echo("secure")


@pytest.mark.parametrize("broken", ["tls_ca_file", "tls_cert_file"])
def test_unreadable_tls_files_are_a_clear_node_error(
    tls_peer: tuple[Orthanc, list[CorpusStudy]],
    pki: Pki,
    intake: Intake,
    tmp_path: Path,
    broken: str,
) -> None:
    orthanc, _ = tls_peer
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    service = _service(orthanc, intake, tmp_path, **{**_client_tls(pki), broken: str(garbage)})
    with pytest.raises(RemoteNodeError, match="cannot load its TLS"):
        service.echo("secure")
    missing = _service(orthanc, intake, tmp_path, **{**_client_tls(pki), broken: "/nonexistent"})
    with pytest.raises(RemoteNodeError, match="cannot load its TLS"):
        missing.echo("secure")
