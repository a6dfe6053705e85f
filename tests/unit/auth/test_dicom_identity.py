"""DICOM user identity items (pynetdicom's own) turned into callers, including malformed ones."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pynetdicom.pdu_primitives import UserIdentityNegotiation

from dicomgate.archive.index import ensure_project
from dicomgate.archive.migrate import upgrade
from dicomgate.auth import users
from dicomgate.auth.dicom_identity import IdentityVerifier
from dicomgate.auth.roles import Role
from dicomgate.auth.settings import UserIdentityPolicy
from dicomgate.db import Database
from dicomgate.errors import UnauthenticatedError

PASSWORD = "correct horse battery"
OPTIONAL, REQUIRED = UserIdentityPolicy.OPTIONAL, UserIdentityPolicy.REQUIRED


@pytest.fixture()
def verifier(tmp_path: Path) -> Iterator[IdentityVerifier]:
    db = Database(f"sqlite:///{tmp_path / 'index.sqlite3'}")
    upgrade(db)
    with db.unit_of_work() as session:
        ensure_project(session, "LUNG")
        users.add_user(session, "alice", PASSWORD)
        users.grant(session, "alice", "LUNG", Role.MEMBER)
    yield IdentityVerifier(db, None)
    db.dispose()


def _item(kind: int, primary: bytes, secondary: bytes = b"") -> UserIdentityNegotiation:
    item = UserIdentityNegotiation()
    item.user_identity_type = kind
    item.primary_field = primary
    if secondary:
        item.secondary_field = secondary
    return item


def test_password_maps_to_the_user_and_their_projects(verifier: IdentityVerifier) -> None:
    caller = verifier.verify(_item(2, b"alice", PASSWORD.encode()), OPTIONAL)
    assert caller is not None and caller.name == "alice" and caller.via == "dicom"
    assert caller.visible_projects() == {"LUNG"}


@pytest.mark.parametrize(
    "item",
    [
        _item(2, b"alice", b"wrong password!"),
        _item(2, b"nobody", PASSWORD.encode()),
        _item(2, b"\xff\xfe", PASSWORD.encode()),  # not UTF-8
        _item(2, b"alice", b"\xc3\x28" * 8),  # not UTF-8
        _item(2, b"\x00", PASSWORD.encode()),  # blank after padding
    ],
)
def test_wrong_or_malformed_credentials_are_refused(
    verifier: IdentityVerifier, item: UserIdentityNegotiation
) -> None:
    for policy in (OPTIONAL, REQUIRED):
        with pytest.raises(UnauthenticatedError):
            verifier.verify(item, policy)


def test_unverifiable_identities_are_ignored_when_optional_refused_when_required(
    verifier: IdentityVerifier,
) -> None:
    unverifiable = [None, _item(1, b"alice"), _item(3, b"ticket"), _item(4, b"<saml/>")]
    unverifiable.append(_item(5, b"a.b.c"))  # a JWT, but no OIDC issuer is configured
    for item in unverifiable:
        assert verifier.verify(item, OPTIONAL) is None
        with pytest.raises(UnauthenticatedError, match="required"):
            verifier.verify(item, REQUIRED)
