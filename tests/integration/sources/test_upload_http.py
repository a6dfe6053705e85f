"""HTTP upload, media REST and the watcher thread, against a real ``dicomgate serve`` (uvicorn).

One server serves the whole module; every upload is a new job, so the tests stay independent.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import PYDICOM_FILES
from tests.integration.sources.helpers import write_study
from tests.serve import ServeProcess

CT = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
MR = (PYDICOM_FILES / "MR_small.dcm").read_bytes()
MAX_UPLOAD = 12 << 20


def _unique() -> bytes:
    """Return a new instance (fresh UIDs) so that each test stores something new."""
    ds = dcmread(PYDICOM_FILES / "MR_small.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class Server(ServeProcess):
    def __init__(self, tmp: Path) -> None:
        super().__init__(
            tmp,
            f"""
log_level: WARNING
stable_after: 3600
projects: [{{id: P1}}]
jobs: {{workers: 2, lease_seconds: 5}}
sources:
  stable_for: 0.2
  poll_interval: 0.1
  max_upload_bytes: {MAX_UPLOAD}
  media_roots: [{tmp / "media"}]
  archive: {{max_entries: 100, max_entry_bytes: 2097152, max_total_bytes: 8388608}}
  watch: [{{path: {tmp / "watch"}, project: P1, after_import: move}}]
""".splitlines(),
        )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("serve"))
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture()
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url(""), timeout=60) as http:
        yield http


def _wait(client: httpx.Client, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(url).json()
        if job["finished_at"] is not None:
            return job
        time.sleep(0.1)
    pytest.fail(f"job {url} did not end")


def _accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    body = response.json()
    assert response.headers["location"] == body["url"] == f"/api/jobs/{body['job_id']}"
    return str(body["url"])


def _items(client: httpx.Client, url: str) -> dict[str, tuple[str, str]]:
    page = client.get(f"{url}/items", params={"limit": 1000}).json()
    return {i["key"]: (i["outcome"], i["reason"]) for i in page["items"]}


def test_multipart_files(client: httpx.Client) -> None:
    files = [
        ("file", ("study/ct.dcm", CT, "application/dicom")),
        ("file", ("study/mr.dcm", MR, "application/dicom")),
        ("file", ("notes.txt", b"not DICOM at all", "text/plain")),
    ]
    url = _accepted(client.post("/api/imports/upload", params={"project": "P1"}, files=files))
    job = _wait(client, url)
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert job["counts"] == {"stored": 2, "rejected": 1}
    items = _items(client, url)
    assert items["study/ct.dcm"][0] == "stored" and items["notes.txt"][0] == "rejected"


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.create_system, info.external_attr = 3, 0o120777 << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_zip_with_traversal_entries(client: httpx.Client, server: Server) -> None:
    members = {"../../evil.dcm": CT, "/tmp/abs.dcm": CT, "ok/mr.dcm": _unique()}
    body = _zip(members, symlink="ln.dcm")
    response = client.post(
        "/api/imports/upload",
        params={"project": "P1"},
        content=body,
        headers={"content-type": "application/zip"},
    )
    job = _wait(client, _accepted(response))
    assert job["status"] == "COMPLETED_WITH_ERRORS"
    assert job["counts"] == {"stored": 1, "rejected": 3}
    items = _items(client, f"/api/jobs/{job['id']}")
    assert "climbs out" in items["../../evil.dcm"][1]
    assert "absolute" in items["/tmp/abs.dcm"][1] and "link" in items["ln.dcm"][1]
    assert not (server.tmp / "evil.dcm").exists() and not Path("/tmp/abs.dcm").exists()


def test_zip_bomb_fails_its_job_only(client: httpx.Client) -> None:
    bomb = _zip({"a.dcm": CT, "zeros.dcm": bytes(64 << 20)})
    assert len(bomb) < 200_000
    headers = {"content-type": "application/zip"}
    bomb_url = _accepted(
        client.post("/api/imports/upload", params={"project": "P1"}, content=bomb, headers=headers)
    )
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w:gz") as tf:
        for name, data in (("s/ct.dcm", CT), ("s/mr.dcm", _unique())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    good_url = _accepted(
        client.post(
            "/api/imports/upload",
            params={"project": "P1"},
            content=good.getvalue(),
            headers={"content-type": "application/gzip"},
        )
    )
    failed = _wait(client, bomb_url)
    assert failed["status"] == "FAILED" and "zip bomb" in failed["message"]
    assert _wait(client, good_url)["status"] == "SUCCEEDED"


def test_single_file_unknown_project_and_too_large(client: httpx.Client) -> None:
    dicom = {"content-type": "application/dicom"}
    url = _accepted(
        client.post("/api/imports/upload", params={"project": "P1"}, content=CT, headers=dicom)
    )
    assert _wait(client, url)["status"] == "SUCCEEDED"
    missing = client.post("/api/imports/upload", params={"project": "NOPE"}, content=CT)
    assert missing.status_code == 404 and "no such project" in missing.json()["detail"]
    big = client.post(
        "/api/imports/upload",
        params={"project": "P1"},
        content=iter([bytes(1 << 20)] * 13),
        headers={"content-type": "application/zip"},
    )
    assert big.status_code == 413
    assert big.headers["content-type"].startswith("application/problem+json")
    assert client.post("/api/imports/upload", params={"project": "P1"}, content=b"").is_success
    bad = client.post(
        "/api/imports/upload",
        params={"project": "P1"},
        content=b"--x\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert bad.status_code == 400


def test_media_over_rest(client: httpx.Client, server: Server) -> None:
    media = server.tmp / "media"
    shutil.copytree(PYDICOM_FILES / "dicomdirtests" / "TINY_ALPHA", media / "cd")
    tree = client.get("/api/media", params={"path": str(media / "cd")})
    assert tree.status_code == 200, tree.text
    [patient] = tree.json()["patients"]
    assert patient["studies"][0]["series"][0]["files"] == 50
    outside = client.get("/api/media", params={"path": str(PYDICOM_FILES / "dicomdirtests")})
    assert outside.status_code == 404
    body = {"path": str(media / "cd" / ".." / "cd"), "project": "P1"}
    job = _wait(client, _accepted(client.post("/api/imports/media", json=body)))
    assert job["status"] == "SUCCEEDED" and job["counts"] == {"stored": 50}
    escape = {"path": str(media / ".." / "watch"), "project": "P1"}
    assert client.post("/api/imports/media", json=escape).status_code == 404


def test_the_service_watches_its_folder(client: httpx.Client, server: Server) -> None:
    staging = server.tmp / "staging"
    uids = write_study(staging / "drop1" / "scan", 3)
    shutil.move(staging / "drop1", server.tmp / "watch" / "drop1")
    deadline = time.monotonic() + 120
    jobs: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not jobs:
        page = client.get("/api/jobs", params={"kind": "watched_folder"}).json()
        jobs = [j for j in page["jobs"] if j["finished_at"] is not None]
        time.sleep(0.1)
    [listed] = jobs
    job = client.get(f"/api/jobs/{listed['id']}").json()
    assert job["status"] == "SUCCEEDED" and job["counts"] == {"stored": 3}
    done = list((server.tmp / "watch" / "done").rglob("IM*"))
    assert len(done) == 3 and not (server.tmp / "watch" / "drop1").exists()
    for uid in uids:
        assert client.get(f"/api/instances/{uid}/file").status_code == 200
