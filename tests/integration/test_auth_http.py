"""Authentication and project visibility through a real ``dicomgate serve`` with auth enabled."""

from __future__ import annotations

import os
import sqlite3
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

ADMIN_PASSWORD = "admin password for tests"
ALICE_PASSWORD = "alice password for tests"
FAKE_NAME, FAKE_ID = "Zzyzx^Quentavious", "PHI-7731-XQ"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMGATE_")}
    return env | {"DICOMGATE_AUTH__ENABLED": "true", "TCP_NODELAY": "1"}


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dicomgate", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )


def _study(folder: Path, name: str, session: str) -> str:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    # One subject with two sessions (Patient's Name -> subject, Patient ID -> session).
    ds.PatientName, ds.PatientID = FAKE_NAME, f"{FAKE_ID}-{session}"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    (folder / f"{name}.dcm").write_bytes(out.getvalue())
    return str(ds.StudyInstanceUID)


class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp, self.port = tmp, _free_port()
        self.config = tmp / "config.yaml"
        self.config.write_text(
            "\n".join(
                [
                    f"data_dir: {tmp / 'data'}",
                    f"http_port: {self.port}",
                    f"dicom_port: {_free_port()}",
                    "default_project: LUNG",
                    "projects: [{id: LUNG}, {id: BRAIN}]",
                    "stable_after: 0.2",
                    "stability_check_interval: 0.1",
                    "log_level: INFO",
                    "auth:",
                    f"  admin_password: {ADMIN_PASSWORD}",
                    "  cookie_secure: false",
                ]
            )
            + "\n"
        )
        self.log = tmp / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dicomgate", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url("/api/health"), timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("dicomgate serve did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[Server, dict[str, str]]]:
    srv = Server(tmp_path)
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    uids = {"lung": _study(incoming, "lung", "1"), "brain": _study(incoming, "brain", "2")}
    assert _cli(srv.config, "import", str(incoming)).returncode == 0
    srv.start()
    try:
        _setup(srv, uids)
        yield srv, uids
    finally:
        srv.stop()


def _setup(srv: Server, uids: dict[str, str]) -> None:
    _wait_archived(srv, 2)
    # Stands in for the prearchive's move action: put one study into BRAIN.
    with sqlite3.connect(srv.tmp / "data" / "index.sqlite3") as conn:
        conn.execute(
            "UPDATE studies SET project_id = 'BRAIN' WHERE study_uid = ?", (uids["brain"],)
        )
    assert _cli(srv.config, "users", "add", "alice", "--password", ALICE_PASSWORD).returncode == 0
    assert _cli(srv.config, "users", "grant", "alice", "LUNG", "collaborator").returncode == 0


