"""``dicomgate serve`` as a real process: HTTP + receiver + spine; SIGKILL mid-push durability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.conftest import PYDICOM_FILES, _free_port

ENV = {**os.environ, "TCP_NODELAY": "1"}


def _push_args(server: Server, folder: Path, *flags: str) -> list[str]:
    return [
        "storescu",
        *flags,
        "-aec",
        "DICOMGATE",
        "+sd",
        "127.0.0.1",
        str(server.dicom),
        str(folder),
    ]


class Server:
    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.http, self.dicom = _free_port(), _free_port()
        self.config = tmp / "config.yaml"
        lines = [
            f"data_dir: {tmp / 'data'}",
            f"http_port: {self.http}",
            f"dicom_port: {self.dicom}",
            "stable_after: 1",
            "stability_check_interval: 0.2",
            "log_level: WARNING",
        ]
        if database_url:
            lines.append(f"database_url: {database_url}")
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "dicomgate.cli", "serve", "--config", str(self.config)]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/api/health"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        pytest.fail("dicomgate serve did not answer on /api/health")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    srv = Server(tmp_path, url)
    srv.start()
    yield srv
    srv.kill()


def _corpus(folder: Path, count: int) -> list[str]:
    template = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    folder.mkdir()
    template.StudyInstanceUID, template.SeriesInstanceUID = generate_uid(), generate_uid()
    uids = []
    for number in range(count):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        template.InstanceNumber = number
        template.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
        uids.append(str(template.SOPInstanceUID))
    return uids


def test_push_then_browse_and_download(server: Server, tmp_path: Path) -> None:
    echo = subprocess.run(
        ["echoscu", "-aec", "DICOMGATE", "127.0.0.1", str(server.dicom)],
        env=ENV,
        capture_output=True,
        timeout=30,
    )
    assert echo.returncode == 0
    uids = _corpus(tmp_path / "in", 5)
    push = subprocess.run(
        _push_args(server, tmp_path / "in"),
        env=ENV,
        capture_output=True,
        timeout=120,
    )
    assert push.returncode == 0, push.stderr
    studies = httpx.get(server.url("/api/studies")).json()
    assert studies["total"] == 1
    got = httpx.get(server.url(f"/api/instances/{uids[0]}/file"))
    assert got.headers["content-type"] == "application/dicom"
    assert pydicom.dcmread(BytesIO(got.content)).SOPInstanceUID == uids[0]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        staging = httpx.get(server.url("/api/staging")).json()
        if [s["status"] for s in staging["sessions"]] == ["ARCHIVED"]:
            break
        time.sleep(0.3)
    assert [s["status"] for s in staging["sessions"]] == ["ARCHIVED"]
    assert staging["sessions"][0]["project_id"] == "DEFAULT"


def test_sigkill_mid_push_loses_nothing_acknowledged(server: Server, tmp_path: Path) -> None:
    uids = _corpus(tmp_path / "in", 300)
    push = subprocess.Popen(
        _push_args(server, tmp_path / "in", "-v"),
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    acknowledged: list[str] = []
    sending = ""
    assert push.stdout is not None
    for line in push.stdout:
        if line.startswith("I: Sending file: "):
            sending = Path(line.split(": ", 2)[2].strip()).stem
        elif "Received Store Response (Success)" in line:
            acknowledged.append(uids[int(sending)])  # storescu's order is the directory's
            if len(acknowledged) == 100:
                server.kill()
                break
    push.kill()
    push.communicate()
    server.start()
    missing = 0
    for uid in acknowledged:
        response = httpx.get(server.url(f"/api/instances/{uid}/file"))
        if response.status_code != 200:
            missing += 1
            continue
        assert pydicom.dcmread(BytesIO(response.content)).SOPInstanceUID == uid
    assert missing == 0
    study = httpx.get(server.url("/api/studies")).json()["studies"][0]
    assert study["instance_count"] >= len(acknowledged)
