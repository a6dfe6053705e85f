"""Each role against each kind of REST write, through a real ``dicomgate serve`` with auth on.

LUNG holds the objects acted on (manual archive policy, so imported studies wait in the
prearchive). The callers: nobody, an expired and a revoked token, a LUNG collaborator, member
and owner, a BRAIN-only member, a LUNG+BRAIN member's token scoped to BRAIN, a LUNG member's
read-only token, and the site admin. A caller who may not see LUNG gets 404, exactly like a
missing object; one who may see it but not write gets 403. Every action, allowed or refused,
leaves an audit record with its DICOM event code and outcome; the chain still verifies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _free_port
from tests.integration.test_auth_http import ADMIN_PASSWORD, Server, _cli, _study

STUDIES = ("a1", "a2", "a3", "rename", "move", "delete", "qrel", "qdel", "share", "spare")
ROLES = {
    "colin": [("LUNG", "collaborator")],
    "mia": [("LUNG", "member")],
    "otto": [("LUNG", "owner")],
    "bert": [("BRAIN", "member")],
    "tess": [("LUNG", "member"), ("BRAIN", "member")],
}
# What a write to a LUNG object answers to each caller who may not do it.
REFUSED = {
    "nobody": 401,
    "expired": 401,
    "revoked": 401,
    "colin": 403,
    "mia:read": 403,
    "bert": 404,
    "tess@BRAIN": 404,
}
OK, REFUSAL = 0, 4  # EventOutcomeIndicator: success, minor failure
Site = tuple[Server, dict[str, dict[str, Any]], dict[str, int]]


def _config(srv: Server, tmp: Path) -> None:
    dead = _free_port()  # a PACS node nobody listens on: submitting needs no answer
    srv.config.write_text(
        "\n".join(
            [
                f"data_dir: {tmp / 'data'}",
                f"http_port: {srv.port}",
                f"dicom_port: {_free_port()}",
                "default_project: LUNG",
                "projects: [{id: LUNG, archive_policy: manual}, {id: BRAIN}]",
                "stable_after: 0.2",
                "stability_check_interval: 0.1",
                "jobs:",
                f"  inbox_root: {tmp / 'inbox'}",
                "sources:",
                f"  media_roots: [{tmp / 'media'}]",
                "pacs:",
                f"  nodes: [{{name: dead, ae_title: DEAD, host: 127.0.0.1, port: {dead}}}]",
                "auth:",
                f"  admin_password: {ADMIN_PASSWORD}",
                "  cookie_secure: false",
            ]
        )
        + "\n"
    )


def _password(name: str) -> str:
    return f"{name} password for tests"


def _token(srv: Server, name: str, *options: str) -> str:
    done = _cli(srv.config, "users", "token", name, *options)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _users(srv: Server) -> dict[str, dict[str, Any]]:
    for name, grants in ROLES.items():
        assert _cli(srv.config, "users", "add", name, "--password", _password(name)).returncode == 0
        for project, role in grants:
            assert _cli(srv.config, "users", "grant", name, project, role).returncode == 0
    callers: dict[str, dict[str, Any]] = {name: {"auth": (name, _password(name))} for name in ROLES}
    tokens = {
        "expired": _token(srv, "mia", "--days", "0.00001"),
        "revoked": _token(srv, "mia", "--label", "to-revoke"),
        "tess@BRAIN": _token(srv, "tess", "--project", "BRAIN"),
        "mia:read": _token(srv, "mia", "--permission", "read"),
    }
    callers |= {k: {"headers": {"Authorization": f"Bearer {v}"}} for k, v in tokens.items()}
    return callers | {"nobody": {}, "admin": {"auth": ("admin", ADMIN_PASSWORD)}}


def _revoke(srv: Server, callers: dict[str, dict[str, Any]]) -> None:
    listed = httpx.get(srv.url("/api/auth/tokens"), **callers["mia"]).json()
    [token] = [t for t in listed if t["label"] == "to-revoke"]
    response = httpx.delete(srv.url(f"/api/auth/tokens/{token['id']}"), **callers["mia"])
    assert response.status_code == 204


def _staged(srv: Server, uids: dict[str, str]) -> dict[str, int]:
    deadline = time.monotonic() + 60
    admin = ("admin", ADMIN_PASSWORD)
    while time.monotonic() < deadline:
        rows = httpx.get(srv.url("/api/prearchive?status=READY"), auth=admin).json()
        by_uid = {r["study_uid"]: r["id"] for r in rows if r["target_project"] == "LUNG"}
        if all(uid in by_uid for uid in uids.values()):
            return {name: by_uid[uid] for name, uid in uids.items()}
        time.sleep(0.2)
    everything = httpx.get(srv.url("/api/prearchive"), auth=admin).json()
    raise AssertionError(f"the studies did not become READY sessions of LUNG: {everything}")


def _inputs(tmp: Path) -> dict[str, str]:
    incoming = tmp / "incoming"
    for folder in (incoming, tmp / "inbox" / "LUNG", tmp / "media" / "disc"):
        folder.mkdir(parents=True)
    _study(tmp / "inbox" / "LUNG", "inbox", "inbox")
    _study(tmp / "media" / "disc", "media", "media")
    return {name: _study(incoming, name, name) for name in STUDIES}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("roles")
    srv = Server(tmp)
    _config(srv, tmp)
    uids = _inputs(tmp)
    assert _cli(srv.config, "import", str(tmp / "incoming")).returncode == 0
    srv.start()
    try:
        callers = _users(srv)
        _revoke(srv, callers)
        staged = _staged(srv, uids)
        time.sleep(1)  # the expired token's second is over
        yield srv, callers, staged
    finally:
        srv.stop()


def _call(site: Site, who: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    srv, callers, _ = site
    credentials = dict(callers[who])
    headers = {**credentials.pop("headers", {}), **kwargs.pop("headers", {})}
    return httpx.request(
        method, srv.url(path), timeout=30, headers=headers, **credentials, **kwargs
    )


def _refused(site: Site, method: str, path: str, expected: dict[str, int], **kw: Any) -> None:
    for who, status in expected.items():
        response = _call(site, who, method, path, **kw)
        assert response.status_code == status, (who, method, path, response.text)
        if status == 404:
            # Indistinguishable from a missing object: no hint that it exists.
            assert "permission" not in response.text


def _audit(site: Site, action: str) -> list[dict[str, Any]]:
    response = _call(site, "admin", "GET", "/api/audit", params={"action": action})
    assert response.status_code == 200
    return [json.loads(line) for line in response.text.splitlines()]


def _audited(site: Site, action: str, code: str, actor: str, outcome: int) -> dict[str, Any]:
    found = [
        r
        for r in _audit(site, action)
        if r["actor"] == actor and r["outcome"] == outcome and r["event_code"] == code
    ]
    assert found, (action, code, actor, outcome)
    assert found[-1]["source"] == "127.0.0.1"
    return found[-1]


def test_prearchive_archive_by_role(site: Site) -> None:
    staged = site[2]
    path = f"/api/prearchive/{staged['a1']}/archive"
    _refused(site, "POST", path, REFUSED)
    for who, name in (("mia", "a1"), ("otto", "a2"), ("admin", "a3")):
        response = _call(site, who, "POST", f"/api/prearchive/{staged[name]}/archive")
        assert response.status_code == 200, (who, response.text)
        assert response.json()["status"] == "ARCHIVED"
    record = _audited(site, "archive", "110103", "mia", OK)
    assert record["objects"]["staging_pk"] == staged["a1"]
    assert record["objects"]["archived_session_pk"] > 0
    _audited(site, "archive", "110103", "colin", REFUSAL)
    _audited(site, "archive", "110103", "bert", REFUSAL)


def test_a_missing_staging_session_and_a_hidden_one_answer_alike(site: Site) -> None:
    staged = site[2]
    hidden = _call(site, "bert", "POST", f"/api/prearchive/{staged['spare']}/archive")
    missing = _call(site, "bert", "POST", "/api/prearchive/999999/archive")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace(str(staged["spare"]), "N") == missing.json()[
        "detail"
    ].replace("999999", "N")
    listed = _call(site, "bert", "GET", "/api/prearchive").json()
    assert not [r for r in listed if "LUNG" in (r["project_id"], r["target_project"])]
    assert _call(site, "bert", "GET", f"/api/prearchive/{staged['spare']}").status_code == 404
    assert _call(site, "colin", "GET", f"/api/prearchive/{staged['spare']}").status_code == 200


def test_prearchive_rename_move_delete_by_role(site: Site) -> None:
    staged = site[2]
    rename = f"/api/prearchive/{staged['rename']}/rename"
    _refused(site, "POST", rename, REFUSED, json={"session": "RENAMED"})
    assert _call(site, "mia", "POST", rename, json={"session": "RENAMED"}).status_code == 200
    move = f"/api/prearchive/{staged['move']}/move"
    _refused(site, "POST", move, REFUSED, json={"project": "BRAIN"})
    # mia writes LUNG but cannot see BRAIN: the target answers like a missing project.
    assert _call(site, "mia", "POST", move, json={"project": "BRAIN"}).status_code == 404
    assert _call(site, "tess", "POST", move, json={"project": "BRAIN"}).status_code == 200
    delete = f"/api/prearchive/{staged['delete']}"
    _refused(site, "DELETE", delete, REFUSED)
    response = _call(site, "mia", "DELETE", delete)
    assert response.status_code == 200 and response.json()["instances"] == 1
    _audited(site, "rename", "110103", "mia", OK)
    _audited(site, "move", "110103", "tess", OK)
    _audited(site, "move", "110103", "mia", REFUSAL)
    deleted = _audited(site, "delete", "110105", "mia", OK)
    assert deleted["objects"] == {"staging_pk": staged["delete"], "instances": 1}
    _audited(site, "delete", "110105", "colin", REFUSAL)


def _quarantine(site: Site, name: str) -> str:
    response = _call(
        site,
        "mia",
        "POST",
        f"/api/prearchive/{site[2][name]}/archive",
        json={"project": "QUARANTINE"},
    )
    assert response.status_code == 200, response.text
    return str(response.json()["archived_session"]["label"])


def test_quarantine_release_and_delete_by_role(site: Site) -> None:
    released, deleted = _quarantine(site, "qrel"), _quarantine(site, "qdel")
    listed = {row["label"] for row in _call(site, "mia", "GET", "/api/quarantine").json()}
    assert {released, deleted} <= listed
    assert _call(site, "bert", "GET", "/api/quarantine").json() == []
    release = f"/api/quarantine/{released}/release"
    _refused(site, "POST", release, REFUSED, json={"project": "LUNG"})
    response = _call(site, "mia", "POST", release, json={"project": "LUNG"})
    assert response.status_code == 200, response.text
    assert response.json()["project"] == "LUNG"
    delete = f"/api/quarantine/{deleted}"
    _refused(site, "DELETE", delete, REFUSED)
    assert _call(site, "mia", "DELETE", delete).status_code == 200
    record = _audited(site, "quarantine_release", "110103", "mia", OK)
    assert record["objects"]["archived_session_pk"] > 0
    _audited(site, "quarantine_release", "110103", "colin", REFUSAL)
    _audited(site, "quarantine_delete", "110105", "mia", OK)
    _audited(site, "quarantine_delete", "110105", "bert", REFUSAL)


def _dicom_body(site: Site) -> bytes:
    # A new study each time, so that no upload touches a staging session another test uses.
    folder = site[0].tmp / "uploads-in"
    folder.mkdir(exist_ok=True)
    name = f"up{len(list(folder.iterdir()))}"
    _study(folder, name, name)
    return (folder / f"{name}.dcm").read_bytes()


def test_imports_by_role(site: Site) -> None:
    body = _dicom_body(site)
    upload = "/api/imports/upload?project=LUNG"
    headers = {"Content-Type": "application/dicom"}
    _refused(site, "POST", upload, REFUSED, content=body, headers=headers)
    response = _call(site, "mia", "POST", upload, content=body, headers=headers)
    assert response.status_code == 202, response.text
    inbox = {"path": "inbox.dcm", "project": "LUNG"}
    _refused(site, "POST", "/api/imports", REFUSED, json=inbox)
    assert _call(site, "mia", "POST", "/api/imports", json=inbox).status_code == 202
    media = {"path": str(site[0].tmp / "media" / "disc"), "project": "LUNG"}
    _refused(site, "POST", "/api/imports/media", REFUSED, json=media)
    assert _call(site, "otto", "POST", "/api/imports/media", json=media).status_code == 202
    for source, actor in (("upload", "mia"), ("inbox", "mia"), ("media", "otto")):
        ok = [
            r
            for r in _audit(site, "import")
            if r["objects"].get("source") == source and r["actor"] == actor and r["outcome"] == OK
        ]
        assert ok and ok[-1]["event_code"] == "110107" and len(ok[-1]["objects"]["job_id"]) == 32
    _audited(site, "import", "110107", "colin", REFUSAL)
    _audited(site, "import", "110107", "bert", REFUSAL)


def test_pacs_by_role(site: Site) -> None:
    target = {"targets": [{"level": "STUDY", "uid": "1.2.3.4"}], "project": "LUNG"}
    # A project the caller may not see is refused like a missing one (400 for a job request).
    retrieve_refused = REFUSED | {"bert": 400, "tess@BRAIN": 400}
    _refused(site, "POST", "/api/pacs/dead/retrieve", retrieve_refused, json=target)
    missing = _call(
        site, "bert", "POST", "/api/pacs/dead/retrieve", json={**target, "project": "NOPE"}
    )
    hidden = _call(site, "bert", "POST", "/api/pacs/dead/retrieve", json=target)
    assert missing.json()["detail"].replace("NOPE", "X") == hidden.json()["detail"].replace(
        "LUNG", "X"
    )
    unrouted = {"targets": target["targets"]}
    assert _call(site, "mia", "POST", "/api/pacs/dead/retrieve", json=unrouted).status_code == 403
    assert _call(site, "mia", "POST", "/api/pacs/dead/retrieve", json=target).status_code == 202
    csv = {"content": "PatientID\nX1\n", "headers": {"Content-Type": "text/csv"}}
    _refused(site, "POST", "/api/pacs/dead/import?project=LUNG", retrieve_refused, **csv)
    assert (
        _call(site, "mia", "POST", "/api/pacs/dead/import?project=LUNG", **csv).status_code == 202
    )
    find = {"level": "STUDY", "keys": {"PatientID": "X1"}}
    assert _call(site, "colin", "POST", "/api/pacs/dead/find", json=find).status_code == 403
    failed = _call(site, "mia", "POST", "/api/pacs/dead/find", json=find)
    assert failed.status_code >= 500
    _audited(site, "import", "110107", "mia", OK)
    _audited(site, "pacs_query", "110112", "colin", REFUSAL)
    record = _audited(site, "pacs_query", "110112", "mia", 8)  # serious failure: no answer
    assert "X1" not in json.dumps(record)


def test_jobs_by_role(site: Site) -> None:
    upload = "/api/imports/upload?project=LUNG"
    body = {"content": _dicom_body(site), "headers": {"Content-Type": "application/dicom"}}
    job = _call(site, "mia", "POST", upload, **body).json()["job_id"]
    for who, status in (("colin", 200), ("otto", 200), ("admin", 200), ("bert", 404)):
        assert _call(site, who, "GET", f"/api/jobs/{job}").status_code == status, who
        listed = {j["id"] for j in _call(site, who, "GET", "/api/jobs").json()["jobs"]}
        assert (job in listed) is (status == 200), who
    assert _call(site, "tess@BRAIN", "GET", f"/api/jobs/{job}").status_code == 404
    _refused(site, "POST", f"/api/jobs/{job}/cancel", REFUSED)
    # Past the role check: the owner (and a LUNG owner) may cancel; an ended job is 409.
    for who in ("mia", "otto"):
        assert _call(site, who, "POST", f"/api/jobs/{job}/cancel").status_code in (202, 409)
    _audited(site, "job_cancel", "110100", "colin", REFUSAL)
    assert {r["actor"] for r in _audit(site, "job_cancel")} >= {"mia", "otto"}
    bert_job = _call(site, "bert", "POST", "/api/imports/upload?project=BRAIN", **body).json()
    assert _call(site, "bert", "GET", f"/api/jobs/{bert_job['job_id']}").status_code == 200
    assert _call(site, "mia", "GET", f"/api/jobs/{bert_job['job_id']}").status_code == 404


def test_projects_extract_cards_share_by_role(site: Site) -> None:
    created = {"id": "NEWPROJ"}
    for who in ("mia", "otto", "colin"):
        assert _call(site, who, "POST", "/api/projects", json=created).status_code == 403
    assert _call(site, "admin", "POST", "/api/projects", json=created).status_code == 201
    visible = {p["id"] for p in _call(site, "bert", "GET", "/api/projects").json()}
    assert "LUNG" not in visible and "BRAIN" in visible
    assert _call(site, "bert", "GET", "/api/projects/LUNG").status_code == 404
    extract = "/api/projects/LUNG/extract?tags=Modality"
    _refused(site, "GET", extract, {"nobody": 401, "bert": 404, "tess@BRAIN": 404})
    response = _call(site, "colin", "GET", extract)
    assert response.status_code == 200 and response.text.startswith("Modality")
    cards = "/api/projects/LUNG/study-cards/apply"
    _refused(site, "POST", cards, REFUSED)
    assert _call(site, "otto", "POST", cards).status_code == 400  # past the check: no cards
    archived = _call(site, "admin", "POST", f"/api/prearchive/{site[2]['share']}/archive").json()
    label = archived["archived_session"]["label"]
    share = f"/api/projects/LUNG/sessions/{label}/share"
    _refused(site, "POST", share, REFUSED, json={"project": "BRAIN"})
    assert _call(site, "mia", "POST", share, json={"project": "BRAIN"}).status_code == 404
    # tess may write both; BRAIN has no de-identification profile, refused after the check.
    assert _call(site, "tess", "POST", share, json={"project": "BRAIN"}).status_code == 409
    _audited(site, "project_create", "110100", "admin", OK)
    _audited(site, "project_create", "110100", "otto", REFUSAL)
    _audited(site, "extract", "110106", "colin", OK)
    _audited(site, "extract", "110106", "bert", REFUSAL)
    _audited(site, "share", "110106", "colin", REFUSAL)
    _audited(site, "share", "110106", "tess", REFUSAL)


def test_audit_chain_verifies_after_the_actions(site: Site) -> None:
    srv = site[0]
    assert (
        _call(
            site,
            "mia",
            "POST",
            f"/api/prearchive/{site[2]['spare']}/rename",
            json={"session": "AGAIN"},
        ).status_code
        == 200
    )
    assert _call(site, "mia", "GET", "/api/audit").status_code == 403
    done = _cli(srv.config, "audit", "verify")
    assert done.returncode == 0, done.stdout + done.stderr
