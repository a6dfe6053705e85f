"""OIDC bearer tokens against a local issuer the test starts (keys generated here)."""

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from dicomgate.auth.oidc import OidcVerifier
from dicomgate.auth.roles import Permission, Role
from dicomgate.auth.settings import OidcSettings
from dicomgate.errors import UnauthenticatedError

ISSUER = "https://issuer.test/realms/research"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks() -> bytes:
    jwk = json.loads(RSAAlgorithm.to_jwk(KEY.public_key()))
    return json.dumps({"keys": [jwk | {"kid": "k1", "use": "sig", "alg": "RS256"}]}).encode()


class _Issuer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _jwks()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def verifier() -> Iterator[OidcVerifier]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/certs"
    yield OidcVerifier(OidcSettings(issuer=ISSUER, audience="dicomgate", jwks_url=url))
    server.shutdown()
    server.server_close()


def _token(key: Any = KEY, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "dicomgate",
        "exp": now + 300,
        "iat": now,
        "sub": "u-1",
        "preferred_username": "carol",
        "groups": ["LUNG:member", "/BRAIN:collaborator", "dicomgate-reidentify"],
    } | claims
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def test_a_good_token_maps_roles(verifier: OidcVerifier) -> None:
    caller = verifier.caller(_token())
    assert caller.name == "carol" and caller.via == "oidc"
    assert caller.roles == {"LUNG": Role.MEMBER, "BRAIN": Role.COLLABORATOR}
    assert caller.allows(Permission.REIDENTIFY) and not caller.is_admin
    assert verifier.caller(_token(groups=["dicomgate-admin"])).is_admin


@pytest.mark.parametrize(
    ("claims", "needle"),
    [
        ({"exp": int(time.time()) - 3600}, "ExpiredSignature"),
        ({"nbf": int(time.time()) + 3600}, "ImmatureSignature"),
        ({"aud": "someone-else"}, "InvalidAudience"),
        ({"iss": "https://evil.test"}, "InvalidIssuer"),
    ],
)
def test_bad_claims_are_refused(
    verifier: OidcVerifier, claims: dict[str, Any], needle: str
) -> None:
    with pytest.raises(UnauthenticatedError, match=needle):
        verifier.caller(_token(**claims))


def test_alg_none_is_refused(verifier: OidcVerifier) -> None:
    unsigned = jwt.encode(
        {"iss": ISSUER, "aud": "dicomgate", "exp": time.time() + 60, "sub": "x"},
        None,
        algorithm="none",
    )
    with pytest.raises(UnauthenticatedError, match="algorithm"):
        verifier.caller(unsigned)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_hs256_signed_with_the_public_key_is_refused(verifier: OidcVerifier) -> None:
    # The HS/RS confusion attack: HMAC "signed" with the issuer's public key, which anyone has.
    # PyJWT refuses to make such a token, so the test builds it by hand.
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    claims = {"iss": ISSUER, "aud": "dicomgate", "exp": int(time.time()) + 60, "sub": "x"}
    payload = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    with pytest.raises(UnauthenticatedError, match="algorithm"):
        verifier.caller(f"{header}.{payload}.{_b64(mac)}")


def test_unknown_key_is_refused(verifier: OidcVerifier) -> None:
    with pytest.raises(UnauthenticatedError, match="unknown key"):
        verifier.caller(_token(kid="k9"))
    with pytest.raises(UnauthenticatedError, match="Signature"):
        verifier.caller(_token(key=OTHER_KEY))


def test_garbage_is_refused(verifier: OidcVerifier) -> None:
    for junk in ("a.b.c", "", "....", "eyJ.eyJ.sig"):
        with pytest.raises(UnauthenticatedError):
            verifier.caller(junk)


def test_symmetric_algorithms_cannot_be_configured() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="HS256"):
        OidcSettings(issuer=ISSUER, audience="a", jwks_url="http://x", algorithms=["HS256"])
