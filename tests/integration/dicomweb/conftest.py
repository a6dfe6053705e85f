"""A real dicomgate (``create_app`` under uvicorn, free loopback ports) for DICOMweb tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
import uvicorn
from pydicom.uid import generate_uid

from dicomgate.app import Service, create_app, open_intake
from dicomgate.db import Database
from dicomgate.intake.origin import Origin, OriginKind
from dicomgate.intake.receive import Intake, receive
from dicomgate.settings import load_settings
from tests.conftest import PYDICOM_FILES, _free_port


@dataclass
class Gate:
    """A running dicomgate: its DICOMweb root and its intake (to fill the archive directly)."""

    url: str
    intake: Intake
    dicom_port: int
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        # One client per server: a new httpx client builds an SSL context (slow).
        self.http = httpx.Client(base_url=self.dicomweb, timeout=60)

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicomweb"

    def store(self, data: bytes) -> str:
        result = receive(self.intake, data, Origin(OriginKind.IMPORT))
        assert result.ok, result.reason
        assert result.sop_instance_uid is not None
        return result.sop_instance_uid


def _serve(tmp: Path, database_url: str, **overrides: object) -> Generator[Gate, None, None]:
    http, dicom = _free_port(), _free_port()
    settings = load_settings(
        data_dir=tmp / "data",
        database_url=database_url,
        http_port=http,
        dicom_port=dicom,
        stable_after=3600.0,
        log_level="WARNING",
        **overrides,
    )
    service = Service(settings, open_intake(settings))
    server = uvicorn.Server(
        uvicorn.Config(create_app(service), host="127.0.0.1", port=http, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "dicomgate did not start"
        time.sleep(0.02)
    gate = Gate(f"http://127.0.0.1:{http}", service.intake, dicom)
    try:
        yield gate
    finally:
        gate.http.close()
        server.should_exit = True
        thread.join(timeout=30)
        service.intake.db.dispose()


@pytest.fixture()
def gate(database: Database, tmp_path: Path) -> Iterator[Gate]:
    """dicomgate serving an empty archive, on SQLite and on PostgreSQL."""
    yield from _serve(tmp_path, database.url)


@pytest.fixture()
def sqlite_gate(tmp_path: Path) -> Iterator[Gate]:
    """dicomgate serving an empty archive on SQLite only (for the slower peer tests)."""
    yield from _serve(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite3'}")


@pytest.fixture()
def small_gate(tmp_path: Path) -> Iterator[Gate]:
    """dicomgate on SQLite whose STOW-RS takes bodies up to 64 KiB."""
    url = f"sqlite:///{tmp_path / 'index.sqlite3'}"
    yield from _serve(tmp_path, url, dicomweb={"stow_max_bytes": 65536})


def pydicom_file(name: str) -> bytes:
    """Return one of pydicom's bundled test files."""
    return (PYDICOM_FILES / name).read_bytes()


def ct_copy(
    patient_id: str = "PAT-1",
    study_date: str = "20200101",
    study: str | None = None,
    series: str | None = None,
    **attrs: object,
) -> bytes:
    """Return CT_small.dcm with fresh UIDs (or the given study/series) and some attributes."""
    ds = pydicom.dcmread(BytesIO(pydicom_file("CT_small.dcm")))
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = series or generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID, ds.StudyDate = patient_id, study_date
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart_parts(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart/related body into (headers, content) pairs, as a client would."""
    boundary = next(
        p.split("=", 1)[1].strip('"')
        for p in (x.strip() for x in content_type.split(";"))
        if p.lower().startswith("boundary=")
    ).encode()
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode("latin-1").strip().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, content[:-2] if content.endswith(b"\r\n") else content))
    return parts
