"""A study's pseudonym mapping uploaded into the vault (REST, CLI), used on the next archive."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI, Request, Response
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api import install_error_handlers
from dicomgate.access.deid_api import create_deid_api
from dicomgate.auth.guard import local_caller, open_gate
from dicomgate.auth.roles import Caller, Role
from dicomgate.jobs import Jobs
from dicomgate.jobs.config import JobsConfig
from dicomgate.prearchive import actions
from tests.integration.deid.conftest import RESEARCH, Site
from tests.unit.deid.deid_builders import ct_slice

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MakeSite = Callable[..., Site]
MAPPED = {"id": "RESEARCH", "deid": {"profile": {}, "pseudonym": {"scheme": "mapping"}}}
OWNER = Caller("owner", roles={"RESEARCH": Role.OWNER})
URL = "/api/projects/RESEARCH/pseudonym-mapping"


def _client(site: Site, caller: Caller | None) -> TestClient:
    app = FastAPI()

    @app.middleware("http")
    async def authenticate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if caller is not None:
            request.state.caller = caller  # what the authentication dependency leaves
        return await call_next(request)

    jobs = Jobs(site.review.intake, JobsConfig())
    app.include_router(create_deid_api(site.review, jobs, open_gate()))
    install_error_handlers(app)
    return TestClient(app)


def _csv(*rows: str) -> dict[str, Any]:
    body = "\n".join(["original,pseudonym", *rows]) + "\n"
    return {"content": body.encode(), "headers": {"content-type": "text/csv"}}


def test_uploaded_mapping_gives_the_pseudonym_without_a_restart(make_site: MakeSite) -> None:
    site = make_site(MAPPED)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    [held] = site.staging()
    assert held.reasons[0]["code"] == "pseudonym_unavailable"  # nothing mapped yet
    http = _client(site, OWNER)
    done = http.put(URL, **_csv("PIDQ778899,LUNG-017", "PIDQ000002,LUNG-018"))
    assert done.status_code == 200, done.text
    assert done.json() == {"project": "RESEARCH", "added": 2, "total": 2}
    again = http.put(URL, json={"mapping": {"PIDQ778899": "LUNG-017", "PIDQ000003": "LUNG-019"}})
    assert again.json() == {"project": "RESEARCH", "added": 1, "total": 3}
    actions.archive(site.review, held.pk, caller=local_caller())
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "LUNG-017"
    assert {ds.PatientID for ds in site.stored(archived)} == {"LUNG-017"}


@pytest.mark.parametrize(
    ("request_args", "status", "says"),
    [
        (_csv("PIDQ778899,LUNG^017"), 400, "line 2"),
        (_csv("PIDQ778899"), 400, "line 2: empty"),
        ({"json": {"PIDQ778899": "LUNG-017"}}, 400, "expected"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "JSON"),
        ({"content": b"\xff\xfe", "headers": {"content-type": "text/csv"}}, 400, "UTF-8"),
        ({"content": b"x", "headers": {"content-type": "application/zip"}}, 415, "text/csv"),
        (_csv(), 409, "no entry"),
        (_csv("PIDQ778899,LUNG-099"), 409, "LUNG-001 would get LUNG-099"),
    ],
)
def test_bad_uploads_are_refused_without_echoing_values(
    make_site: MakeSite, request_args: dict[str, Any], status: int, says: str
) -> None:
    site = make_site(MAPPED)
    http = _client(site, OWNER)
    assert http.put(URL, **_csv("PIDQ778899,LUNG-001")).status_code == 200
    response = http.put(URL, **request_args)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]
    assert "PIDQ778899" not in response.text


def test_upload_needs_manage_in_a_mapping_project(make_site: MakeSite) -> None:
    site = make_site(MAPPED, {"id": "KEYED", "deid": {"profile": {}}}, {"id": "CLINIC"})
    body = _csv("PIDQ778899,LUNG-001")
    member = Caller("m", roles={"RESEARCH": Role.COLLABORATOR})
    assert _client(site, member).put(URL, **body).status_code == 403
    assert _client(site, Caller("x")).put(URL, **body).status_code == 404
    admin = _client(site, Caller("admin", is_admin=True))
    keyed = admin.put(URL.replace("RESEARCH", "KEYED"), **body)
    assert keyed.status_code == 409 and "'mapping' pseudonym scheme" in keyed.text
    clinic = admin.put(URL.replace("RESEARCH", "CLINIC"), **body)
    assert clinic.status_code == 409 and "not de-identified" in clinic.text
    with site.vault() as vault:
        assert vault.mapping_count("RESEARCH") == 0


def test_mapping_cli(make_site: MakeSite, tmp_path: Path) -> None:
    site = make_site(MAPPED)
    config = tmp_path / "site.yaml"
    settings = {
        "data_dir": str(site.review.settings.data_dir),
        "projects": [MAPPED, RESEARCH | {"id": "OTHER"}],
        "deid": {"vault_key_file": str(site.key_file)},
    }
    config.write_text(yaml.safe_dump(settings))
    (tmp_path / "map.csv").write_text("original,pseudonym\nPIDQ778899,LUNG-017\n")

    def run(project: str, path: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dicomgate", "deid", "mapping", project, str(path)]
        return subprocess.run(
            [*command, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        )

    done = run("RESEARCH", tmp_path / "map.csv")
    assert done.returncode == 0, done.stderr
    assert "1 new mapping entries, 1 in all" in done.stdout
    refused = run("OTHER", tmp_path / "map.csv")
    assert refused.returncode == 1 and "'mapping' pseudonym scheme" in refused.stderr
    missing = run("RESEARCH", tmp_path / "none.csv")
    assert missing.returncode == 2
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "LUNG-017"
