"""Sharing into a research project (a job), re-identification behind its permission hook."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import Depends, FastAPI, Request
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api_errors import install_error_handlers
from dicomgate.access.deid_api import create_deid_api
from dicomgate.app import check_vault
from dicomgate.archive.share import bind_share
from dicomgate.auth.audit import AuditTrail
from dicomgate.auth.guard import Gate, open_gate
from dicomgate.auth.roles import Caller, Role
from dicomgate.deid import check_references
from dicomgate.deid.reidentify import allow_listed, reidentify
from dicomgate.errors import ConfigError, PermissionDeniedError
from dicomgate.jobs import Jobs, JobStatus
from dicomgate.jobs.config import JobsConfig
from dicomgate.sources import files as _files  # noqa: F401  (registers import_files)
from tests.integration.deid.conftest import BOTH_DATABASES, RESEARCH, Site
from tests.unit.deid.deid_builders import ROOT, ct_slice, rt_chain, to_bytes

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

LEAKS = (b"ZQX", b"PIDQ778899", b"ACCQ4455", ROOT.encode())
MakeSite = Callable[..., Site]


def _jobs(site: Site) -> Jobs:
    bind_share(site.review)
    config = JobsConfig(retry_base_delay=0, retry_max_delay=0, max_attempts=2, lease_seconds=5)
    return Jobs(site.review.intake, config)


def _client(site: Site, jobs: Jobs, **hooks: Any) -> TestClient:
    app = FastAPI()
    app.include_router(create_deid_api(site.review, jobs, open_gate(), **hooks))
    install_error_handlers(app)
    return TestClient(app)


def _clinic_site(make_site: MakeSite) -> Site:
    site = make_site({"id": "CLINIC"}, RESEARCH)
    site.send(rt_chain(), "CLINIC")
    site.run()
    return site


@BOTH_DATABASES
def test_share_job_deidentifies_into_the_target(make_site: MakeSite) -> None:
    site = _clinic_site(make_site)
    jobs = _jobs(site)
    [clinical] = site.sessions("CLINIC")
    response = _client(site, jobs).post(
        f"/api/projects/CLINIC/sessions/{clinical.label}/share", json={"project": "RESEARCH"}
    )
    assert response.status_code == 202, response.text
    job = jobs.run_inline(response.json()["job"])
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert job.counts == {"stored": 6}
    [shared] = site.sessions("RESEARCH")
    copies = site.stored(shared)
    assert shared.subject_label == "SUBJ-0001"
    assert check_references(copies) == []
    for ds in copies:
        data = to_bytes(ds)
        assert not any(leak in data for leak in LEAKS)
    assert {ds.PatientID for ds in site.stored(clinical)} == {"PIDQ778899"}  # source untouched
    again = jobs.run_inline(jobs.submit("share_session", job.params))
    assert again.status is JobStatus.SUCCEEDED
    assert again.counts == {"already_stored": 6}
    assert len(site.sessions("RESEARCH")) == 1


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/projects/CLINIC/sessions/NOPE/share", {"project": "RESEARCH"}, 404),
        ("/api/projects/CLINIC/sessions/{label}/share", {"project": "CLINIC"}, 409),
        ("/api/projects/RESEARCH/sessions/{label}/share", {"project": "DEFAULT"}, 409),
        ("/api/projects/CLINIC/sessions/{label}/share", {"project": "bad id!"}, 400),
        ("/api/projects/CLINIC/sessions/{label}/share", {"projekt": "RESEARCH"}, 400),
    ],
)
def test_share_refusals(make_site: MakeSite, path: str, body: dict[str, str], status: int) -> None:
    site = _clinic_site(make_site)
    [clinical] = site.sessions("CLINIC")
    response = _client(site, _jobs(site)).post(path.format(label=clinical.label), json=body)
    assert response.status_code == status, response.text


def test_share_of_burned_in_data_rejects_the_items(make_site: MakeSite) -> None:
    site = make_site({"id": "CLINIC"}, RESEARCH)
    us = ct_slice(0)
    us.Modality = "US"
    site.send([us], "CLINIC")
    site.run()
    [clinical] = site.sessions("CLINIC")
    jobs = _jobs(site)
    params = {"source_project": "CLINIC", "session": clinical.label, "target_project": "RESEARCH"}
    job = jobs.run_inline(jobs.submit("share_session", params))
    assert job.status is JobStatus.COMPLETED_WITH_ERRORS
    assert job.counts == {"rejected": 1}
    assert site.sessions("RESEARCH") == []


def test_reidentify_over_http_is_refused_and_recorded(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    client = _client(site, _jobs(site))
    response = client.post(
        "/api/projects/RESEARCH/subjects/SUBJ-0001/reidentify", json={"purpose": "follow-up"}
    )
    assert response.status_code == 403
    assert "ZQX" not in response.text
    with site.vault() as vault:
        [entry] = vault.access_log()
    assert (entry.action, entry.actor, entry.pseudonym) == (
        "reidentify_refused",
        "anonymous",
        "SUBJ-0001",
    )


def test_reidentify_with_the_permission_hook(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    client = _client(
        site,
        _jobs(site),
        check=lambda _request: allow_listed(["dr-who"]),
        actor=lambda _request: "dr-who",
    )
    path = "/api/projects/RESEARCH/subjects/SUBJ-0001/reidentify"
    response = client.post(path, json={"purpose": "incidental finding"})
    assert response.status_code == 200
    assert response.json()["last_name"] == "ZQXDOE"
    assert client.post(path.replace("0001", "0999"), json={"purpose": "x"}).status_code == 404
    with site.vault() as vault:
        check = allow_listed(["dr-who"])
        with pytest.raises(PermissionDeniedError):
            reidentify(vault, check, "dr-who", "RESEARCH", "SUBJ-0001", purpose=" ")
        with pytest.raises(PermissionDeniedError):
            reidentify(vault, check, "mallory", "RESEARCH", "SUBJ-0001", purpose="curious")
        actions = [(e.actor, e.action) for e in vault.access_log()]
    assert actions == [
        ("dr-who", "reidentify"),
        ("dr-who", "reidentify"),
        ("dr-who", "reidentify_refused"),
        ("mallory", "reidentify_refused"),
    ]


def test_reidentify_cli_needs_an_allowed_actor(make_site: MakeSite, tmp_path: Path) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    config = tmp_path / "site.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(site.review.settings.data_dir),
                "projects": [RESEARCH],
                "deid": {"vault_key_file": str(site.key_file), "reidentify_actors": ["dr-who"]},
            }
        )
    )

    def run(actor: str) -> subprocess.CompletedProcess[str]:
        args = ["deid", "reidentify", "RESEARCH", "SUBJ-0001", "--actor", actor]
        return subprocess.run(
            [sys.executable, "-m", "dicomgate", *args, "--purpose", "audit", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin"},
        )

    refused = run("mallory")
    assert refused.returncode == 1 and "refused" in refused.stderr
    assert "ZQX" not in refused.stdout + refused.stderr
    allowed = run("dr-who")
    assert allowed.returncode == 0, allowed.stderr
    assert "last_name: ZQXDOE" in allowed.stdout
    with site.vault() as vault:
        assert [e.action for e in vault.access_log()] == ["reidentify_refused", "reidentify"]


def test_import_job_carries_the_confirmed_identity(make_site: MakeSite, tmp_path: Path) -> None:
    site = make_site(RESEARCH)
    folder = tmp_path / "cd"
    folder.mkdir()
    (folder / "1.dcm").write_bytes(to_bytes(ct_slice(0)))
    jobs = _jobs(site)
    identity = {"first_name": "ZQXJANE", "last_name": "ZQXDOE"}
    params = {"paths": [str(folder)], "project": "RESEARCH", "identity": identity}
    assert jobs.run_inline(jobs.submit("import_files", params)).status is JobStatus.SUCCEEDED
    site.run()
    [staging] = site.staging()
    assert staging.status == "CONFLICT"
    assert staging.reasons[0]["details"]["fields"] == [
        {"field": "first_name", "confirmed": "ZQXJANE", "headers": "ZQXJOHN"}
    ]
    bad = {**params, "identity": {"first_name": "A", "birth_date": "1960-13-01"}}
    assert jobs.run_inline(jobs.submit("import_files", bad)).status is JobStatus.FAILED


def test_start_refuses_a_vault_it_cannot_open(make_site: MakeSite, tmp_path: Path) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()  # the vault now exists under the right key
    settings = site.review.settings
    check_vault(settings)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("ab" * 32)
    wrong_key = settings.deid.model_copy(update={"vault_key_file": wrong})
    with pytest.raises(ConfigError, match=r"deid\.vault_key_file: .*does not open"):
        check_vault(settings.model_copy(update={"deid": wrong_key}))
    no_key = settings.deid.model_copy(update={"vault_key_file": None, "vault_key_env": "NO_KEY"})
    with pytest.raises(ConfigError, match=r"deid\.vault_key_env: .*NO_KEY is not set"):
        check_vault(settings.model_copy(update={"deid": no_key}))


def _as(caller: Caller) -> Callable[[Request], None]:
    # What the authentication dependency leaves on the request (auth.http.caller_dependency).
    def resolve(request: Request) -> None:
        request.state.caller = caller

    return resolve


def test_reidentify_follows_the_callers_own_permission(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    path = "/api/projects/RESEARCH/subjects/SUBJ-0001/reidentify"
    owner = Caller("olga", roles={"RESEARCH": Role.OWNER})
    admin = Caller("root", is_admin=True)
    steward = Caller("sam", can_reidentify=True, scope_projects=frozenset({"RESEARCH"}))
    elsewhere = Caller("sam", can_reidentify=True, scope_projects=frozenset({"OTHER"}))
    for caller, status in ((owner, 403), (admin, 403), (elsewhere, 403), (steward, 200)):
        app = FastAPI(dependencies=[Depends(_as(caller))])
        app.include_router(create_deid_api(site.review, _jobs(site), open_gate()))
        install_error_handlers(app)
        response = TestClient(app).post(path, json={"purpose": "incidental finding"})
        assert response.status_code == status, caller
    with site.vault() as vault:
        actions = [(e.actor, e.action) for e in vault.access_log()]
    assert actions == [
        ("olga", "reidentify_refused"),
        ("root", "reidentify_refused"),
        ("sam", "reidentify_refused"),
        ("sam", "reidentify"),
    ]


def _is(caller: Caller) -> Callable[[Request], Caller]:
    def resolve(_request: Request) -> Caller:
        return caller

    return resolve


def test_reidentify_and_share_are_audited_with_their_outcome(
    make_site: MakeSite, tmp_path: Path
) -> None:
    site = make_site(RESEARCH)
    site.send([ct_slice(0)], "RESEARCH")
    site.run()
    [research] = site.sessions("RESEARCH")
    trail = AuditTrail(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    steward = Caller("sam", can_reidentify=True, roles={"RESEARCH": Role.MEMBER})
    reader = Caller("rita", roles={"RESEARCH": Role.COLLABORATOR})
    statuses = []
    for caller in (reader, steward):
        app = FastAPI(dependencies=[Depends(_as(caller))])
        gate = Gate(_is(caller), trail)
        app.include_router(create_deid_api(site.review, _jobs(site), gate))
        install_error_handlers(app)
        client = TestClient(app)
        reid = client.post(
            "/api/projects/RESEARCH/subjects/SUBJ-0001/reidentify", json={"purpose": "ZQX finding"}
        )
        share = client.post(
            f"/api/projects/RESEARCH/sessions/{research.label}/share", json={"project": "DEFAULT"}
        )
        statuses.append((reid.status_code, share.status_code))
    # sam may re-identify, but DEFAULT is not his to write into: the share answers 404.
    assert statuses == [(403, 403), (200, 404)]
    records = [(r.actor, r.event_code, r.action, r.outcome) for r in trail.records()]
    assert records == [
        ("rita", "110110", "reidentify", 4),
        ("rita", "110106", "share", 4),
        ("sam", "110110", "reidentify", 0),
        ("sam", "110106", "share", 4),
    ]
    assert all("ZQX" not in str(r.to_json()) for r in trail.records())
    assert trail.verify() == []
    trail.dispose()
