"""Known DICOM peers enforced on the receiver, against real dcmtk clients (echoscu, storescu)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from dicomgate.archive.blobstore import FilesystemBlobStore
from dicomgate.archive.migrate import upgrade
from dicomgate.archive.models import Instance
from dicomgate.auth.audit import AuditTrail
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.settings import load_settings
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES

ENV = {**os.environ, "TCP_NODELAY": "1"}
CT = PYDICOM_FILES / "CT_small.dcm"

Start = Callable[..., Receiver]


@pytest.fixture()
def sqlite_intake(tmp_path: Path) -> Iterator[Intake]:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(db)
    yield Intake(db, FilesystemBlobStore(tmp_path / "blobs"), FilesystemBlobStore(tmp_path / "x"))
    db.dispose()


@pytest.fixture()
def audit(tmp_path: Path) -> Iterator[AuditTrail]:
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    yield trail
    trail.dispose()


@pytest.fixture()
def start(sqlite_intake: Intake, audit: AuditTrail) -> Iterator[Start]:
    started: list[Receiver] = []

    def _start(**auth: Any) -> Receiver:
        # One receiving process: worker processes refuse the same peers but record nothing.
        settings = load_settings(
            dicom_port=0, ae_title="DGTEST", auth=auth, dicom_receiver={"processes": 1}
        )
        started.append(Receiver(settings, sqlite_intake, audit=audit))
        return started[-1]

    yield _start
    for receiver in started:
        receiver.stop()


def _storescu(port: int, calling: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["storescu", "-v", "-aet", calling, "-aec", "DGTEST", *extra, "127.0.0.1", str(port), CT],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _echoscu(port: int, calling: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["echoscu", "-v", "-aet", calling, "-aec", "DGTEST", "127.0.0.1", str(port)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _stored(intake: Intake) -> int:
    with intake.db.reader() as session:
        return int(session.scalar(select(func.count()).select_from(Instance)) or 0)


def _records(audit: AuditTrail, action: str, count: int) -> list[Any]:
    """The audit records of ``action`` once there are ``count``: some are written at the
    association's close, in the receiver's thread, after the dcmtk tool has exited."""
    deadline = time.monotonic() + 20
    records = audit.records(action=action)
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.05)
        records = audit.records(action=action)
    return records


PEERS = [
    {"ae_title": "CT1", "hosts": ["127.0.0.0/8"], "projects": ["LUNG"]},
    {"ae_title": "FARAWAY", "hosts": ["10.0.0.0/8", "192.0.2.7"]},
    {"ae_title": "VIEWER", "hosts": ["localhost"], "operations": ["echo", "find"]},
]


def test_known_peer_stores_and_unknown_ae_is_rejected_and_audited(
    start: Start, sqlite_intake: Intake, audit: AuditTrail
) -> None:
    receiver = start(dicom_peers=PEERS)
    assert _storescu(receiver.port, "CT1").returncode == 0
    assert _stored(sqlite_intake) == 1
    stranger = _storescu(receiver.port, "STRANGER")
    assert stranger.returncode != 0
    assert "Calling AE Title Not Recognized" in stranger.stdout + stranger.stderr
    assert _echoscu(receiver.port, "STRANGER").returncode != 0
    rejected = _records(audit, "association_rejected", 2)
    assert len(rejected) == 2
    record = rejected[0]
    assert (record.event_code, record.actor, record.source) == ("110113", "STRANGER", "127.0.0.1")
    assert record.objects == {"calling_ae": "STRANGER", "called_ae": "DGTEST"}
    assert record.detail == "unknown calling AE title"
    assert "CT" not in json.dumps(record.to_json()).replace("110113", "")  # no header values


def test_known_ae_from_outside_its_hosts_is_rejected(
    start: Start, sqlite_intake: Intake, audit: AuditTrail
) -> None:
    receiver = start(dicom_peers=PEERS, dicom_open=True)
    assert _storescu(receiver.port, "FARAWAY").returncode != 0
    assert _stored(sqlite_intake) == 0
    [record] = _records(audit, "association_rejected", 1)
    assert record.actor == "FARAWAY" and "outside its hosts" in record.detail
    # Open receiver: an AE title nobody listed is still welcome.
    assert _storescu(receiver.port, "ANYONE").returncode == 0


def test_peer_not_allowed_to_store_gets_a_refusal(
    start: Start, sqlite_intake: Intake, audit: AuditTrail
) -> None:
    receiver = start(dicom_peers=PEERS)
    assert _echoscu(receiver.port, "VIEWER").returncode == 0
    refused = _storescu(receiver.port, "VIEWER")
    assert refused.returncode != 0
    assert "Status: 0x124" in refused.stdout + refused.stderr  # Refused: Not Authorized
    assert _stored(sqlite_intake) == 0
    [record] = _records(audit, "store_refused", 1)
    assert record.actor == "VIEWER" and record.source == "127.0.0.1"


def test_closed_receiver_without_peers_admits_nobody(start: Start) -> None:
    receiver = start(dicom_open=False)
    assert _echoscu(receiver.port, "ECHOSCU").returncode != 0


def test_peer_may_be_refused_echo(start: Start, audit: AuditTrail) -> None:
    receiver = start(dicom_peers=[{"ae_title": "CT1", "hosts": ["127.0.0.1"], "operations": []}])
    # echoscu exits 0 whatever the status; its report shows the refusal.
    echoed = _echoscu(receiver.port, "CT1")
    assert "Status: 0x124" in echoed.stdout + echoed.stderr
    assert [r.action for r in _records(audit, "echo_refused", 1)] == ["echo_refused"]
