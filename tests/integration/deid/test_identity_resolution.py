"""A session held with ``identity_mismatch`` is resolved by a person: service, REST and CLI."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI
from pydicom.dataset import Dataset
from sqlalchemy import select
from starlette.exceptions import StarletteDeprecationWarning

from dicomgate.access.api import install_error_handlers
from dicomgate.archive.session_models import PrearchiveAction
from dicomgate.auth.guard import local_caller, open_gate
from dicomgate.deid.pseudonyms import Identity
from dicomgate.errors import ConflictError, InvalidInputError, NotFoundError
from dicomgate.prearchive.api import create_prearchive_api
from dicomgate.prearchive.identity import resolve_identity
from tests.integration.deid.conftest import BOTH_DATABASES, RESEARCH, Site
from tests.unit.deid.deid_builders import ROOT, ct_slice

CLI = local_caller()

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

MakeSite = Callable[..., Site]
# The operator confirmed 16 February; the headers say 15 February.
CONFIRMED = {"first_name": "Zqxjohn", "last_name": "Zqxdoe", "birth_date": "1960-02-16"}
HEADERS = Identity("ZQXJOHN", "ZQXDOE", birth_date="19600215", sex="M")
RIGHT = Identity("ZQXJOHN", "ZQXDOE", birth_date="19600216", sex="M")


def _study(n: int, **values: str) -> Dataset:
    """Return a one-slice study ``n`` (its own UIDs) of the ZQXDOE patient, headers changed."""
    ds = ct_slice(n)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = f"{ROOT}.{70 + n}", f"{ROOT}.{70 + n}.1"
    ds.SOPInstanceUID = f"{ROOT}.{70 + n}.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def _held(site: Site, n: int = 0, **values: str) -> int:
    site.send([_study(n, **values)], "RESEARCH", confirmed_identity=CONFIRMED)
    site.run()
    held = [s for s in site.staging() if s.status == "CONFLICT"]
    assert [r["code"] for r in held[-1].reasons] == ["identity_mismatch"]
    return int(held[-1].pk)


def _actions(site: Site, name: str) -> list[PrearchiveAction]:
    with site.db.reader() as session:
        query = select(PrearchiveAction).where(PrearchiveAction.action == name)
        return list(session.scalars(query))


@BOTH_DATABASES
def test_headers_are_right_archives_under_the_headers_subject(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    pk = _held(site)
    assert resolve_identity(site.review, pk, "headers", caller=CLI) == "ARCHIVED"
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "SUBJ-0001"
    with site.vault() as vault:
        found = vault.find_subject("RESEARCH", HEADERS)
        assert found is not None and found.pseudonym == "SUBJ-0001"
        assert vault.find_subject("RESEARCH", RIGHT) is None  # nothing made up from the other
    [action] = _actions(site, "identity_resolved")
    assert action.user == CLI.name
    assert action.details["use"] == "headers"
    assert "ZQX" not in str(action.details) and "1960" not in str(action.details)


def test_confirmed_is_right_links_the_wrong_headers_to_the_subject(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    pk = _held(site)
    assert resolve_identity(site.review, pk, "confirmed", caller=CLI) == "ARCHIVED"
    [first] = site.sessions("RESEARCH")
    with site.vault() as vault:
        by_confirmed = vault.find_subject("RESEARCH", RIGHT)
        by_headers = vault.find_subject("RESEARCH", HEADERS)
    assert by_confirmed is not None and by_headers is not None
    assert by_confirmed == by_headers and by_confirmed.pseudonym == first.subject_label
    # Follow-ups join the subject whether the headers carry the right or the wrong date.
    site.send([_study(1)], "RESEARCH")  # the scanner's wrong date again, no confirmed identity
    site.send([_study(2, PatientBirthDate="19600216")], "RESEARCH")
    site.run()
    assert {s.subject_label for s in site.sessions("RESEARCH")} == {first.subject_label}
    assert len(site.sessions("RESEARCH")) == 3


def test_assign_to_another_subject_of_the_project(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([_study(5, PatientName="ZQXROE^ZQXANN", PatientID="PIDQ000005")], "RESEARCH")
    site.run()
    [other] = site.sessions("RESEARCH")
    pk = _held(site)
    with pytest.raises(NotFoundError, match="no subject SUBJ-0099"):
        resolve_identity(site.review, pk, "subject", subject="SUBJ-0099", caller=CLI)
    with pytest.raises(InvalidInputError, match="needs the subject"):
        resolve_identity(site.review, pk, "subject", caller=CLI)
    assert (
        resolve_identity(site.review, pk, "subject", subject=other.subject_label, caller=CLI)
        == "ARCHIVED"
    )
    sessions = site.sessions("RESEARCH")
    assert len(sessions) == 2 and {s.subject_label for s in sessions} == {other.subject_label}
    site.send([_study(1)], "RESEARCH")  # a follow-up with the same headers joins it too
    site.run()
    assert {s.subject_label for s in site.sessions("RESEARCH")} == {other.subject_label}


def test_reject_deletes_the_staging_session(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    pk = _held(site)
    assert resolve_identity(site.review, pk, "reject", caller=CLI) == "DELETED"
    assert site.staging() == [] and site.blob_count() == 0
    [deleted] = _actions(site, "deleted")
    assert deleted.details["reasons"] == ["identity_mismatch"]


def test_refusals_name_what_is_wrong(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([_study(3)], "RESEARCH")
    site.run()
    archived = site.staging()[0]  # the original (ARCHIVED, deidentified)
    with pytest.raises(ConflictError, match="not held"):
        resolve_identity(site.review, archived.pk, "headers", caller=CLI)
    pk = _held(site)
    with pytest.raises(InvalidInputError, match="use: expected one of"):
        resolve_identity(site.review, pk, "overwrite", caller=CLI)
    with pytest.raises(InvalidInputError, match="only given with 'subject'"):
        resolve_identity(site.review, pk, "headers", subject="SUBJ-0001", caller=CLI)
    with pytest.raises(NotFoundError):
        resolve_identity(site.review, 999_999, "headers", caller=CLI)
    assert [s.status for s in site.staging() if s.pk == pk] == ["CONFLICT"]  # left as it was


def test_resolve_over_rest(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    pk = _held(site)
    app = FastAPI()
    app.include_router(create_prearchive_api(site.review, open_gate()))
    install_error_handlers(app)
    http = TestClient(app)
    bad = http.post(f"/api/prearchive/{pk}/resolve-identity", json={"use": "overwrite"})
    assert bad.status_code == 400
    done = http.post(f"/api/prearchive/{pk}/resolve-identity", json={"use": "confirmed"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "ARCHIVED"
    again = http.post(f"/api/prearchive/{pk}/resolve-identity", json={"use": "headers"})
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    second = _held(site, 1)
    gone = http.post(f"/api/prearchive/{second}/resolve-identity", json={"use": "reject"})
    assert gone.status_code == 200 and gone.json() == {"deleted": second, "status": "DELETED"}


def test_resolve_from_the_cli(make_site: MakeSite, tmp_path: Path) -> None:
    site = make_site(RESEARCH)
    pk = _held(site)
    config = tmp_path / "site.yaml"
    settings = {
        "data_dir": str(site.review.settings.data_dir),
        "database_url": site.db.url,
        "stable_after": 0,
        "projects": [RESEARCH],
        "deid": {"vault_key_file": str(site.key_file)},
    }
    config.write_text(yaml.safe_dump(settings))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "dicomgate", "prearchive", "resolve-identity"]
        return subprocess.run(
            [*command, *args, "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        )

    refused = run(str(pk), "subject")
    assert refused.returncode == 1 and "needs the subject" in refused.stderr
    done = run(str(pk), "headers", "--user", "dm")
    assert done.returncode == 0, done.stderr
    assert "ARCHIVED" in done.stdout and "ZQX" not in done.stdout
    [archived] = site.sessions("RESEARCH")
    assert archived.subject_label == "SUBJ-0001"


def test_held_session_lists_the_subjects_it_may_belong_to(make_site: MakeSite) -> None:
    site = make_site(RESEARCH)
    site.send([_study(4, PatientBirthDate="19600216")], "RESEARCH")  # the right date
    other = {"PatientName": "ZQXROE^ZQXANN", "PatientID": "PIDQ6", "PatientBirthDate": "19700101"}
    site.send([_study(6, **other)], "RESEARCH")
    site.run()
    pk = _held(site)  # the wrong date in the headers, the right one confirmed
    [staging] = [s for s in site.staging() if s.pk == pk]
    [reason] = staging.reasons
    assert reason["details"]["candidates"] == [
        {
            "subject": "SUBJ-0001",
            "matches_confirmed": ["birth_date", "first_name", "last_name"],
            "matches_headers": ["first_name", "last_name"],
        }
    ]  # SUBJ-0002 (another name, another date) shares nothing
    assert (
        resolve_identity(site.review, pk, "subject", subject="SUBJ-0001", caller=CLI) == "ARCHIVED"
    )
    assert sorted(s.subject_label for s in site.sessions("RESEARCH")) == [
        "SUBJ-0001",
        "SUBJ-0001",
        "SUBJ-0002",
    ]
