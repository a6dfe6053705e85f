"""``dicomgate serve`` as a real process: HTTP + receiver + spine; SIGKILL mid-push durability."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pydicom
import pytest

from tests.serve import ServeProcess, corpus

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


class Server(ServeProcess):
    def __init__(self, tmp: Path, database_url: str | None) -> None:
        lines = ["stable_after: 1", "stability_check_interval: 0.2", "log_level: WARNING"]
        if database_url:
            lines.append(f"database_url: {database_url}")
        super().__init__(tmp, lines)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    srv = Server(tmp_path, url)
    srv.start()
    yield srv
    srv.kill()


def test_push_then_browse_and_download(server: Server, tmp_path: Path) -> None:
    echo = subprocess.run(
        ["echoscu", "-aec", "DICOMGATE", "127.0.0.1", str(server.dicom)],
        env=ENV,
        capture_output=True,
        timeout=30,
    )
    assert echo.returncode == 0
    uids = corpus(tmp_path / "in", 5)
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
    uids = corpus(tmp_path / "in", 300)
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


def test_sigterm_after_an_import_leaves_nothing_behind(tmp_path: Path) -> None:
    # The import processes (started by the dropped folder) and the receiving processes hold
    # semaphores; a clean stop releases them, or the resource tracker warns at exit.
    watch = tmp_path / "watch"
    lines = [
        "log_level: WARNING",
        "projects: [{id: P1}]",
        "dicom_receiver: {processes: 2}",
        "sources: {stable_for: 0.3, poll_interval: 0.1, import_processes: 2, "
        f"import_processes_from: 1, watch: [{{path: {watch}, project: P1}}]}}",
    ]
    srv = ServeProcess(tmp_path, lines, log=True)
    srv.start()
    try:
        corpus(tmp_path / "drop", 30)
        watch.mkdir(exist_ok=True)
        (tmp_path / "drop").rename(watch / "drop")
        deadline = time.monotonic() + 60
        jobs: list[dict[str, object]] = []
        while time.monotonic() < deadline and not (jobs and jobs[0]["finished_at"]):
            time.sleep(0.2)
            jobs = httpx.get(srv.url("/api/jobs?kind=watched_folder")).json()["jobs"]
        assert jobs and jobs[0]["status"] == "SUCCEEDED", jobs
        assert srv.proc is not None
        children = _children(srv.proc.pid)  # the resource tracker writes its warning last
    finally:
        srv.stop()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean stop.
    assert srv.proc is not None and srv.proc.returncode == -15
    assert srv.log is not None
    log = srv.log.read_text(encoding="utf-8", errors="replace")
    assert "leaked" not in log, log[-2000:]


def _children(parent: int) -> list[int]:
    """Return the process ids whose parent is ``parent``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found
