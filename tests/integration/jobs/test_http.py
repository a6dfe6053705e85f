"""Jobs and the server-side inbox over real HTTP against a real ``dicomgate serve``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from dicomgate.archive.models import StagingSession
from dicomgate.db import Database
from tests.integration.jobs.conftest import copy_files
from tests.integration.jobs.serve import JobServer, corpus, events

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobServer]:
    srv = JobServer(tmp_path_factory.mktemp("serve"))
    srv.start()
    yield srv
    srv.kill()


def _post_import(server: JobServer, **body: object) -> httpx.Response:
    return httpx.post(server.url("/api/imports"), json=body)


def test_inbox_import_followed_through_sse(server: JobServer) -> None:
    batch = server.inbox / "P1" / "sse"
    corpus(batch, 40)
    copy_files(batch, "MR_truncated.dcm")
    answer = _post_import(server, path=str(batch), project="P1")
    assert answer.status_code == 202
    url = answer.headers["location"]
    assert url == answer.json()["url"] == f"/api/jobs/{answer.json()['job_id']}"
    seen: list[tuple[str, dict[str, object]]] = []
    with httpx.stream("GET", server.url(url + "/events"), timeout=60) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        seen = list(events(stream))
    names = [name for name, _ in seen]
    assert names[-1] == "end" and set(names[:-1]) == {"progress"}
    done = [int(str(data["done"])) for _, data in seen]
    assert done == sorted(done) and done[-1] == 41
    final = seen[-1][1]
    assert final["status"] == "COMPLETED_WITH_ERRORS"
    assert final["counts"] == {"stored": 40, "rejected": 1}
    rejected = httpx.get(server.url(url + "/items"), params={"outcome": "rejected"}).json()
    assert [Path(i["key"]).name for i in rejected["items"]] == ["MR_truncated.dcm"]
    assert "incomplete" in rejected["items"][0]["reason"]
    assert batch.exists()  # cleanup was not asked for


def test_xnat_form_with_labels_and_cleanup(server: JobServer) -> None:
    batch = server.inbox / "P2" / "xnat" / "session1"
    copy_files(batch, "CT_small.dcm", "MR_small.dcm")
    query = {
        "import-handler": "inbox",
        "PROJECT_ID": "P2",
        "SUBJECT_ID": "SUBJ_01",
        "EXPT_LABEL": "SUBJ_01_CT1",
        "path": "xnat",
        "cleanupAfterImport": "true",
    }
    answer = httpx.post(server.url("/data/services/import"), params=query)
    assert answer.status_code == 200
    url = answer.text.strip()
    assert url.startswith("/api/jobs/") and answer.headers["location"] == url
    job = server.wait_final(url)
    assert job["status"] == "SUCCEEDED" and job["counts"] == {"stored": 2}
    assert job["params"]["subject"] == "SUBJ_01" and job["params"]["session"] == "SUBJ_01_CT1"
    assert not (server.inbox / "P2" / "xnat").exists()  # imported, then cleaned up
    assert (server.inbox / "P2").is_dir()  # the project's inbox stays
    db = Database(f"sqlite:///{server.tmp / 'data' / 'index.sqlite3'}")
    try:
        with db.reader() as session:
            rows = session.scalars(
                select(StagingSession).where(StagingSession.source_key.endswith(job["id"]))
            ).all()
    finally:
        db.dispose()
    assert {(r.project_id, r.origin["subject_label"], r.origin["session_label"]) for r in rows} == {
        ("P2", "SUBJ_01", "SUBJ_01_CT1")
    }


def test_xnat_form_refuses_bad_calls(server: JobServer) -> None:
    before = server.job_count()
    base = {"import-handler": "inbox", "PROJECT_ID": "P1", "path": "x"}
    for query, status in [
        ({**base, "import-handler": "SI"}, 400),
        ({**base, "PROJECT_ID": "P 1"}, 400),
        ({**base, "PROJECT_ID": "NOPE"}, 404),
        ({**base, "cleanupAfterImport": "perhaps"}, 400),
        ({k: v for k, v in base.items() if k != "path"}, 400),
        ({**base, "path": "/etc"}, 400),
    ]:
        answer = httpx.post(server.url("/data/services/import"), params=query)
        assert answer.status_code == status, (query, answer.text)
        assert answer.headers["content-type"] == PROBLEM
    assert server.job_count() == before


def test_inbox_refuses_paths_outside_the_project(server: JobServer) -> None:
    outside = server.tmp / "outside"
    (uid,) = corpus(outside, 1)
    p1 = server.inbox / "P1"
    os.symlink(outside, p1 / "link-out")
    os.symlink(outside / "00000.dcm", p1 / "file-out.dcm")
    copy_files(server.inbox / "P2" / "other", "MR_small.dcm")
    os.symlink(server.inbox / "P2" / "other", p1 / "link-p2")
    before = server.job_count()
    for path in [
        str(outside),
        "/etc",
        str(p1 / "link-out"),
        "link-out",
        "file-out.dcm",
        "link-p2",
        "../P2/other",
        str(p1 / ".." / "P2" / "other"),
        "..",
        "../../outside",
        "does-not-exist",
        "with\x00nul",
    ]:
        answer = _post_import(server, path=path, project="P1")
        assert answer.status_code == 400, (path, answer.text)
        assert answer.headers["content-type"] == PROBLEM
        detail = answer.json()["detail"]
        assert any(word in detail for word in ("outside the inbox", "not exist", "NUL")), detail
    assert server.job_count() == before
    assert httpx.get(server.url(f"/api/instances/{uid}/file")).status_code == 404


def test_inbox_refuses_malformed_requests(server: JobServer) -> None:
    before = server.job_count()
    url = server.url("/api/imports")
    bad_bodies = [
        {"project": "P1"},
        {"path": "x"},
        {"path": "x", "project": "P1", "extra": 1},
        {"path": "x", "project": "../P1"},
        {"path": "x", "project": "P1", "cleanup": "sometimes"},
        {"path": "", "project": "P1"},
        {"path": "x", "project": "P1", "subject": "a/b"},
    ]
    for body in bad_bodies:
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"] == PROBLEM
    not_json = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    unknown = _post_import(server, path="x", project="NO_SUCH")
    assert unknown.status_code == 404 and "no such project" in unknown.json()["detail"]
    assert server.job_count() == before


def test_job_resources_and_errors(server: JobServer) -> None:
    copy_files(server.inbox / "P1" / "ok", "CT_small.dcm")
    url = _post_import(server, path="ok", project="P1").headers["location"]
    job = server.wait_final(url)
    assert job["status"] == "SUCCEEDED"
    listed = httpx.get(server.url("/api/jobs"), params={"status": "SUCCEEDED", "limit": 1})
    assert listed.status_code == 200 and len(listed.json()["jobs"]) == 1
    assert httpx.get(server.url("/api/jobs"), params={"kind": "nope"}).json()["total"] == 0
    log = httpx.get(server.url(url + "/log")).json()
    assert log[0]["message"].startswith("submitted") and "SUCCEEDED" in log[-1]["message"]
    for method, path, status in [
        ("POST", url + "/cancel", 409),
        ("POST", url + "/retry", 409),
        ("GET", "/api/jobs/" + "0" * 32, 404),
        ("GET", "/api/jobs/not-a-job-id", 404),
        ("GET", "/api/jobs/" + "0" * 32 + "/events", 404),
        ("POST", "/api/jobs/" + "0" * 32 + "/retry", 404),
        ("GET", "/api/jobs?status=DONE", 400),
        ("GET", "/api/jobs?limit=0", 400),
        ("GET", url + "/items?outcome=great", 400),
    ]:
        answer = httpx.request(method, server.url(path))
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"] == PROBLEM


def test_retry_over_http_reimports_only_the_failed_item(server: JobServer) -> None:
    batch = server.inbox / "P1" / "retry"
    corpus(batch, 1)
    copy_files(batch, "MR_truncated.dcm")
    url = _post_import(server, path="retry", project="P1").headers["location"]
    assert server.wait_final(url)["status"] == "COMPLETED_WITH_ERRORS"
    before = {i["key"]: i for i in httpx.get(server.url(url + "/items")).json()["items"]}
    corpus(server.tmp / "fixed", 1)
    shutil.copy(server.tmp / "fixed" / "00000.dcm", batch / "MR_truncated.dcm")
    retried = httpx.post(server.url(url + "/retry"))
    assert retried.status_code == 202 and retried.json()["status"] == "PENDING"
    job = server.wait_final(url)
    assert job["status"] == "SUCCEEDED" and job["counts"] == {"stored": 2}
    after = {i["key"]: i for i in httpx.get(server.url(url + "/items")).json()["items"]}
    untouched = str(batch / "00000.dcm")
    assert after[untouched]["updated_at"] == before[untouched]["updated_at"]
