"""The DICOM TLS listener against dcmtk ``storescu +tls``, with a PKI generated per test."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.models import Instance
from dicomgate.auth.settings import DicomTlsSettings
from dicomgate.auth.tls import dicom_server_context
from dicomgate.db import Database
from dicomgate.errors import ConfigError
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES
from tests.pki import Pki, make_pki

ENV = {**os.environ, "TCP_NODELAY": "1"}
CT = PYDICOM_FILES / "CT_small.dcm"


@pytest.fixture()
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture()
def sqlite_intake(tmp_path: Path) -> Iterator[Intake]:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(db)
    yield Intake(db, FilesystemBlobStore(tmp_path / "blobs"), FilesystemBlobStore(tmp_path / "x"))
    db.dispose()


def _tls(pki: Pki, **extra: Any) -> dict[str, Any]:
    cert, key = pki.server
    return {"port": 0, "certificate": cert, "key": key, "ca_certificates": pki.ca, **extra}


@pytest.fixture()
def receiver(pki: Pki, sqlite_intake: Intake) -> Iterator[Receiver]:
    settings = load_settings(dicom_port=0, ae_title="DGTEST", auth={"dicom_tls": _tls(pki)})
    server = Receiver(settings, sqlite_intake)
    yield server
    server.stop()


def _storescu(port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-aec", "DGTEST", *tls, "127.0.0.1", str(port), CT],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _stored(intake: Intake) -> int:
    with intake.db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def test_ca_signed_client_certificate_is_accepted(
    receiver: Receiver, pki: Pki, sqlite_intake: Intake
) -> None:
    cert, key = pki.client
    assert receiver.tls_port is not None and receiver.tls_port != receiver.port
    done = _storescu(receiver.tls_port, "+tls", str(key), str(cert), "+cf", str(pki.ca))
    assert done.returncode == 0, done.stderr
    assert _stored(sqlite_intake) == 1
    # The plain listener stays beside it by default.
    assert _storescu(receiver.port).returncode == 0


def test_self_signed_or_missing_client_certificate_is_refused(
    receiver: Receiver, pki: Pki, sqlite_intake: Intake
) -> None:
    assert receiver.tls_port is not None
    cert, key = pki.self_signed
    rogue = _storescu(receiver.tls_port, "+tls", str(key), str(cert), "+cf", str(pki.ca))
    assert rogue.returncode != 0
    anonymous = _storescu(receiver.tls_port, "+tla", "+cf", str(pki.ca))
    assert anonymous.returncode != 0
    plain = _storescu(receiver.tls_port)
    assert plain.returncode != 0
    assert _stored(sqlite_intake) == 0
    # A refused handshake leaves the listener serving.
    cert, key = pki.client
    good = _storescu(receiver.tls_port, "+tls", str(key), str(cert), "+cf", str(pki.ca))
    assert good.returncode == 0, good.stderr


def test_tls_can_replace_the_plain_listener(pki: Pki, sqlite_intake: Intake) -> None:
    tls = _tls(pki, plain_listener=False)
    settings = load_settings(dicom_port=0, ae_title="DGTEST", auth={"dicom_tls": tls})
    server = Receiver(settings, sqlite_intake)
    try:
        assert server.port == server.tls_port
    finally:
        server.stop()


def test_context_requires_tls_1_2_and_client_certificates(pki: Pki) -> None:
    context = dicom_server_context(DicomTlsSettings(**_tls(pki)))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("broken", ["certificate", "key", "ca_certificates"])
def test_unreadable_or_wrong_files_name_the_option(pki: Pki, tmp_path: Path, broken: str) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    for replacement in (garbage, tmp_path / "missing.pem"):
        tls = DicomTlsSettings(**_tls(pki, **{broken: replacement}))
        option = "certificate" if broken == "key" else broken
        with pytest.raises(ConfigError, match=f"auth.dicom_tls.{option}"):
            dicom_server_context(tls)