def _wait_archived(srv: Server, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = httpx.get(srv.url("/api/studies"), auth=("admin", ADMIN_PASSWORD)).json()
        if sum(1 for s in body["studies"] if s["project_id"]) == count:
            return
        time.sleep(0.1)
    raise AssertionError("studies were not archived")


def test_no_credentials_is_401_but_health_is_open(server: tuple[Server, dict[str, str]]) -> None:
    srv, _ = server
    assert httpx.get(srv.url("/api/health")).status_code == 200
    response = httpx.get(srv.url("/api/studies"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/problem+json"
    for header in ("Bearer dg_nonsense", "Bearer a.b.c", "Basic !!!", "Digest x", "Basic"):
        assert (
            httpx.get(srv.url("/api/studies"), headers={"Authorization": header}).status_code == 401
        )
    assert httpx.get(srv.url("/api/studies"), auth=("alice", "wrong password!")).status_code == 401


def test_collaborator_sees_only_their_project(server: tuple[Server, dict[str, str]]) -> None:
    srv, uids = server
    alice = ("alice", ALICE_PASSWORD)
    listed = httpx.get(srv.url("/api/studies"), auth=alice).json()
    assert [s["study_uid"] for s in listed["studies"]] == [uids["lung"]]
    assert httpx.get(srv.url(f"/api/studies/{uids['lung']}"), auth=alice).status_code == 200
    hidden = httpx.get(srv.url(f"/api/studies/{uids['brain']}"), auth=alice)
    absent = httpx.get(srv.url("/api/studies/1.2.3.4"), auth=alice)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["detail"] == absent.json()["detail"]
    admin = httpx.get(srv.url("/api/studies"), auth=("admin", ADMIN_PASSWORD)).json()
    assert admin["total"] == 2
    assert httpx.get(srv.url("/api/audit"), auth=alice).status_code == 403


def test_login_cookie_and_scoped_tokens(server: tuple[Server, dict[str, str]]) -> None:
    srv, uids = server
    with httpx.Client(base_url=srv.url("")) as browser:
        login = browser.post(
            "/api/auth/login", json={"username": "alice", "password": ALICE_PASSWORD}
        )
        assert login.status_code == 200
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/api/auth/me").json()["roles"] == {"LUNG": "collaborator"}
        refused = browser.post("/api/auth/tokens", json={"projects": ["BRAIN"]})
        assert refused.status_code == 404
        made = browser.post(
            "/api/auth/tokens", json={"projects": ["LUNG"], "permissions": ["read"]}
        )
        assert made.status_code == 201
        token = made.json()["token"]
        bearer = {"Authorization": f"Bearer {token}"}
        listed = httpx.get(srv.url("/api/studies"), headers=bearer).json()
        assert [s["study_uid"] for s in listed["studies"]] == [uids["lung"]]
        assert browser.delete(f"/api/auth/tokens/{made.json()['id']}").status_code == 204
        assert httpx.get(srv.url("/api/studies"), headers=bearer).status_code == 401
        browser.post("/api/auth/logout")
        assert browser.get("/api/auth/me").status_code == 401
    bad = httpx.post(srv.url("/api/auth/login"), json={"username": "alice", "password": "nope"})
    assert bad.status_code == 401
    assert httpx.post(srv.url("/api/auth/login"), content=b"{not json").status_code == 400


def test_expired_token_is_refused(server: tuple[Server, dict[str, str]]) -> None:
    srv, _ = server
    made = _cli(srv.config, "users", "token", "alice", "--days", "1")
    assert made.returncode == 0, made.stderr
    bearer = {"Authorization": f"Bearer {made.stdout.strip()}"}
    assert httpx.get(srv.url("/api/studies"), headers=bearer).status_code == 200
    # Let the day pass: the server compares the stored expiry with its clock on every request.
    with sqlite3.connect(srv.tmp / "data" / "index.sqlite3") as conn:
        conn.execute("UPDATE api_tokens SET expires_at = '2000-01-01 00:00:00.000000'")
    refused = httpx.get(srv.url("/api/studies"), headers=bearer)
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]


def test_audit_trail_records_and_detects_tampering(
    server: tuple[Server, dict[str, str]],
) -> None:
    srv, _ = server
    admin = ("admin", ADMIN_PASSWORD)
    httpx.get(srv.url("/api/studies"), params={"PatientID": FAKE_ID}, auth=admin)
    httpx.get(srv.url("/api/studies"), auth=("alice", "wrong password!"))
    lines = httpx.get(srv.url("/api/audit"), auth=admin).text.splitlines()
    assert any('"action": "query"' in line and '"actor": "admin"' in line for line in lines)
    assert any('"action": "login"' in line and '"outcome": 4' in line for line in lines)
    xml = httpx.get(srv.url("/api/audit"), params={"format": "xml"}, auth=admin).text
    assert 'csd-code="110112"' in xml and 'csd-code="110114"' in xml
    assert httpx.get(srv.url("/api/audit"), params={"format": "csv"}, auth=admin).status_code == 400
    srv.stop()
    assert _cli(srv.config, "audit", "verify").returncode == 0
    with sqlite3.connect(srv.tmp / "data" / "audit.sqlite3") as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit_records SET actor = 'mallory' WHERE seq = 2")
    tampered = _cli(srv.config, "audit", "verify")
    assert tampered.returncode == 1 and "record 2" in tampered.stdout


def test_no_phi_in_the_logs(server: tuple[Server, dict[str, str]]) -> None:
    srv, uids = server
    admin = ("admin", ADMIN_PASSWORD)
    for params in ({"PatientID": FAKE_ID}, {"PatientID": FAKE_ID[:5] + "*"}):
        assert httpx.get(srv.url("/api/studies"), params=params, auth=admin).status_code == 200
    httpx.get(srv.url(f"/api/studies/{uids['lung']}"), auth=admin)
    srv.stop()
    logged = srv.log.read_text(errors="replace")
    assert "GET /api/studies?" in logged  # the access log ran, with its query cut
    for secret in (FAKE_ID, FAKE_ID[:5], "Zzyzx", "Quentavious", ADMIN_PASSWORD):
        assert secret not in logged


def test_serve_refuses_an_open_non_loopback_listener(tmp_path: Path) -> None:
    config = tmp_path / "open.yaml"
    config.write_text(f"data_dir: {tmp_path}\nhttp_host: 0.0.0.0\nauth: {{enabled: false}}\n")
    env = {k: v for k, v in _env().items() if k != "DICOMGATE_AUTH__ENABLED"}
    done = subprocess.run(
        [sys.executable, "-m", "dicomgate", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "auth.enabled" in done.stderr and "0.0.0.0" in done.stderr
