"""DICOMweb under each role, through a real ``dicomgate serve`` with authentication on.

LUNG and BRAIN each hold one study, stored by STOW-RS as the site admin with ``?project=``. A LUNG
collaborator finds and reads only LUNG; a study of BRAIN answers 404 to every LUNG caller, like
a study that does not exist; STOW-RS into LUNG needs write there (403 for the collaborator), into
a project the caller cannot see answers 404, and without a project only a site admin may store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.integration.dicomweb.conftest import ct_copy
from tests.integration.test_auth_http import ADMIN_PASSWORD, _cli, _env
from tests.serve import ServeProcess

BOUNDARY = "roles-boundary"
STOW_HEADERS = {
    "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    "Accept": "application/dicom+json",
}
ROLES = {"colin": ("LUNG", "collaborator"), "mia": ("LUNG", "member")}
Site = tuple[ServeProcess, dict[str, dict[str, Any]], dict[str, str]]


def _body(data: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _stow(
    srv: ServeProcess, who: dict[str, Any], project: str | None, study: str | None = None
) -> httpx.Response:
    params = {"project": project} if project else {}
    url = srv.url("/dicomweb/studies")
    data = _body(ct_copy(patient_id=f"PAT-{project}", study=study))
    return httpx.post(url, content=data, headers=STOW_HEADERS, params=params, timeout=60, **who)


def _archived(srv: ServeProcess, admin: dict[str, Any], count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found: list[dict[str, Any]] = httpx.get(srv.url("/dicomweb/studies"), **admin).json()
        if len(found) >= count:
            return found
        time.sleep(0.2)
    raise AssertionError("the stored studies were not archived")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dicomweb-roles")
    lines = [
        "projects: [{id: LUNG}, {id: BRAIN}]",
        "stable_after: 0.2",
        "stability_check_interval: 0.1",
        "log_level: WARNING",
        "auth:",
        f"  admin_password: {ADMIN_PASSWORD}",
        "  cookie_secure: false",
    ]
    srv = ServeProcess(tmp, lines, env=_env())
    srv.start()
    try:
        callers: dict[str, dict[str, Any]] = {"nobody": {}}
        callers["admin"] = {"auth": ("admin", ADMIN_PASSWORD)}
        for name, (project, role) in ROLES.items():
            password = f"{name} password for tests"
            assert _cli(srv.config, "users", "add", name, "--password", password).returncode == 0
            assert _cli(srv.config, "users", "grant", name, project, role).returncode == 0
            callers[name] = {"auth": (name, password)}
        studies = {}
        for project in ("LUNG", "BRAIN"):
            studies[project] = generate_uid()
            stored = _stow(srv, callers["admin"], project, studies[project])
            assert stored.status_code == 200, stored.text
        _archived(srv, callers["admin"], 2)
        yield srv, callers, studies
    finally:
        srv.stop()


def _uids(response: httpx.Response) -> set[str]:
    return {study["0020000D"]["Value"][0] for study in response.json()}


def test_qido_lists_only_the_callers_projects(site: Site) -> None:
    srv, callers, studies = site
    url = srv.url("/dicomweb/studies")
    assert httpx.get(url, **callers["nobody"]).status_code == 401
    assert _uids(httpx.get(url, **callers["admin"])) == set(studies.values())
    for name in ("colin", "mia"):
        assert _uids(httpx.get(url, **callers[name])) == {studies["LUNG"]}


@pytest.mark.parametrize("suffix", ["/metadata", "", "/series"])
def test_a_study_of_another_project_answers_like_a_missing_one(site: Site, suffix: str) -> None:
    srv, callers, studies = site
    accept = {"Accept": "multipart/related; type=application/dicom"} if suffix == "" else {}
    for name in ("colin", "mia"):
        who = callers[name]
        own = httpx.get(
            srv.url(f"/dicomweb/studies/{studies['LUNG']}{suffix}"), headers=accept, **who
        )
        assert own.status_code == 200, (name, own.text)
        other = httpx.get(
            srv.url(f"/dicomweb/studies/{studies['BRAIN']}{suffix}"), headers=accept, **who
        )
        missing = httpx.get(
            srv.url(f"/dicomweb/studies/1.2.3.4.5.6{suffix}"), headers=accept, **who
        )
        assert other.status_code == missing.status_code, (name, other.text)
        if suffix == "/series":  # a search: no match, as for a study that does not exist
            assert other.status_code == 200 and other.json() == missing.json() == []
            continue
        assert other.status_code == 404
        hidden = other.json()["detail"].replace(studies["BRAIN"], "X")
        assert hidden == missing.json()["detail"].replace("1.2.3.4.5.6", "X")


def test_stow_needs_write_in_the_named_project(site: Site) -> None:
    srv, callers, _ = site
    assert _stow(srv, callers["nobody"], "LUNG").status_code == 401
    assert _stow(srv, callers["colin"], "LUNG").status_code == 403
    assert _stow(srv, callers["mia"], "BRAIN").status_code == 404
    assert _stow(srv, callers["mia"], "NOPE").status_code == 404
    assert _stow(srv, callers["mia"], None).status_code == 403  # only admins leave it out
    assert _stow(srv, callers["mia"], "LUNG").status_code == 200
    assert _stow(srv, callers["admin"], None).status_code == 200


def test_a_search_with_bad_credentials_is_one_401_and_one_failed_login(site: Site) -> None:
    srv, callers, _ = site
    admin = callers["admin"]

    def failed_logins() -> list[dict[str, Any]]:
        url = srv.url("/api/audit")
        lines = httpx.get(url, params={"action": "login"}, **admin).text.splitlines()
        records = [json.loads(line) for line in lines if line]
        return [r for r in records if r["outcome"] != 0]

    before = len(failed_logins())
    url = srv.url("/dicomweb/studies")
    for headers in ({"Authorization": "Basic !!not-base64"}, {"Authorization": "Magic x"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{url}/1.2.3/series", auth=("colin", "not the password"))
    assert wrong.status_code == 401
    assert len(failed_logins()) == before + 3  # one record per refused request
