"""DICOM user identity negotiation: user name/password and JWT, with dcmtk storescu (the dcmtk
tool that sends one) and pynetdicom as a C-FIND client (findscu cannot send one)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from pydicom import Dataset
from pynetdicom import AE
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)

from dicomgate.auth import users
from dicomgate.auth.audit import AuditRecord, AuditTrail
from dicomgate.auth.roles import Role
from dicomgate.db import Database
from dicomgate.intake.receive import Intake
from dicomgate.sources.scp import Receiver
from tests.conftest import PYDICOM_FILES
from tests.integration.dimse.conftest import AE_TITLE, serve
from tests.integration.dimse.dcmtk import storescu

CT = str(PYDICOM_FILES / "CT_small.dcm")
MR = str(PYDICOM_FILES / "MR_small.dcm")
PASSWORD = "correct horse battery"
ISSUER = "https://issuer.test/realms/research"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALL = ["echo", "store", "find", "move", "get"]


@pytest.fixture()
def database(sqlite_database: Database) -> Database:
    """SQLite only: the identity check reads the users table, the same on every dialect."""
    return sqlite_database


@pytest.fixture()
def alice(intake: Intake, placed: dict[str, list[str]]) -> str:
    """A local user who is a collaborator in LUNG only."""
    with intake.db.unit_of_work() as session:
        users.add_user(session, "alice", PASSWORD)
        users.grant(session, "alice", "LUNG", Role.COLLABORATOR)
    return "alice"


class _Issuer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
        body = json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture()
def jwks_url() -> Iterator[str]:
    """A local OIDC issuer's JWKS endpoint (keys generated in this module)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    server.shutdown()
    server.server_close()


Start = Callable[..., Receiver]


@pytest.fixture()
def start(intake: Intake, audit: AuditTrail) -> Iterator[Start]:
    started: list[Receiver] = []

    def _start(**auth: Any) -> Receiver:
        peers = [
            {"ae_title": "WS", "hosts": ["127.0.0.1"], "operations": ALL, "projects": ["*"]},
            {
                "ae_title": "KIOSK",
                "hosts": ["127.0.0.1"],
                "operations": ALL,
                "projects": ["*"],
                "user_identity": "required",
            },
        ]
        started.append(serve(intake, audit, {"dicom_peers": peers, **auth}))
        return started[-1]

    yield _start
    for receiver in started:
        receiver.stop()


def _records(audit: AuditTrail, action: str, count: int) -> list[AuditRecord]:
    for _ in range(100):
        if len(found := audit.records(action=action)) >= count:
            return found
        time.sleep(0.05)
    return audit.records(action=action)


def _output(done: Any) -> str:
    return str(done.stdout) + str(done.stderr)


def test_user_name_and_password_accepted_and_wrong_password_refused(
    start: Start, alice: str, audit: AuditTrail
) -> None:
    scp = start()
    accepted = storescu(scp.port, "WS", "-usr", alice, "-pwd", PASSWORD, CT)
    assert accepted.returncode == 0, _output(accepted)
    wrong = storescu(scp.port, "WS", "-usr", alice, "-pwd", "not the password", CT)
    assert wrong.returncode != 0
    assert "Association Rejected" in _output(wrong)
    stranger = storescu(scp.port, "WS", "-usr", "mallory", "-pwd", PASSWORD, CT)
    assert stranger.returncode != 0
    logins = audit.records(action="login")
    assert [(r.event_code, r.actor, r.outcome) for r in logins] == [
        ("110114", "alice", 0),
        ("110114", "unknown", 4),
        ("110114", "unknown", 4),
    ]
    assert logins[1].detail == "wrong user name or password"
    assert PASSWORD not in json.dumps([r.to_json() for r in audit.records()])
    [imported] = _records(audit, "import", 1)
    assert imported.actor == "alice" and imported.objects["calling_ae"] == "WS"


def test_required_identity_refuses_an_association_without_one(
    start: Start, alice: str, audit: AuditTrail
) -> None:
    scp = start()
    bare = storescu(scp.port, "KIOSK", CT)
    assert bare.returncode != 0 and "Association Rejected" in _output(bare)
    name_only = storescu(scp.port, "KIOSK", "-usr", alice, CT)  # type 1: cannot be verified
    assert name_only.returncode != 0
    assert storescu(scp.port, "KIOSK", "-usr", alice, "-pwd", PASSWORD, CT).returncode == 0
    assert storescu(scp.port, "WS", MR).returncode == 0  # optional for WS
    assert [r.outcome for r in audit.records(action="login")] == [4, 4, 0]


def test_required_globally(start: Start, alice: str) -> None:
    scp = start(dicom_user_identity="required")
    assert storescu(scp.port, "WS", CT).returncode != 0
    assert storescu(scp.port, "WS", "-usr", alice, "-pwd", PASSWORD, CT).returncode == 0


def _find_studies(port: int, calling: str, identity: UserIdentityNegotiation | None) -> set[str]:
    ae = AE(ae_title=calling)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=AE_TITLE, ext_neg=[identity] if identity else None
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", ""
    found = {
        str(match.StudyInstanceUID)
        for status, match in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind)
        if status and status.Status == 0xFF00 and match is not None
    }
    assoc.release()
    return found


def _password_identity(name: str, password: str) -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = 2
    item.primary_field = name.encode()
    item.secondary_field = password.encode()
    return item


def test_a_verified_user_narrows_what_the_peer_sees(
    start: Start, alice: str, placed: dict[str, list[str]]
) -> None:
    scp = start()
    assert len(_find_studies(scp.port, "WS", None)) == 4  # the peer sees every project
    as_alice = _find_studies(scp.port, "WS", _password_identity(alice, PASSWORD))
    assert as_alice == set(placed["LUNG"])


def _token(**claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "dicomgate",
        "exp": now + 300,
        "iat": now,
        "sub": "u-7",
        "preferred_username": "carol",
        "groups": ["BRAIN:collaborator"],
    } | claims
    return jwt.encode(body, KEY, algorithm="RS256", headers={"kid": "k1"})


def test_jwt_identity_with_storescu_and_find(
    start: Start, jwks_url: str, placed: dict[str, list[str]], tmp_path: Path, audit: AuditTrail
) -> None:
    oidc = {"issuer": ISSUER, "audience": "dicomgate", "jwks_url": jwks_url}
    scp = start(oidc=oidc)
    good, expired = tmp_path / "good.jwt", tmp_path / "expired.jwt"
    good.write_text(_token())
    expired.write_text(_token(exp=int(time.time()) - 3600))
    assert storescu(scp.port, "KIOSK", "--jwt", str(good), CT).returncode == 0
    assert storescu(scp.port, "KIOSK", "--jwt", str(expired), CT).returncode != 0
    item = UserIdentityNegotiation()
    item.user_identity_type = 5
    item.primary_field = _token().encode()
    assert _find_studies(scp.port, "KIOSK", item) == set(placed["BRAIN"])
    logins = audit.records(action="login")
    assert [(r.actor, r.outcome) for r in logins] == [("carol", 0), ("unknown", 4), ("carol", 0)]
    assert logins[1].detail == "invalid token: ExpiredSignatureError"
